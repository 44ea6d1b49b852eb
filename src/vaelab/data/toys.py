"""The built-in data sources, by registry name: the Swiss rolls and the FFJORD toy sets.

Every one is seedable (it draws only from the generator it is given) and knows its exact
log-density and its entropy; docs/datasets.md lists the formulas and scales.
"""

from __future__ import annotations

from vaelab.data.curves import CURVE_SOURCES
from vaelab.data.mixtures import MIXTURE_SOURCES
from vaelab.data.swiss_roll import SwissRoll2D, SwissRoll3D

TOY_SOURCES: dict[str, type] = {
    "swiss_roll": SwissRoll2D,
    "swiss_roll_3d": SwissRoll3D,
    **MIXTURE_SOURCES,
    **CURVE_SOURCES,
}
