"""Reading a job spec from a file (the app's side: workflows only ever see the parsed spec)."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from contracts.spec import JobSpec, SpecError, parse_spec


def load_spec(path: str | Path) -> JobSpec:
    """Load a job spec from a .yaml/.yml or .json file."""

    file = Path(path)
    if not file.is_file():
        raise SpecError(f"{file}: no such file")
    text = file.read_text(encoding="utf-8")
    try:
        data = json.loads(text) if file.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as error:
        raise SpecError(
            f"{file}: not valid {'JSON' if file.suffix == '.json' else 'YAML'}: {error}"
        ) from None
    return parse_spec(data, source=str(file))
