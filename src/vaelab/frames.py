"""Display frames: what the seed's three panels show at one step, kept as plain tensors.

Frames are captured during training (cheap: a few hundred points copied to the host every
``frame_every`` steps) and rendered afterwards, so drawing never slows the loop, and
``vaelab plot`` can redraw them from ``frames.safetensors`` at any time.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_tensors
from safetensors.torch import save

from vaelab.errors import RunError
from vaelab.fileio import atomic_write_bytes, safetensors_metadata, tensors_digest


class Frame(NamedTuple):
    step: int
    data: torch.Tensor  # the training batch at this step, [B, D]
    posterior_z: torch.Tensor  # z ~ q(z|x) for that batch, [B, latent]
    generated: torch.Tensor  # decoded fixed prior draws, [P, D]


PANELS = ("data", "posterior_z", "generated")
#: the format ``save_frames`` writes: its metadata's ``sha256`` covers every tensor and the
#: metadata (:func:`vaelab.fileio.tensors_digest`)
FORMAT = "vaelab-frames-2"
#: the format before the checksum: still read (its tensors are checked, not their bytes)
OLD_FORMAT = "vaelab-frames-1"


def frame_tensors(frames: list[Frame], prefix: str = "") -> dict[str, torch.Tensor]:
    """Frames as tensors named ``PREFIX<step>/<panel>`` (on the CPU, contiguous)."""
    return {f"{prefix}{f.step:09d}/{panel}": getattr(f, panel).detach().cpu().contiguous()
            for f in frames for panel in PANELS}


def parse_frames(where: Path, tensors: dict[str, torch.Tensor]) -> list[Frame]:
    """Frames from tensors named ``<step>/<panel>``, in step order; a RunError naming
    ``where`` for a name, a frame or a tensor that is not one.

    Each panel must be a 2-D floating-point tensor of finite values, every frame's data and
    generated points must have the same columns and every posterior the same latent
    dimensions: a drawing of anything else would be wrong, or a traceback.
    """
    by_step: dict[int, dict[str, torch.Tensor]] = {}
    for name, t in tensors.items():
        step, _, panel = name.partition("/")
        if not step.isdigit() or panel not in PANELS:
            raise RunError(f"{where}: unexpected frame tensor {name!r}")
        if t.dim() != 2 or not t.is_floating_point():
            raise RunError(f"{where}: frame tensor {name!r} is {tuple(t.shape)} {t.dtype}, "
                           "not a 2-D floating-point table of points")
        if not torch.isfinite(t).all():
            raise RunError(f"{where}: frame tensor {name!r} holds NaN or inf")
        by_step.setdefault(int(step), {})[panel] = t
    frames = []
    for step in sorted(by_step):
        if set(by_step[step]) != set(PANELS):
            raise RunError(f"{where}: display frame {step} is incomplete")
        frames.append(Frame(step, *(by_step[step][p] for p in PANELS)))
    if frames:
        check_frame_widths(where, frames, frames[0].data.shape[1],
                           frames[0].posterior_z.shape[1])
    return frames


def check_frame_widths(where: Path, frames: list[Frame], columns: int, latent: int) -> None:
    """A RunError naming ``where`` unless every frame has ``columns`` data columns (its data
    and generated points) and ``latent`` latent dimensions (its posterior draws)."""
    for f in frames:
        for panel, width in (("data", columns), ("posterior_z", latent),
                             ("generated", columns)):
            t = getattr(f, panel)
            if t.shape[1] != width:
                raise RunError(f"{where}: frame tensor '{f.step:09d}/{panel}' has "
                               f"{t.shape[1]} columns, expected {width}")


def frames_bytes(frames: list[Frame]) -> bytes:
    """The bytes of a ``frames.safetensors`` holding ``frames``, with its checksum."""
    tensors = frame_tensors(frames)
    meta = {"format": FORMAT}
    meta["sha256"] = tensors_digest(tensors, meta)
    return save(tensors, metadata=meta)


def save_frames(frames: list[Frame], path: Path) -> None:
    """Write ``frames`` to ``path`` atomically (temporary file, then rename)."""
    atomic_write_bytes(path, frames_bytes(frames))


def load_frames(path: Path, data: bytes | None = None) -> list[Frame]:
    """The frames of ``path`` (or of ``data``, its bytes already read), after checking its
    format, its checksum and every tensor (:func:`parse_frames`); a RunError naming the
    file otherwise."""
    try:
        if data is None:
            data = path.read_bytes()
        tensors = load_tensors(data)
        meta = safetensors_metadata(data)
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise RunError(f"cannot read frames from {path}: {exc}") from None
    fmt = meta.get("format")
    if fmt == FORMAT:
        if meta.get("sha256") != tensors_digest(tensors, meta):
            raise RunError(f"{path} fails its checksum: it was corrupted or edited after it "
                           "was written")
    elif fmt != OLD_FORMAT:
        raise RunError(f"{path} is not a vaelab frames file (format {fmt!r}, expected "
                       f"{FORMAT!r})")
    return parse_frames(path, tensors)
