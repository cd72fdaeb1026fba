"""Reading training configs (YAML files of a dataclass's fields), shared by `train` and `train-aware`."""
from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Any, ClassVar, Dict, Type, TypeVar

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


C = TypeVar("C", bound="YamlConfig")


class YamlConfig:
    """Mixin for a training config dataclass: `from_dict` checks the keys, `from_yaml` reads a file.
    `config_kind` names the command in error messages."""

    config_kind: ClassVar[str] = "training"

    @classmethod
    def from_dict(cls: Type[C], data: Dict[str, Any]) -> C:
        return cls(**config_fields(cls, data, cls.config_kind))

    @classmethod
    def from_yaml(cls: Type[C], path: str | Path) -> C:
        return cls.from_dict(read_yaml(path, cls))
