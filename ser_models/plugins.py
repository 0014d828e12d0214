"""Plugins: a user's own models, feature extractors and corpora, registered by importing their module.

A plugin is a module name (`my_lab.ser_plugins`), a `.py` file, or an installed package's entry point in the group
`ser_bench.plugins`. Importing it runs its `register_model` / `register_features` / `register_corpus` decorators.
Every plugin this process loaded is remembered (`loaded_plugins`), so the harness hands the same list to each worker
process (loky or Dask), which loads them (`ensure_plugins`) before its first job.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import logging
import sys
from pathlib import Path
from types import ModuleType

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "ser_bench.plugins"

_loaded: dict[str, ModuleType] = {}  # plugin as named -> its module, in load order
_entry_points_loaded = False


class PluginError(ImportError):
    """A plugin that cannot be loaded; the message is one line naming it and why."""


def load_plugin(name: str) -> ModuleType:
    """Import the plugin `name` (module, `.py` file or `module:attr`) once per process; errors are one line."""
    if name.endswith(".py"):  # a file is remembered by its full path: workers may start elsewhere
        name = str(Path(name).expanduser().resolve())
    if name in _loaded:
        return _loaded[name]
    try:
        module = _import_file(Path(name)) if name.endswith(".py") else importlib.import_module(name.partition(":")[0])
    except PluginError:
        raise
    except Exception as error:  # noqa: BLE001  -- whatever a user's module raises on import is said in one line
        raise PluginError(f"plugin {name!r} cannot be loaded: {type(error).__name__}: {error}") from error
    _loaded[name] = module
    log.debug("plugin %s loaded from %s", name, getattr(module, "__file__", "?"))
    return module


def _import_file(path: Path) -> ModuleType:
    """A plugin given as a file: imported under its stem, so pickles of its classes find it again."""
    if not path.is_file():
        raise PluginError(f"plugin file {path} does not exist")
    name = path.stem
    if name in sys.modules and Path(getattr(sys.modules[name], "__file__", "") or "").resolve() == path.resolve():
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def load_plugins(names: list[str] | tuple[str, ...]) -> list[ModuleType]:
    """Load several plugins in order; the first that fails raises PluginError."""
    return [load_plugin(name) for name in names]


def loaded_plugins() -> tuple[str, ...]:
    """The plugins loaded in this process (as named), for worker processes to load the same."""
    return tuple(_loaded)


def ensure_plugins(names: tuple[str, ...] | list[str]) -> None:
    """In a worker process: load the parent's plugins (a no-op for those already loaded)."""
    for name in names:
        load_plugin(name)


def load_entry_points() -> None:
    """Load every installed package's plugin of the group `ser_bench.plugins`, once per process."""
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    for entry in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            entry.load()
        except Exception as error:  # noqa: BLE001
            raise PluginError(f"plugin entry point {entry.name!r} ({entry.value}) of group {ENTRY_POINT_GROUP} "
                              f"cannot be loaded: {type(error).__name__}: {error}") from error


def resolve(target: str) -> object:
    """A lazy `"package.module:attr"` name -> the object it names (imported on first use)."""
    module_name, _, attr = target.partition(":")
    if not attr:
        raise PluginError(f"{target!r} is no lazy name: write 'package.module:attr'")
    try:
        module = importlib.import_module(module_name)
    except Exception as error:  # noqa: BLE001
        raise PluginError(f"{target!r} cannot be imported: {type(error).__name__}: {error}") from error
    try:
        obj = module
        for part in attr.split("."):
            obj = getattr(obj, part)
    except AttributeError as error:
        raise PluginError(f"{target!r}: module {module_name} has no {attr!r}") from error
    return obj
