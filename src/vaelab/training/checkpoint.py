"""Training checkpoints: everything a loop of M >= 1 models needs to continue bit for bit.

A single run writes ``RUN/checkpoint.safetensors``, a group ``OUT/group-checkpoint.safetensors``
(its models share batches and noise, so they resume as one); both in this one format, every
model tensor with a leading model axis (tensor names, then the string metadata)::

    params/<name>, buffers/<name>        the weights and buffers, [M, ...] each
    optim/step                           Adam's step count (the same for every parameter)
    optim/<i>/exp_avg, .../exp_avg_sq    Adam's moments of parameter i, [M, ...]
    rng/data, rng/noise                  the loop's data and noise streams
    rng/model/<m>                        model m's own data generator (its fixed training set)
    stream/<m>/perm                      model m's permutation of its fixed training set
    loop/sums [M, T], loop/bad_step [M]  loss sums since the last row; first non-finite step
    metrics/<m>                          model m's metrics rows so far, float64
    frame/<m>/<step>/<panel>             model m's display frames so far
    best/...                             the weights chosen on validation rows so far
    metadata: format, vaelab_version, step, count, elapsed_s, stream_pos (JSON list),
              finished, configs (JSON list of the models' config.json texts), restarts
              (JSON list, per model its probe's choice of initial weights, where one
              probed; for its summary: the weights themselves are above), sha256 (of the
              other metadata and of every tensor's name, dtype, shape and bytes: a flipped
              bit or an edited step count is caught)

It is written atomically (temporary file, fsync, rename): a kill at any moment leaves the
previous checkpoint or the new one. Loading trusts nothing: every name, shape, dtype and
number is checked against the live loop before any of it is copied in, and nothing is
unpickled. Checkpoints of the formats before this one (``vaelab-checkpoint-1``,
``vaelab-group-checkpoint-1``) are refused with one line: their runs' weights still load.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors

from vaelab._version import __version__
from vaelab.config import RunConfig
from vaelab.errors import RunError, WriteError
from vaelab.fileio import atomic_write_bytes, safetensors_metadata, tensors_digest
from vaelab.frames import Frame, frame_tensors, parse_frames
from vaelab.training.optim import AdamState

CHECKPOINT_FILE = "checkpoint.safetensors"
GROUP_CHECKPOINT_FILE = "group-checkpoint.safetensors"
FORMAT = "vaelab-checkpoint-3"
#: earlier formats: -2 (its checksum covered the tensors only), -1 and the group's (before
#: the one loop)
OLD_FORMATS = ("vaelab-checkpoint-2", "vaelab-checkpoint-1", "vaelab-group-checkpoint-1")
SECTIONS = ("params", "buffers", "optim", "rng", "stream", "metrics", "frame", "loop", "best")


@dataclass
class LoopState:
    """What the loop carries from one step to the next, besides weights and Adam."""

    step: int
    elapsed_s: float  # training seconds so far (all sessions together)
    sums: torch.Tensor  # [M, terms] loss-term sums since the last metrics row
    count: int  # steps in those sums
    bad_step: torch.Tensor  # [M] int64: the first step with a non-finite loss, 0 if none
    metrics: list[list[dict[str, float]]]  # per model
    frames: list[list[Frame]]  # per model
    finished: bool = False
    # the weights chosen on validation rows so far (:mod:`vaelab.training.validation`)
    best: dict[str, torch.Tensor] | None = None
    # per model, the probe's choice of initial weights (:mod:`vaelab.training.restarts`)
    restarts: list[dict[str, Any] | None] | None = None


@dataclass
class Checkpoint:
    """A checkpoint read and checksummed, not yet checked against a live loop."""

    path: Path
    configs_json: list[str]
    loop: LoopState
    weights: dict[str, dict[str, torch.Tensor]]  # "params" and "buffers", [M, ...] each
    adam: AdamState
    rng: dict[str, torch.Tensor]
    perms: dict[int, torch.Tensor]
    stream_pos: list[int]


def save_checkpoint(path: Path, *, configs_json: list[str],
                    weights: dict[str, dict[str, torch.Tensor]], adam: AdamState,
                    generators: dict[str, torch.Generator], streams: list | None,
                    loop: LoopState, metric_fields: tuple[str, ...]) -> None:
    """Write the checkpoint atomically (the old one stays until the new one is whole)."""
    def cpu(t: torch.Tensor) -> torch.Tensor:
        return t.detach().cpu().contiguous().clone()

    tensors: dict[str, torch.Tensor] = {}
    for kind, named in weights.items():
        tensors.update({f"{kind}/{k}": cpu(v) for k, v in named.items()})
    tensors["optim/step"] = torch.tensor(float(adam.step), dtype=torch.float64)
    for i, (m, v) in enumerate(zip(adam.exp_avg, adam.exp_avg_sq, strict=True)):
        tensors[f"optim/{i}/exp_avg"], tensors[f"optim/{i}/exp_avg_sq"] = cpu(m), cpu(v)
    tensors.update({f"rng/{k}": g.get_state().contiguous() for k, g in generators.items()})
    for m, stream in enumerate(streams or []):
        tensors[f"stream/{m}/perm"] = cpu(stream._perm)
    tensors["loop/sums"] = loop.sums.detach().cpu().double().contiguous()
    tensors["loop/bad_step"] = loop.bad_step.detach().cpu().long().contiguous()
    for m, rows in enumerate(loop.metrics):
        table = [[float(row[f]) for f in metric_fields] for row in rows]
        tensors[f"metrics/{m}"] = torch.tensor(table, dtype=torch.float64).reshape(
            -1, len(metric_fields))
    for m, frames in enumerate(loop.frames):
        tensors.update(frame_tensors(frames, f"frame/{m}/"))
    tensors.update({f"best/{k}": cpu(v) for k, v in (loop.best or {}).items()})
    meta = {"format": FORMAT, "vaelab_version": __version__, "step": str(loop.step),
            "count": str(loop.count), "elapsed_s": repr(loop.elapsed_s),
            "stream_pos": json.dumps([s._pos for s in streams or []]),
            "finished": "1" if loop.finished else "0", "configs": json.dumps(configs_json)}
    if loop.restarts:
        meta["restarts"] = json.dumps(loop.restarts)
    meta["sha256"] = tensors_digest(tensors, meta)  # the metadata's values are covered too
    # (a killed run's temporary checkpoint goes: the run's lock makes this its one writer)
    try:
        atomic_write_bytes(path, save_tensors(tensors, metadata=meta), stale=True)
    except WriteError as exc:  # a full disk, say: the one written before stays whole
        raise WriteError(f"{exc}; the checkpoint written before, if any, is kept",
                         exc.errno, exc.strerror) from None


def _load_verified(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The tensors and metadata of ``path``, after checking its format and checksum."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise RunError(f"cannot read checkpoint {path}: {exc.strerror}") from None
    try:
        tensors = load_tensors(data)
        meta = safetensors_metadata(data)
    except (SafetensorError, ValueError, RuntimeError, OSError) as exc:
        raise RunError(f"{path} is not a readable safetensors checkpoint "
                       f"(truncated or tampered?): {exc}") from None
    if meta.get("format") in OLD_FORMATS:
        raise RunError(f"{path} was written by an earlier vaelab (format "
                       f"{meta['format']!r}), which this version cannot resume; the run's "
                       "model.safetensors still loads (evaluate, sample): train it again to "
                       "continue it")
    if meta.get("format") != FORMAT:
        raise RunError(f"{path} is not a vaelab checkpoint (format {meta.get('format')!r}, "
                       f"expected {FORMAT!r})")
    if meta.get("sha256") != tensors_digest(tensors, meta):
        raise RunError(f"{path} fails its checksum: it was corrupted or edited after it "
                       "was written")
    return tensors, meta


def read_checkpoint(path: Path, metric_fields: tuple[str, ...]) -> Checkpoint:
    """Parse ``path``; a RunError names the first thing wrong (nothing is restored here)."""
    tensors, meta = _load_verified(path)
    try:
        step, count = int(meta["step"]), int(meta["count"])
        elapsed = float(meta["elapsed_s"])
        finished = meta["finished"] == "1"
        configs_json = json.loads(meta["configs"])
        stream_pos = json.loads(meta["stream_pos"])
        restarts = json.loads(meta["restarts"]) if "restarts" in meta else None
    except (KeyError, ValueError):
        raise RunError(f"{path}: its metadata is incomplete or malformed") from None
    if (not isinstance(configs_json, list) or not configs_json
            or not all(isinstance(c, str) for c in configs_json)
            or not isinstance(stream_pos, list)
            or not all(isinstance(p, int) and p >= 0 for p in stream_pos)):
        raise RunError(f"{path}: its metadata is incomplete or malformed")
    if step < 0 or count < 0 or not math.isfinite(elapsed) or elapsed < 0:
        raise RunError(f"{path}: its metadata holds impossible values (step {step})")
    m_count = len(configs_json)
    if restarts is not None and (not isinstance(restarts, list) or len(restarts) != m_count
                                 or not all(r is None or isinstance(r, dict)
                                            for r in restarts)):
        raise RunError(f"{path}: its metadata holds a malformed record of restarts")
    parts: dict[str, dict[str, torch.Tensor]] = {k: {} for k in SECTIONS}
    for name, t in tensors.items():
        kind, _, rest = name.partition("/")
        if kind not in parts or not rest:
            raise RunError(f"{path}: unexpected tensor {name!r}")
        parts[kind][rest] = t
    loop_parts = parts["loop"]
    if set(loop_parts) != {"sums", "bad_step"} or "step" not in parts["optim"]:
        raise RunError(f"{path}: the loop or optimiser state is missing")
    sums, bad_step = loop_parts["sums"], loop_parts["bad_step"]
    if sums.ndim != 2 or sums.shape[0] != m_count or not torch.isfinite(sums).all():
        raise RunError(f"{path}: its loss sums are not finite [{m_count}, terms] values")
    if bad_step.shape != (m_count,) or bad_step.dtype != torch.int64:
        raise RunError(f"{path}: loop/bad_step is not one step per model")
    if set(parts["metrics"]) != {str(m) for m in range(m_count)}:
        raise RunError(f"{path}: it does not hold the metrics of {m_count} models")
    metrics = [_metrics_rows(path, parts["metrics"][str(m)], metric_fields)
               for m in range(m_count)]
    frames: list[dict[str, torch.Tensor]] = [{} for _ in range(m_count)]
    for name, t in parts["frame"].items():
        m, _, rest = name.partition("/")
        if not m.isdigit() or int(m) >= m_count:
            raise RunError(f"{path}: unexpected tensor 'frame/{name}'")
        frames[int(m)][rest] = t
    perms: dict[int, torch.Tensor] = {}
    for name, t in parts["stream"].items():
        m, _, what = name.partition("/")
        if not m.isdigit() or int(m) >= m_count or what != "perm":
            raise RunError(f"{path}: unexpected tensor 'stream/{name}'")
        perms[int(m)] = t
    loop = LoopState(step, elapsed, sums, count, bad_step, metrics,
                     [parse_frames(path, f) for f in frames], finished, parts["best"] or None,
                     restarts)
    return Checkpoint(path, configs_json, loop,
                      {"params": parts["params"], "buffers": parts["buffers"]},
                      _read_adam(path, parts["optim"]), parts["rng"], perms, stream_pos)


def _read_adam(path: Path, optim: dict[str, torch.Tensor]) -> AdamState:
    step_t = optim.pop("step")
    if step_t.numel() != 1 or not torch.isfinite(step_t).all() or float(step_t) < 0 \
            or float(step_t) != int(float(step_t)):
        raise RunError(f"{path}: optim/step is not a whole number of steps")
    moments: dict[int, dict[str, torch.Tensor]] = {}
    for name, t in optim.items():
        i, _, key = name.partition("/")
        if not i.isdigit() or key not in ("exp_avg", "exp_avg_sq"):
            raise RunError(f"{path}: unexpected tensor 'optim/{name}'")
        moments.setdefault(int(i), {})[key] = t
    if set(moments) != set(range(len(moments))) or any(len(v) != 2 for v in moments.values()):
        raise RunError(f"{path}: the optimiser state is incomplete")
    order = range(len(moments))
    return AdamState(int(float(step_t)), [moments[i]["exp_avg"] for i in order],
                     [moments[i]["exp_avg_sq"] for i in order])


def check_checkpoint(ckpt: Checkpoint, *, configs_json: list[str],
                     weights: dict[str, dict[str, torch.Tensor]], adam: AdamState,
                     generators: dict[str, torch.Generator], streams: list | None,
                     best: dict[str, torch.Tensor] | None = None) -> None:
    """Check every part of ``ckpt`` against the live loop (RunError naming the first
    mismatch), so that restoring it cannot fail half-way. ``best``: the live loop's
    validation state (:mod:`vaelab.training.validation`), None where it has none."""
    where = ckpt.path
    if len(ckpt.configs_json) != len(configs_json) or not all(
            RunConfig.from_json(live).matches_json(saved)
            for live, saved in zip(configs_json, ckpt.configs_json, strict=True)):
        what = ("other configs than the group's config.json files" if len(configs_json) > 1
                else "another config than this run's config.json")
        raise RunError(f"{where} was written for {what}; it cannot be resumed")
    for kind, live in weights.items():
        found = ckpt.weights[kind]
        missing, extra = sorted(set(live) - set(found)), sorted(set(found) - set(live))
        if missing or extra:
            detail = f"missing {kind}/{missing[0]}" if missing else f"unexpected {kind}/{extra[0]}"
            raise RunError(f"{where} does not match the run's config.json ({detail})")
        for name, t in live.items():
            _same_tensor(where, f"{kind}/{name}", found[name], t)
    if len(ckpt.adam.exp_avg) != len(adam.exp_avg):
        raise RunError(f"{where}: the optimiser state does not match the models' parameters")
    for i, p in enumerate(adam.exp_avg):
        _same_tensor(where, f"optim/{i}/exp_avg", ckpt.adam.exp_avg[i], p)
        _same_tensor(where, f"optim/{i}/exp_avg_sq", ckpt.adam.exp_avg_sq[i], p)
    if set(generators) != set(ckpt.rng):
        raise RunError(f"{where} does not match the run's config.json (its random streams)")
    for name, gen in generators.items():
        state = ckpt.rng[name]
        if state.dtype != torch.uint8 or state.shape != gen.get_state().shape:
            raise RunError(f"{where}: rng/{name} is not a generator state of this device")
    n_streams = len(streams) if streams is not None else 0
    if set(ckpt.perms) != set(range(n_streams)) or len(ckpt.stream_pos) != n_streams:
        raise RunError(f"{where}: its data streams do not match the run's data settings")
    for m in range(n_streams):
        perm, pos, n = ckpt.perms[m], ckpt.stream_pos[m], streams[m].points.shape[0]
        if perm.dtype != torch.int64 or perm.ndim != 1 or (
                perm.numel() and (perm.min() < 0 or perm.max() >= n)):
            raise RunError(f"{where}: stream/{m}/perm is not a permutation of the training set")
        if pos > perm.numel():
            raise RunError(f"{where}: the position {pos} in stream/{m}/perm is out of range")
    found_best = ckpt.loop.best or {}
    if set(found_best) != set(best or {}):
        raise RunError(f"{where}: its validation state (best/...) does not match the run's "
                       "train.validation")
    for name, t in (best or {}).items():
        if name == "scores":  # (+inf until a model's first check)
            f = found_best[name]
            if f.shape != t.shape or f.dtype != t.dtype or torch.isnan(f).any():
                raise RunError(f"{where}: best/scores is not one score per model")
            continue
        _same_tensor(where, f"best/{name}", found_best[name], t)


def set_generator_states(where: Path, generators: dict[str, torch.Generator],
                         states: dict[str, torch.Tensor]) -> None:
    """Set every generator's state, or none of them (a RunError if one is invalid)."""
    backups = {name: gen.get_state() for name, gen in generators.items()}
    try:
        for name, gen in generators.items():
            gen.set_state(states[name])
    except RuntimeError as exc:
        for name, gen in generators.items():
            gen.set_state(backups[name])
        raise RunError(f"{where}: a generator state is invalid: {exc}") from None


def _same_tensor(where: Path, name: str, found: torch.Tensor, live: torch.Tensor) -> None:
    if found.shape != live.shape or found.dtype != live.dtype:
        raise RunError(f"{where}: tensor {name!r} has shape {tuple(found.shape)} {found.dtype}, "
                       f"the run's config.json needs {tuple(live.shape)} {live.dtype}")
    if found.is_floating_point() and not torch.isfinite(found).all():
        raise RunError(f"{where}: tensor {name!r} holds NaN or inf")


def _metrics_rows(where: Path, table: torch.Tensor,
                  fields: tuple[str, ...]) -> list[dict[str, float]]:
    if table.ndim != 2 or table.shape[1] != len(fields):
        raise RunError(f"{where}: its metrics table has shape {tuple(table.shape)}")
    if not torch.isfinite(table).all():
        raise RunError(f"{where}: its metrics hold NaN or inf")
    rows = [dict(zip(fields, r, strict=True)) for r in table.tolist()]
    for row in rows:
        row["step"] = int(row["step"])
    return rows
