"""Checkpoints of a group of models (:mod:`vaelab.training.group`): the whole group in one file.

A group trains its M models in one loop, from shared batches and noise, so it stops and
resumes as one: ``OUT/group-checkpoint.safetensors`` holds (tensor names, then metadata)::

    params/<name>, buffers/<name>   the stacked weights and buffers, [M, ...] each
    optim/step                      Adam's step count (the same for every parameter)
    optim/<i>/exp_avg, .../exp_avg_sq   Adam's moments of stacked parameter i
    rng/data, rng/noise             the group's data and noise streams
    rng/model/<m>                   model m's own data generator (its fixed training set)
    stream/<m>/perm                 model m's permutation of its fixed training set
    loop/sums [M, 4], loop/bad_step [M]   loss sums since the last row; first non-finite step
    metrics/<m>                     model m's metrics rows so far, float64
    frame/<m>/<step>/<panel>        model m's display frames so far
    metadata: format, vaelab_version, step, count, elapsed_s, stream_pos (JSON list),
              finished, configs (JSON list of the models' config.json texts), sha256

It is written atomically, checksummed and checked before anything is restored, as a single
run's checkpoint is (:mod:`vaelab.training.checkpoint`); a flipped bit, a wrong shape or a
config that does not match the group's is a RunError naming it.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import save as save_tensors

from vaelab._version import __version__
from vaelab.config import RunConfig
from vaelab.errors import RunError
from vaelab.fileio import atomic_write_bytes, tensors_digest
from vaelab.training.checkpoint import (
    check_generator_states,
    check_permutation,
    frame_tensors,
    load_verified,
    metrics_rows,
    metrics_tensor,
    parse_frames,
    same_keys,
    same_tensor,
)
from vaelab.training.frames import Frame

GROUP_CHECKPOINT_FILE = "group-checkpoint.safetensors"
FORMAT = "vaelab-group-checkpoint-1"


@dataclass
class GroupLoopState:
    """What the group loop carries from one step to the next, besides weights and Adam."""

    step: int
    elapsed_s: float  # training seconds so far (all sessions together)
    sums: torch.Tensor  # [M, terms] loss-term sums since the last metrics row
    count: int  # steps in those sums
    bad_step: torch.Tensor  # [M] int64: the first step with a non-finite loss, 0 if none
    metrics: list[list[dict[str, float]]]  # per model
    frames: list[list[Frame]]  # per model
    finished: bool = False


@dataclass
class AdamState:
    """Adam's state over the stacked parameters: one step count, the two moments of each."""

    step: int
    exp_avg: list[torch.Tensor]
    exp_avg_sq: list[torch.Tensor]


@dataclass
class GroupCheckpoint:
    """A group checkpoint read and checksummed, not yet checked against a live group."""

    path: Path
    configs_json: list[str]
    loop: GroupLoopState
    params: dict[str, torch.Tensor]
    buffers: dict[str, torch.Tensor]
    adam: AdamState
    rng: dict[str, torch.Tensor]
    perms: dict[int, torch.Tensor]
    stream_pos: list[int]


def save_group_checkpoint(path: Path, *, configs_json: list[str],
                          params: dict[str, torch.Tensor], buffers: dict[str, torch.Tensor],
                          adam: AdamState, generators: dict[str, torch.Generator],
                          streams: list | None, loop: GroupLoopState,
                          metric_fields: tuple[str, ...]) -> None:
    """Write the group's checkpoint atomically (the old one stays until the new one is whole)."""
    def cpu(t: torch.Tensor) -> torch.Tensor:
        return t.detach().cpu().contiguous().clone()

    tensors: dict[str, torch.Tensor] = {}
    tensors.update({f"params/{k}": cpu(v) for k, v in params.items()})
    tensors.update({f"buffers/{k}": cpu(v) for k, v in buffers.items()})
    tensors["optim/step"] = torch.tensor(float(adam.step), dtype=torch.float64)
    for i, (m, v) in enumerate(zip(adam.exp_avg, adam.exp_avg_sq, strict=True)):
        tensors[f"optim/{i}/exp_avg"], tensors[f"optim/{i}/exp_avg_sq"] = cpu(m), cpu(v)
    tensors.update({f"rng/{k}": g.get_state().contiguous() for k, g in generators.items()})
    for m, stream in enumerate(streams or []):
        tensors[f"stream/{m}/perm"] = cpu(stream._perm)
    tensors["loop/sums"] = loop.sums.detach().cpu().double().contiguous()
    tensors["loop/bad_step"] = loop.bad_step.detach().cpu().long().contiguous()
    for m, rows in enumerate(loop.metrics):
        tensors[f"metrics/{m}"] = metrics_tensor(rows, metric_fields)
    for m, frames in enumerate(loop.frames):
        tensors.update(frame_tensors(frames, f"frame/{m}"))
    meta = {"format": FORMAT, "vaelab_version": __version__, "step": str(loop.step),
            "count": str(loop.count), "elapsed_s": repr(loop.elapsed_s),
            "stream_pos": json.dumps([s._pos for s in streams or []]),
            "finished": "1" if loop.finished else "0", "configs": json.dumps(configs_json),
            "sha256": tensors_digest(tensors)}
    atomic_write_bytes(path, save_tensors(tensors, metadata=meta))


def read_group_checkpoint(path: Path, metric_fields: tuple[str, ...]) -> GroupCheckpoint:
    """Parse ``path``; a RunError names the first thing wrong (nothing is restored here)."""
    tensors, meta = load_verified(path, FORMAT)
    try:
        step, count = int(meta["step"]), int(meta["count"])
        elapsed = float(meta["elapsed_s"])
        finished = meta["finished"] == "1"
        configs_json = json.loads(meta["configs"])
        stream_pos = json.loads(meta["stream_pos"])
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
    parts: dict[str, dict[str, torch.Tensor]] = {k: {} for k in (
        "params", "buffers", "optim", "rng", "stream", "metrics", "frame", "loop")}
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
    metrics = [metrics_rows(path, parts["metrics"][str(m)], metric_fields)
               for m in range(m_count)]
    frames: list[dict[str, torch.Tensor]] = [{} for _ in range(m_count)]
    for name, t in parts["frame"].items():
        m, _, rest = name.partition("/")
        if not m.isdigit() or int(m) >= m_count:
            raise RunError(f"{path}: unexpected tensor 'frame/{name}'")
        frames[int(m)][rest] = t
    adam = _read_adam(path, parts["optim"])
    perms: dict[int, torch.Tensor] = {}
    for name, t in parts["stream"].items():
        m, _, what = name.partition("/")
        if not m.isdigit() or int(m) >= m_count or what != "perm":
            raise RunError(f"{path}: unexpected tensor 'stream/{name}'")
        perms[int(m)] = t
    loop = GroupLoopState(step, elapsed, sums, count, bad_step, metrics,
                          [parse_frames(path, f) for f in frames], finished)
    return GroupCheckpoint(path, configs_json, loop, parts["params"], parts["buffers"], adam,
                           parts["rng"], perms, stream_pos)


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


def check_group_checkpoint(ckpt: GroupCheckpoint, *, configs_json: list[str],
                           params: dict[str, torch.Tensor], buffers: dict[str, torch.Tensor],
                           generators: dict[str, torch.Generator],
                           streams: list | None) -> None:
    """Check every part of ``ckpt`` against the live group (RunError naming the first
    mismatch), so that restoring it cannot fail half-way."""
    where = ckpt.path
    if len(ckpt.configs_json) != len(configs_json) or not all(
            RunConfig.from_json(live).matches_json(saved)
            for live, saved in zip(configs_json, ckpt.configs_json, strict=True)):
        raise RunError(f"{where} was written for other configs than the group's config.json "
                       "files; it cannot be resumed")
    for what, found, live in (("params", ckpt.params, params),
                              ("buffers", ckpt.buffers, buffers)):
        same_keys(where, what, set(live), set(found))
        for name, t in live.items():
            same_tensor(where, f"{what}/{name}", found[name], t)
    live_params = list(params.values())
    if len(ckpt.adam.exp_avg) != len(live_params):
        raise RunError(f"{where}: the optimiser state does not match the models' parameters")
    for i, p in enumerate(live_params):
        same_tensor(where, f"optim/{i}/exp_avg", ckpt.adam.exp_avg[i], p)
        same_tensor(where, f"optim/{i}/exp_avg_sq", ckpt.adam.exp_avg_sq[i], p)
    check_generator_states(where, generators, ckpt.rng)
    n_streams = len(streams) if streams is not None else 0
    if set(ckpt.perms) != set(range(n_streams)) or len(ckpt.stream_pos) != n_streams:
        raise RunError(f"{where}: its data streams do not match the group's data settings")
    for m in range(n_streams):
        check_permutation(where, f"stream/{m}/perm", ckpt.perms[m], ckpt.stream_pos[m],
                          streams[m].points.shape[0])  # type: ignore[index]
