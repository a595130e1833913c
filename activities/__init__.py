"""Everything that touches the world: model providers, goal checks, blob storage.

Workflows never import this package. ``ModelCallActivities`` is still loaded lazily, so importing
``activities`` alone pulls in neither the OpenAI nor the Anthropic SDK.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from activities.model_call import ModelCallActivities

__all__ = ["ModelCallActivities"]


def __getattr__(name: str) -> Any:
    if name == "ModelCallActivities":
        from activities.model_call import ModelCallActivities

        return ModelCallActivities
    raise AttributeError(f"module 'activities' has no attribute {name!r}")
