"""One registry type for models, feature extractors and corpora: names to entries, filled by decorators."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Generic, TypeVar

from ser_models.plugins import load_entry_points

T = TypeVar("T")

PLUGIN_HINT = ("a {kind} of your own is found in worker processes and by the command line when it is registered in a "
               "plugin: --plugin MODULE, or plugins = [\"MODULE\"] in the suite")


class Registry(Generic[T]):
    """Registered entries of one kind by name; a name it lacks first loads the installed plugins' entry points."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, T] = {}

    def add(self, name: str, entry: T) -> None:
        """Register `entry` under `name`; a name taken twice is an error (two plugins, or one loaded twice)."""
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self._entries[name] = entry

    def replace(self, name: str, entry: T) -> None:
        """Register `entry` under `name` whether or not it is taken (re-pointing a manifest corpus)."""
        self._entries[name] = entry

    def peek(self, name: str) -> T | None:
        """The entry of `name` when registered, without loading plugins; else None."""
        return self._entries.get(name)

    def get(self, name: str) -> T:
        """The entry of `name`; the KeyError lists the registered names."""
        if name not in self._entries:
            load_entry_points()
        if name not in self._entries:
            raise KeyError(f"unknown {self.kind} {name!r}; choose from {', '.join(self._entries)} "
                           f"({PLUGIN_HINT.format(kind=self.kind)})")
        return self._entries[name]

    def names(self) -> list[str]:
        """Registered names, in registration order (installed plugins included)."""
        load_entry_points()
        return list(self._entries)

    def __contains__(self, name: object) -> bool:
        if name not in self._entries:
            load_entry_points()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def items(self) -> list[tuple[str, T]]:
        return [(name, self._entries[name]) for name in self.names()]
