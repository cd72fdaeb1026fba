"""A tiny name -> factory registry, so configs pick encoders (encoders.py) and neighbour weightings
(decoder.py) by name, and a wrong name lists the choices."""
from __future__ import annotations

from typing import Callable, Dict, Generic, TypeVar

from mlin_qgis.core.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to factories; refuses duplicates and lists the choices on a miss."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: Dict[str, Callable[..., T]] = {}

    def register(self, name: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
        def add(factory: Callable[..., T]) -> Callable[..., T]:
            if name in self._items:
                raise ConfigError(f"{self.kind} '{name}' is registered twice")
            self._items[name] = factory
            return factory

        return add

    def get(self, name: str) -> Callable[..., T]:
        try:
            return self._items[name]
        except KeyError:
            choices = ", ".join(sorted(self._items))
            raise ConfigError(f"unknown {self.kind} '{name}'; choose one of: {choices}") from None

    def names(self) -> list[str]:
        return sorted(self._items)
