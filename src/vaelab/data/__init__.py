"""Data sources (what p is) and the input pipeline (how batches reach the model)."""

from vaelab.data.base import DataSource
from vaelab.data.pipeline import FixedSetStream, FreshStream
from vaelab.data.registry import build_source, source_names
from vaelab.data.swiss_roll import SwissRoll2D

__all__ = ["DataSource", "FixedSetStream", "FreshStream", "SwissRoll2D", "build_source",
           "source_names"]
