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


def save_frames(frames: list[Frame], path: Path) -> None:
    tensors: dict[str, torch.Tensor] = {}
    for f in frames:
        key = f"{f.step:09d}"
        tensors[f"{key}/data"] = f.data.contiguous()
        tensors[f"{key}/posterior_z"] = f.posterior_z.contiguous()
        tensors[f"{key}/generated"] = f.generated.contiguous()
    atomic_write_bytes(path, save(tensors, metadata={"format": "vaelab-frames-1"}))


def load_frames(path: Path) -> list[Frame]:
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise RunError(f"cannot read frames from {path}: {exc}") from None
    frames = []
    for key in sorted({k.split("/")[0] for k in tensors}):
        try:
            frames.append(Frame(int(key), tensors[f"{key}/data"], tensors[f"{key}/posterior_z"],
                                tensors[f"{key}/generated"]))
        except (KeyError, ValueError):
            raise RunError(f"{path} is not a vaelab frames file (bad entry {key!r})") from None
    return frames
