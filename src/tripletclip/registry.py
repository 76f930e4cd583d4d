"""Name -> factory registries, so that a loss, a benchmark or a generator is one module plus a decorator.

Pattern taken from timm / big_vision: modules register themselves at import; configs refer to them by name;
no if/elif chain anywhere chooses an implementation.
"""
from __future__ import annotations

from typing import Callable, Generic, TypeVar

from tripletclip.errors import UnknownNameError

T = TypeVar("T")


class Registry(Generic[T]):
    """A named collection of factories with a clear error on unknown names."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def deco(obj: T) -> T:
            if name in self._items and self._items[name] is not obj:
                raise ValueError(f"{self.kind} '{name}' is registered twice")
            self._items[name] = obj
            return obj

        return deco

    def get(self, name: str) -> T:
        if name not in self._items:
            known = ", ".join(sorted(self._items)) or "(none)"
            raise UnknownNameError(f"unknown {self.kind} '{name}'; known: {known}")
        return self._items[name]

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: str) -> bool:
        return name in self._items
