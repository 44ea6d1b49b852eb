"""The search space of ``vaelab sweep``: ``--search KEY=...`` specs parsed and checked.

A spec names any config field, by its short name (``lr``, ``hidden_dims``: the names of
:data:`vaelab.resolve.SHORT_KEYS`) or its dotted path (``optim.gamma``), and either lists
values for a grid (``lr=0.001,0.01``; a list value is spelled with ``x``:
``hidden_dims=64x64,128x128x128``) or gives a range to sample from (``log:LO:HI``,
``int:LO:HI``, ``uniform:LO:HI``). Every value, and both ends of every range, is checked as
a config value here, so a bad space is refused before Ray starts or anything is written.
This module needs neither Ray nor Optuna: the sweep's driver turns the space into theirs.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import typing
from dataclasses import dataclass
from typing import Any

from vaelab.config import RunConfig
from vaelab.errors import ConfigError, unknown_name_message
from vaelab.resolve import SHORT_KEYS

#: the kinds of range a spec may give, besides a list of values (``grid``)
RANGES = ("log", "int", "uniform")
#: the searchers of ``vaelab sweep --searcher``
SEARCHERS = ("grid", "random", "tpe")


@dataclass(frozen=True)
class Dimension:
    """One searched setting: its name as given, its dotted config path, and its values
    (``kind == "grid"``) or its range ``[low, high]`` (``log``, ``int``, ``uniform``)."""

    key: str
    path: str
    kind: str
    values: tuple[Any, ...] = ()
    low: float = 0.0
    high: float = 0.0

    def spec(self) -> str:
        """The ``KEY=...`` text that gives this dimension back."""
        if self.kind == "grid":
            return f"{self.key}={','.join(format_value(v) for v in self.values)}"
        return f"{self.key}={self.kind}:{format_value(self.low)}:{format_value(self.high)}"


@dataclass(frozen=True)
class SearchSpace:
    """The dimensions of a sweep, in the order given."""

    dims: tuple[Dimension, ...]

    @property
    def is_grid(self) -> bool:
        return all(d.kind == "grid" for d in self.dims)

    def grid_points(self) -> list[dict[str, Any]]:
        """Every combination of the listed values (the first key varying slowest), as
        ``{path: value}``; only for a space of lists."""
        if not self.is_grid:
            raise ConfigError("a grid needs a list of values for every key; sample ranges "
                              "with --searcher random or tpe")
        paths = [d.path for d in self.dims]
        return [dict(zip(paths, combo, strict=True))
                for combo in itertools.product(*(d.values for d in self.dims))]

    def specs(self) -> list[str]:
        return [d.spec() for d in self.dims]


def format_value(value: Any) -> str:
    """A value as a spec or a label spells it: lists with ``x``, numbers with ``g``."""
    if isinstance(value, list | tuple):
        return "x".join(format_value(v) for v in value)
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def resolve_key(key: str) -> str:
    """The dotted config path of ``key`` (a short name or a dotted path); a ConfigError
    naming the valid keys when there is no such field."""
    if "." not in key:
        if key not in SHORT_KEYS:
            raise ConfigError(unknown_name_message("search key", key, list(SHORT_KEYS))
                              + " or a dotted path such as optim.gamma")
        return SHORT_KEYS[key]
    section, _, name = key.partition(".")
    sections = {f.name: f for f in dataclasses.fields(RunConfig) if f.name != "preset"}
    if section not in sections:
        raise ConfigError(unknown_name_message("config section", section, list(sections))
                          + f" in search key {key!r}")
    cls = typing.get_type_hints(RunConfig)[section]
    names = [f.name for f in dataclasses.fields(cls)]
    if name not in names:
        raise ConfigError(unknown_name_message(f"field of {section}", name, names)
                          + f" in search key {key!r}")
    return key


def _field_type(path: str) -> Any:
    section, name = path.split(".")
    cls = typing.get_type_hints(RunConfig)[section]
    return typing.get_type_hints(cls)[name]


def _is_list_field(path: str) -> bool:
    tp = _field_type(path)
    options = typing.get_args(tp) if typing.get_origin(tp) is not list else (tp,)
    return any(typing.get_origin(a) is list for a in options or (tp,))


def _is_int_field(path: str) -> bool:
    tp = _field_type(path)
    return tp is int or int in typing.get_args(tp)


def parse_value(text: str, path: str) -> Any:
    """One listed value: ``64x64`` is the list [64, 64]; a number, ``true``/``false``/``null``
    as JSON; anything else a string (``relu``). A lone integer for a list field is a list
    of one (``hidden_dims=128`` is one layer of 128)."""
    token = text.strip()
    if not token:
        raise ConfigError(f"an empty value in the list of {path}")
    if "x" in token and all(part.strip().lstrip("-").isdigit() for part in token.split("x")):
        return [int(part) for part in token.split("x")]
    try:
        value = json.loads(token)
    except json.JSONDecodeError:
        return token
    if isinstance(value, int) and not isinstance(value, bool) and _is_list_field(path):
        return [value]
    return value


def _number(text: str, spec: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"--search {spec}: {text.strip()!r} is not a number") from None
    if not math.isfinite(value):
        raise ConfigError(f"--search {spec}: {text.strip()!r} is not a finite number")
    return value


def parse_dimension(spec: str) -> Dimension:
    """``KEY=V1,V2,...`` or ``KEY=log:LO:HI`` / ``int:LO:HI`` / ``uniform:LO:HI`` as a
    :class:`Dimension` (its values not yet checked against a config: see :func:`parse_space`)."""
    key, sep, raw = spec.partition("=")
    key = key.strip()
    if not sep or not key or not raw.strip():
        raise ConfigError(f"--search {spec!r} is not KEY=V1,V2,... or KEY=log:LO:HI, "
                          "int:LO:HI, uniform:LO:HI")
    path = resolve_key(key)
    kind, colon, rest = raw.partition(":")
    if not colon:
        values = tuple(parse_value(item, path) for item in raw.split(","))
        return Dimension(key, path, "grid", values=values)
    kind = kind.strip()
    if kind not in RANGES:
        raise ConfigError(f"--search {spec}: unknown range {kind!r} (valid: "
                          f"{', '.join(f'{r}:LO:HI' for r in RANGES)}, or a list V1,V2,...)")
    bounds = rest.split(":")
    if len(bounds) != 2:
        raise ConfigError(f"--search {spec}: a range is {kind}:LO:HI")
    low, high = (_number(b, spec) for b in bounds)
    if kind == "int":
        if not (low.is_integer() and high.is_integer()):
            raise ConfigError(f"--search {spec}: the bounds of int:LO:HI must be integers")
        low, high = int(low), int(high)
    if not low < high:
        raise ConfigError(f"--search {spec}: LO must be below HI")
    if kind == "log" and low <= 0:
        raise ConfigError(f"--search {spec}: a log range needs LO > 0")
    return Dimension(key, path, kind, low=low, high=high)


def parse_space(specs: list[str], base: RunConfig, *, fixed: dict[str, Any] | None = None,
                seeds: int | None = None) -> SearchSpace:
    """Parse ``specs`` and check each value (each end of each range) as a config value over
    ``base``. ``fixed``: the settings given by their own flags (short name or dotted path to
    value, None for unset), refused when they set a searched field too; ``seeds``: the
    ``--seeds`` count, which the seed may not be searched with."""
    if not specs:
        raise ConfigError("give the search space with --search KEY=V1,V2,... (or "
                          "KEY=log:LO:HI, int:LO:HI, uniform:LO:HI)")
    dims: list[Dimension] = []
    for spec in specs:
        dim = parse_dimension(spec)
        if any(d.path == dim.path for d in dims):
            raise ConfigError(f"--search sets {dim.path} twice; list all its values in one")
        for name, value in (fixed or {}).items():
            if value is not None and SHORT_KEYS.get(name, name) == dim.path:
                flag = f"--set {name}" if "." in name else f"--{name.replace('_', '-')}"
                raise ConfigError(f"--search {dim.key} and {flag} both set {dim.path}; "
                                  "drop one")
        if seeds is not None and dim.path == "train.seed":
            raise ConfigError("give the seeds either as --seeds N or as a searched seed, "
                              "not both")
        if dim.kind in ("int", "log", "uniform") and _is_list_field(dim.path):
            raise ConfigError(f"--search {spec}: {dim.path} is a list; give its values as "
                              "a list, e.g. 64x64,128x128")
        if dim.kind in ("log", "uniform") and _is_int_field(dim.path):
            raise ConfigError(f"--search {spec}: {dim.path} is an integer; give its range "
                              "as int:LO:HI")
        for value in (dim.values if dim.kind == "grid" else (dim.low, dim.high)):
            try:
                base.replace({dim.path: value})
            except ConfigError as exc:
                raise ConfigError(f"--search {spec}: {exc}") from None
        dims.append(dim)
    return SearchSpace(tuple(dims))


def default_searcher(space: SearchSpace) -> str:
    """``grid`` when every key lists its values, else ``random``."""
    return "grid" if space.is_grid else "random"


def trial_config(base: RunConfig, point: dict[str, Any]) -> RunConfig:
    """``base`` with a trial's settings ``{path: value}`` applied (an int range's draw is an
    int, a float field's value a float)."""
    return base.replace(point)
