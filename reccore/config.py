"""Config loading: YAML files and keyword overrides into typed config dataclasses; unknown keys fail
with the list of valid ones (so a typo in a YAML is an error, not a silently ignored setting)."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import yaml


def config_from_dict(cls: type, values: dict[str, Any] | None, where: str = "config") -> Any:
    """Build a config dataclass, failing on unknown keys with the list of valid ones."""
    values = dict(values or {})
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ValueError(
            f"unknown key(s) {unknown} in {where} for {cls.__name__}; valid keys: {sorted(fields)}"
        )
    return cls(**values)


def load_config(cls: type, path: str | Path | None = None, **overrides) -> Any:
    """YAML file (optional) + keyword overrides -> config dataclass; unknown keys fail."""
    values = {}
    if path is not None:
        values = yaml.safe_load(Path(path).read_text()) or {}
        if not isinstance(values, dict):
            raise ValueError(f"{path} must hold a mapping of {cls.__name__} fields")
    values.update({k: v for k, v in overrides.items() if v is not None})
    return config_from_dict(cls, values, str(path or "overrides"))
