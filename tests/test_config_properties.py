"""Property-based tests of the config parser: whatever it is given, it returns a valid
RunConfig or raises ConfigError naming the problem; it never crashes with anything else,
and what it accepts survives a JSON round trip unchanged."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vaelab.config import RunConfig, load_config_file
from vaelab.errors import ConfigError, RunError
from vaelab.presets import preset_names
from vaelab.resolve import SHORT_KEYS, build_config

SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])

json_scalars = (st.none() | st.booleans() | st.integers(-10**6, 10**6)
                | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=12))
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=10), inner, max_size=4),
                           max_leaves=12)


def _leaf_paths(d: dict, prefix: tuple = ()) -> list[tuple]:
    out = []
    for key, value in d.items():
        if isinstance(value, dict):
            out += _leaf_paths(value, prefix + (key,))
        else:
            out.append(prefix + (key,))
    return out


BASE = build_config("seed").to_dict()
LEAVES = _leaf_paths(BASE)


def _set(d: dict, path: tuple, value) -> dict:
    d = json.loads(json.dumps(d))
    node = d
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return d


@SETTINGS
@given(value=json_values)
def test_any_json_document_is_a_config_or_a_config_error(value):
    try:
        cfg = RunConfig.from_dict(value)
    except ConfigError as exc:
        assert str(exc)
    else:
        assert isinstance(cfg, RunConfig)


@SETTINGS
@given(path=st.sampled_from(LEAVES), value=json_values)
def test_one_changed_field_is_accepted_exactly_or_refused_by_name(path, value):
    data = _set(BASE, path, value)
    try:
        cfg = RunConfig.from_dict(data)
    except ConfigError as exc:
        # the message names the field (or, for a nested table, its section)
        assert path[0] in str(exc) or path[-1] in str(exc), (path, str(exc))
        return
    # accepted: the field holds the given value (ints may arrive as integral floats)
    got = cfg.to_dict()
    for key in path:
        got = got[key]
    if isinstance(value, float) and not isinstance(got, float):
        assert value.is_integer() and got == int(value)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        assert got == value and math.isfinite(got)
    else:
        assert got == value


@SETTINGS
@given(path=st.sampled_from(LEAVES), value=json_values)
def test_what_is_accepted_round_trips_through_json(path, value):
    try:
        cfg = RunConfig.from_dict(_set(BASE, path, value))
    except ConfigError:
        return
    again = RunConfig.from_json(cfg.to_json())
    assert again == cfg and again.to_json() == cfg.to_json()


@SETTINGS
@given(key=st.sampled_from(sorted(SHORT_KEYS)), value=json_values,
       preset=st.sampled_from(preset_names()))
def test_any_setting_value_is_accepted_or_refused_with_a_config_error(key, value, preset):
    try:
        cfg = build_config(preset, settings={key: value})
    except ConfigError as exc:
        assert str(exc)
    else:
        cfg.validate()


@SETTINGS
@given(extra=st.text(min_size=1, max_size=12).filter(lambda k: "." not in k))
def test_unknown_keys_are_refused_in_every_section(extra):
    for section in ("data", "model", "loss", "optim", "train", "display"):
        known = {f.name for f in dataclasses.fields(type(getattr(RunConfig(), section)))}
        if extra in known:
            continue
        with pytest.raises(ConfigError, match="unknown key"):
            RunConfig.from_dict(_set(BASE, (section, extra), 1))


@SETTINGS
@given(text=st.text(max_size=200) | st.binary(max_size=200).map(
    lambda b: b.decode("latin-1")), suffix=st.sampled_from([".toml", ".json"]))
def test_any_config_file_text_is_a_table_or_a_config_error(tmp_path, text, suffix):
    path = tmp_path / f"c{suffix}"
    path.write_bytes(text.encode("utf-8", "surrogatepass"))
    try:
        data = load_config_file(path)
    except ConfigError as exc:
        assert str(path) in str(exc) or "config" in str(exc)
    else:
        assert isinstance(data, dict)


@SETTINGS
@given(blob=st.binary(max_size=300))
def test_any_bytes_as_a_run_config_json_are_refused_cleanly(tmp_path, blob):
    from vaelab.runs import load_run

    run = tmp_path / "run"
    run.mkdir(exist_ok=True)
    (run / "config.json").write_bytes(blob)
    with pytest.raises(RunError):
        load_run(run)
