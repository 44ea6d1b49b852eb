"""Training checkpoints: everything a run needs to continue bit for bit, in one safetensors file.

``RUN/checkpoint.safetensors`` holds (tensor names, then the string metadata)::

    model/<name>             the model's state_dict (weights, standardisation, prior)
    optim/<i>/<key>          Adam's state of parameter i: step, exp_avg, exp_avg_sq
    rng/data, rng/noise      torch.Generator states of the data and noise streams
    stream/perm              a fixed training set's current permutation (absent for fresh data)
    loop/sums                running sums of the loss terms since the last metrics row
    metrics                  every metrics row so far, float64 [rows, len(METRIC_FIELDS)]
    frame/<step>/<panel>     every display frame so far
    metadata: format, vaelab_version, step, count, elapsed_s, stream_pos, finished, config,
              sha256 (of every tensor's name, dtype, shape and bytes: a flipped bit is caught)

It is written atomically (temporary file, fsync, rename): a kill at any moment leaves the
previous checkpoint or the new one, never half of one. Loading trusts nothing: every name,
shape, dtype and number is checked against the model and optimiser the run's config.json
builds before any of it is copied in, and nothing is unpickled.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors

from vaelab._version import __version__
from vaelab.errors import RunError
from vaelab.fileio import atomic_write_bytes, safetensors_metadata, tensors_digest
from vaelab.training.frames import Frame
from vaelab.training.optim import LeanAdam

CHECKPOINT_FILE = "checkpoint.safetensors"
FORMAT = "vaelab-checkpoint-1"
FRAME_PANELS = ("data", "posterior_z", "generated")
#: Adam's per-parameter state entries
ADAM_KEYS = ("step", "exp_avg", "exp_avg_sq")


@dataclass
class LoopState:
    """What the training loop carries from one step to the next, besides model and optimiser."""

    step: int
    elapsed_s: float  # training seconds spent so far (all sessions together)
    sums: torch.Tensor  # loss-term sums since the last metrics row
    count: int  # steps in those sums
    metrics: list[dict[str, float]]
    frames: list[Frame]
    finished: bool = False


@dataclass
class Checkpoint:
    """A checkpoint read and checked, ready to be restored."""

    path: Path
    config_json: str
    loop: LoopState
    model_state: dict[str, torch.Tensor]
    optim_state: dict[int, dict[str, torch.Tensor]]
    rng: dict[str, torch.Tensor]
    stream_perm: torch.Tensor | None
    stream_pos: int


def save_checkpoint(path: Path, *, config_json: str, model: torch.nn.Module,
                    optimizer: torch.optim.Optimizer | LeanAdam,
                    generators: dict[str, torch.Generator], stream: object,
                    loop: LoopState, metric_fields: tuple[str, ...]) -> None:
    """Write the checkpoint atomically (the old one stays until the new one is complete)."""
    tensors: dict[str, torch.Tensor] = {}
    for name, t in model.state_dict().items():
        tensors[f"model/{name}"] = t.detach().cpu().contiguous()
    opt_state = optimizer.state_dict()["state"]
    for i, entry in opt_state.items():
        for key in ADAM_KEYS:
            if key in entry:
                value = entry[key]
                value = value if isinstance(value, torch.Tensor) else torch.tensor(float(value))
                # a copy: LeanAdam's step counts are views of one shared tensor
                tensors[f"optim/{i}/{key}"] = value.detach().cpu().clone()
    for name, gen in generators.items():
        tensors[f"rng/{name}"] = gen.get_state().contiguous()
    perm = getattr(stream, "_perm", None)
    if perm is not None:
        tensors["stream/perm"] = perm.detach().cpu().contiguous()
    tensors["loop/sums"] = loop.sums.detach().cpu().double().contiguous()
    tensors["metrics"] = metrics_tensor(loop.metrics, metric_fields)
    tensors.update(frame_tensors(loop.frames, "frame"))
    meta = {"format": FORMAT, "vaelab_version": __version__, "step": str(loop.step),
            "count": str(loop.count), "elapsed_s": repr(loop.elapsed_s),
            "stream_pos": str(getattr(stream, "_pos", 0)),
            "finished": "1" if loop.finished else "0", "config": config_json,
            "sha256": tensors_digest(tensors)}
    atomic_write_bytes(path, save_tensors(tensors, metadata=meta))


def read_checkpoint(path: Path, metric_fields: tuple[str, ...]) -> Checkpoint:
    """Parse ``path``; a RunError names the first thing wrong (nothing is restored here)."""
    tensors, meta = load_verified(path, FORMAT)
    try:
        step, count, pos = int(meta["step"]), int(meta["count"]), int(meta["stream_pos"])
        elapsed = float(meta["elapsed_s"])
        finished = meta["finished"] == "1"
        config_json = meta["config"]
    except (KeyError, ValueError):
        raise RunError(f"{path}: its metadata is incomplete or malformed") from None
    if step < 0 or count < 0 or pos < 0 or not math.isfinite(elapsed) or elapsed < 0:
        raise RunError(f"{path}: its metadata holds impossible values (step {step})")
    model_state: dict[str, torch.Tensor] = {}
    optim_state: dict[int, dict[str, torch.Tensor]] = {}
    rng: dict[str, torch.Tensor] = {}
    frames: dict[str, torch.Tensor] = {}
    perm = None
    sums = metrics = None
    for name, t in tensors.items():
        kind, _, rest = name.partition("/")
        if kind == "model":
            model_state[rest] = t
        elif kind == "optim":
            index, _, key = rest.partition("/")
            if not index.isdigit() or key not in ADAM_KEYS:
                raise RunError(f"{path}: unexpected tensor {name!r}")
            optim_state.setdefault(int(index), {})[key] = t
        elif kind == "rng":
            rng[rest] = t
        elif name == "stream/perm":
            perm = t
        elif name == "loop/sums":
            sums = t
        elif name == "metrics":
            metrics = t
        elif kind == "frame":
            frames[rest] = t
        else:
            raise RunError(f"{path}: unexpected tensor {name!r}")
    if sums is None or metrics is None:
        raise RunError(f"{path}: the loop state is missing")
    if not torch.isfinite(sums).all():
        raise RunError(f"{path}: its loss sums hold NaN or inf")
    rows = metrics_rows(path, metrics, metric_fields)
    loop = LoopState(step, elapsed, sums, count, rows, parse_frames(path, frames), finished)
    return Checkpoint(path, config_json, loop, model_state, optim_state, rng, perm, pos)


def restore_checkpoint(ckpt: Checkpoint, *, model: torch.nn.Module,
                       optimizer: torch.optim.Optimizer | LeanAdam,
                       generators: dict[str, torch.Generator], stream: object) -> LoopState:
    """Check every tensor of ``ckpt`` against the live objects, then copy it all in.

    Nothing is changed unless everything matches: a RunError leaves model, optimiser,
    generators and stream as they were.
    """
    where = ckpt.path
    expected = model.state_dict()
    same_keys(where, "model", set(expected), set(ckpt.model_state))
    for name, live in expected.items():
        same_tensor(where, f"model/{name}", ckpt.model_state[name], live)
    params = [p for group in optimizer.param_groups for p in group["params"]]
    if ckpt.loop.step > 0 and not ckpt.optim_state:
        raise RunError(f"{where}: the optimiser state is missing")
    if ckpt.optim_state and set(ckpt.optim_state) != set(range(len(params))):
        raise RunError(f"{where}: the optimiser state does not match the model's parameters")
    for i, entry in ckpt.optim_state.items():
        if set(entry) != set(ADAM_KEYS):
            raise RunError(f"{where}: the optimiser state of parameter {i} is incomplete")
        same_tensor(where, f"optim/{i}/exp_avg", entry["exp_avg"], params[i])
        same_tensor(where, f"optim/{i}/exp_avg_sq", entry["exp_avg_sq"], params[i])
        if entry["step"].numel() != 1 or not torch.isfinite(entry["step"]).all():
            raise RunError(f"{where}: optim/{i}/step is not a finite scalar")
    check_generator_states(where, generators, ckpt.rng)
    perm = getattr(stream, "_perm", None)
    if (perm is None) != (ckpt.stream_perm is None):
        raise RunError(f"{where}: its data stream does not match the run's data settings")
    if ckpt.stream_perm is not None:
        check_permutation(where, "stream/perm", ckpt.stream_perm, ckpt.stream_pos,
                          stream.points.shape[0])  # type: ignore[attr-defined]
    # everything checked: restore (generator states are validated by set_state itself too)
    set_generator_states(where, generators, ckpt.rng)
    model.load_state_dict(ckpt.model_state)
    if ckpt.optim_state:
        groups = optimizer.state_dict()["param_groups"]
        optimizer.load_state_dict({"state": ckpt.optim_state, "param_groups": groups})
    if ckpt.stream_perm is not None:
        stream._perm = ckpt.stream_perm.to(stream.points.device)  # type: ignore[attr-defined]
        stream._pos = ckpt.stream_pos  # type: ignore[attr-defined]
    return ckpt.loop


def check_permutation(where: Path, name: str, perm: torch.Tensor, pos: int, n: int) -> None:
    """Refuse a saved permutation that is not of ``n`` points, or a position beyond it."""
    if perm.dtype != torch.int64 or perm.ndim != 1 or (
            perm.numel() and (perm.min() < 0 or perm.max() >= n)):
        raise RunError(f"{where}: {name} is not a permutation of the training set")
    if pos > perm.numel():
        raise RunError(f"{where}: the position {pos} in {name} is out of range")


def check_generator_states(where: Path, generators: dict[str, torch.Generator],
                           states: dict[str, torch.Tensor]) -> None:
    """Refuse saved generator states that are missing, extra, or not of these generators."""
    same_keys(where, "rng", set(generators), set(states))
    for name, gen in generators.items():
        state = states[name]
        if state.dtype != torch.uint8 or state.shape != gen.get_state().shape:
            raise RunError(f"{where}: rng/{name} is not a generator state of this device")


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


def same_keys(where: Path, what: str, expected: set[str], found: set[str]) -> None:
    missing, extra = sorted(expected - found), sorted(found - expected)
    if missing or extra:
        detail = f"missing {what}/{missing[0]}" if missing else f"unexpected {what}/{extra[0]}"
        raise RunError(f"{where} does not match the run's config.json ({detail})")


def same_tensor(where: Path, name: str, found: torch.Tensor, live: torch.Tensor) -> None:
    if found.shape != live.shape or found.dtype != live.dtype:
        raise RunError(f"{where}: tensor {name!r} has shape {tuple(found.shape)} {found.dtype}, "
                       f"the run's config.json needs {tuple(live.shape)} {live.dtype}")
    if found.is_floating_point() and not torch.isfinite(found).all():
        raise RunError(f"{where}: tensor {name!r} holds NaN or inf")


# -- pieces shared with the group checkpoint (training/group_checkpoint.py) ------------------

def load_verified(path: Path, fmt: str) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The tensors and metadata of the checkpoint ``path``, after checking its format name
    and checksum; a RunError names what is wrong."""
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
    if meta.get("format") != fmt:
        raise RunError(f"{path} is not a vaelab checkpoint of this kind (format "
                       f"{meta.get('format')!r}, expected {fmt!r})")
    if meta.get("sha256") != tensors_digest(tensors):
        raise RunError(f"{path} fails its checksum: it was corrupted or edited after it "
                       "was written")
    return tensors, meta


def metrics_tensor(rows: list[dict[str, float]], fields: tuple[str, ...]) -> torch.Tensor:
    """Metrics rows as a float64 table ``[rows, fields]``."""
    table = [[float(row[f]) for f in fields] for row in rows]
    return torch.tensor(table, dtype=torch.float64).reshape(-1, len(fields))


def metrics_rows(where: Path, table: torch.Tensor,
                 fields: tuple[str, ...]) -> list[dict[str, float]]:
    """The rows of :func:`metrics_tensor`'s table, checked."""
    if table.ndim != 2 or table.shape[1] != len(fields):
        raise RunError(f"{where}: its metrics table has shape {tuple(table.shape)}")
    if not torch.isfinite(table).all():
        raise RunError(f"{where}: its metrics hold NaN or inf")
    rows = [dict(zip(fields, r, strict=True)) for r in table.tolist()]
    for row in rows:
        row["step"] = int(row["step"])
    return rows


def frame_tensors(frames: list[Frame], prefix: str) -> dict[str, torch.Tensor]:
    """Display frames as tensors named ``PREFIX/<step>/<panel>``."""
    return {f"{prefix}/{f.step:09d}/{panel}": getattr(f, panel).detach().cpu().contiguous()
            for f in frames for panel in FRAME_PANELS}


def parse_frames(where: Path, tensors: dict[str, torch.Tensor]) -> list[Frame]:
    """Frames from tensors named ``<step>/<panel>`` (the prefix removed), in step order."""
    by_step: dict[int, dict[str, torch.Tensor]] = {}
    for name, t in tensors.items():
        fstep, _, panel = name.partition("/")
        if not fstep.isdigit() or panel not in FRAME_PANELS:
            raise RunError(f"{where}: unexpected frame tensor {name!r}")
        by_step.setdefault(int(fstep), {})[panel] = t
    frames = []
    for fstep in sorted(by_step):
        panels = by_step[fstep]
        if set(panels) != set(FRAME_PANELS):
            raise RunError(f"{where}: display frame {fstep} is incomplete")
        frames.append(Frame(fstep, *(panels[p] for p in FRAME_PANELS)))
    return frames
