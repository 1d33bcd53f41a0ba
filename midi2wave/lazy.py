"""A subpackage's entry points, imported from their modules on first use (PEP 562).

`import midi2wave` imports `midi2wave.render` (so that the function `render` stays the package's
attribute), and must not load torch or numba: each subpackage's `__init__` therefore names its
entry points in a table, `{name: module}`, and imports none of them until one is asked for.
"""

from __future__ import annotations

import sys
from importlib import import_module
from typing import Any, Callable

__all__ = ["entry_points"]


def entry_points(package: str, table: dict[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """(`__getattr__`, `__dir__`) for the package named `package`: `table` maps each entry point to
    the submodule defining it; a name is imported on first use and then kept in the package."""

    def __getattr__(name: str) -> Any:
        module = table.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(import_module(f"{package}.{module}"), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(table))

    return __getattr__, __dir__
