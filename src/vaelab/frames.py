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
from safetensors.torch import load_file, save

from vaelab.errors import RunError
from vaelab.fileio import atomic_write_bytes


class Frame(NamedTuple):
    step: int
    data: torch.Tensor  # the training batch at this step, [B, D]
    posterior_z: torch.Tensor  # z ~ q(z|x) for that batch, [B, latent]
    generated: torch.Tensor  # decoded fixed prior draws, [P, D]


PANELS = ("data", "posterior_z", "generated")


def frame_tensors(frames: list[Frame], prefix: str = "") -> dict[str, torch.Tensor]:
    """Frames as tensors named ``PREFIX<step>/<panel>`` (on the CPU, contiguous)."""
    return {f"{prefix}{f.step:09d}/{panel}": getattr(f, panel).detach().cpu().contiguous()
            for f in frames for panel in PANELS}


def parse_frames(where: Path, tensors: dict[str, torch.Tensor]) -> list[Frame]:
    """Frames from tensors named ``<step>/<panel>``, in step order; a RunError naming
    ``where`` for a name or a frame that is not one."""
    by_step: dict[int, dict[str, torch.Tensor]] = {}
    for name, t in tensors.items():
        step, _, panel = name.partition("/")
        if not step.isdigit() or panel not in PANELS:
            raise RunError(f"{where}: unexpected frame tensor {name!r}")
        by_step.setdefault(int(step), {})[panel] = t
    frames = []
    for step in sorted(by_step):
        if set(by_step[step]) != set(PANELS):
            raise RunError(f"{where}: display frame {step} is incomplete")
        frames.append(Frame(step, *(by_step[step][p] for p in PANELS)))
    return frames


def save_frames(frames: list[Frame], path: Path) -> None:
    atomic_write_bytes(path, save(frame_tensors(frames), metadata={"format": "vaelab-frames-1"}))


def load_frames(path: Path) -> list[Frame]:
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise RunError(f"cannot read frames from {path}: {exc}") from None
    return parse_frames(path, tensors)
