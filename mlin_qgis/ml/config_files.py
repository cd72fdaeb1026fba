"""Reading training configs (YAML files of a dataclass's fields), shared by `train` and `train-aware`."""
from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Any, Dict

from ..core.errors import ConfigError
from .data import SamplerConfig
from .degradation import DegradationConfig


def config_fields(cls: type, data: Dict[str, Any], what: str) -> Dict[str, Any]:
    """`data` checked against `cls`'s fields (unknown keys refused, naming the known ones), with the
    nested `sampler:`, `estimator_sampler:` and `degradation:` blocks turned into their dataclasses."""
    known = {f.name for f in fields(cls)}
    unknown = set(data) - known
    if unknown:
        raise ConfigError(f"unknown {what} config keys: {', '.join(sorted(unknown))}; known: {', '.join(sorted(known))}")
    data = dict(data)
    for key in ("sampler", "estimator_sampler"):
        if data.get(key) is not None:
            data[key] = SamplerConfig(**data[key])
    if data.get("degradation") is not None:
        data["degradation"] = DegradationConfig.from_dict(data["degradation"])
    return data


def read_yaml(path: str | Path, cls: type) -> Dict[str, Any]:
    """The mapping in a YAML config file (relative data paths in it are relative to the repository root)."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"training config not found: {path}; pass the path of a YAML file with {cls.__name__} fields")
    return yaml.safe_load(path.read_text()) or {}
