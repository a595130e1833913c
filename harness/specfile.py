"""Reading a job spec from a file (the app's side: workflows only ever see the parsed spec)."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from contracts.spec import JobSpec, SpecError, parse_spec


def load_spec(path: str | Path) -> JobSpec:
    """Load a job spec from a .yaml/.yml or .json file (UTF-8). Whatever is wrong with the file is a
    ``SpecError`` of one line naming it, unless several fields are bad (a line each)."""

    file = Path(path)
    if not file.is_file():
        raise SpecError(f"{file}: no such file")
    try:
        raw = file.read_bytes()
    except OSError as error:
        raise SpecError(f"{file}: cannot be read: {error.strerror or error}") from None
    try:
        text = raw.decode("utf-8-sig")  # a byte-order mark some editors write is no error
    except UnicodeDecodeError as error:
        raise SpecError(
            f"{file}: not UTF-8 text (byte 0x{raw[error.start]:02x} at offset {error.start}); "
            "a spec is YAML or JSON saved as UTF-8"
        ) from None
    try:
        data = json.loads(text) if file.suffix == ".json" else yaml.safe_load(text)
    except json.JSONDecodeError as error:
        raise SpecError(f"{file}: not valid JSON: {error}") from None
    except yaml.YAMLError as error:
        raise SpecError(f"{file}: not valid YAML: {_yaml_problem(error)}") from None
    return parse_spec(data, source=str(file))


def _yaml_problem(error: yaml.YAMLError) -> str:
    """PyYAML's several-line message as one line: what is wrong, and where."""
    if isinstance(error, yaml.MarkedYAMLError) and error.problem_mark is not None:
        mark = error.problem_mark
        return f"{error.problem} at line {mark.line + 1}, column {mark.column + 1}"
    return " ".join(str(error).split())
