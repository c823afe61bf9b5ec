"""The benchmark's rows. Each module here is one row: a row is added by adding a module.

A row module defines ``ORDER`` (its place in the results), ``TITLE`` and
``run(bench: Bench) -> list[Figure]``; its name is what ``--rows`` selects.
"""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType


def all_rows() -> list[ModuleType]:
    """Every row module, in ``ORDER``."""
    modules = [importlib.import_module(f"{__name__}.{info.name}") for info in pkgutil.iter_modules(__path__)]
    return sorted(modules, key=lambda module: module.ORDER)


def name(row: ModuleType) -> str:
    return row.__name__.rsplit(".", 1)[-1]


def selected(names: tuple[str, ...]) -> list[ModuleType]:
    """The rows ``names`` asks for (all when empty); an unknown name is an error that lists the known."""
    rows = all_rows()
    unknown = set(names) - {name(row) for row in rows}
    if unknown:
        raise ValueError(f"no row {', '.join(sorted(unknown))}; rows: {', '.join(name(row) for row in rows)}")
    return [row for row in rows if not names or name(row) in names]
