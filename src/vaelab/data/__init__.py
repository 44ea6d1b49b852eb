"""Data sources (what p is) and the input pipeline (how batches reach the model).

The names are imported on first use: the data source names (:func:`source_names`) and the
checks of a data name that need no torch (:mod:`vaelab.data.registry`) are there for the
``vaelab`` command's parser and ``vaelab sweep``'s driver, which never train."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vaelab.data.base import DataSource
    from vaelab.data.pipeline import FixedSetStream, FreshStream
    from vaelab.data.registry import build_source, source_names
    from vaelab.data.swiss_roll import SwissRoll2D

_LAZY = {"DataSource": "vaelab.data.base", "FixedSetStream": "vaelab.data.pipeline",
         "FreshStream": "vaelab.data.pipeline", "build_source": "vaelab.data.registry",
         "source_names": "vaelab.data.registry", "SwissRoll2D": "vaelab.data.swiss_roll"}

__all__ = ["DataSource", "FixedSetStream", "FreshStream", "SwissRoll2D", "build_source",
           "source_names"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
