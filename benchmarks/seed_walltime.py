"""vaelab's ``seed`` preset against the seed's own training loop: wall time and result.

Both train the blog's model at the blog's settings (Swiss roll noise 0.3, SimpleVAE 2-128-128-2,
MSE + 1 x KLD, Adam 2e-2, StepLR(1000, 0.7), 10,000 steps of 512) on this machine's CPU, then
generate 10,000 points.

* **seed loop**: the blog's loop logic, rebuilt here: a fresh ``make_swiss_roll`` batch from
  scikit-learn every step, the list output and loss dict of the blog's class, default Adam, the
  loss read back with ``.item()`` every step. Timed from the first step to the 10,000 samples.
* **vaelab**: the real commands, end to end, as a user runs them (process start, imports,
  figures and files included)::

      vaelab train --preset seed --out RUN --seed S --quiet
      vaelab sample RUN -n 10000 -o RUN/points.npy --seed S

The result is scored by where the generated points fall relative to the noise-free spiral
(t cos t, t sin t), t in [1.5 pi, 4.5 pi]: the share of points more than 1.0 from it ("off the
roll": the smear between the arms; the true data, noise 0.3, has almost none) and their mean
distance to it. Run::

    python benchmarks/seed_walltime.py --seeds 3          # print the table
    python benchmarks/seed_walltime.py --seeds 3 --write  # and update BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from benchmarks_md import machine, update_section
from scipy.spatial import cKDTree
from sklearn.datasets import make_swiss_roll

from vaelab.models import SimpleVAE

_T = np.linspace(1.5 * math.pi, 4.5 * math.pi, 400_001)
_SPIRAL = cKDTree(np.column_stack((_T * np.cos(_T), _T * np.sin(_T))))


def roll_scores(points: np.ndarray) -> tuple[float, float]:
    """(share of points farther than 1.0 from the noise-free spiral, mean distance to it)."""
    dist = _SPIRAL.query(points)[0]
    return float(np.mean(dist > 1.0)), float(np.mean(dist))


class SeedStyleVAE(SimpleVAE):
    """The blog's interface on the same network: list outputs, a dict of losses."""

    def forward(self, x):  # noqa: D102 - the blog's signature
        mu, log_var = self.encode(x)
        std = torch.exp(0.5 * log_var)
        z = torch.randn_like(std) * std + mu
        return [self.decode(z), x, mu, log_var, z]

    def loss_function(self, res, kld_weight):
        recons, x, mu, log_var = res[0], res[1], res[2], res[3]
        recons_loss = F.mse_loss(recons, x)
        kld = torch.mean(-0.5 * torch.sum(1 + log_var - mu**2 - log_var.exp(), dim=1), dim=0)
        loss = recons_loss + kld_weight * kld
        return {"loss": loss, "Reconstruction_Loss": recons_loss.detach(), "KLD": kld.detach()}


def seed_loop(seed: int, steps: int, batch: int = 512,
              device: str = "cpu") -> tuple[float, np.ndarray]:
    """The seed's loop: returns (seconds, 10,000 generated points). On ``device = "cuda"``
    the model trains there and each batch is copied there, as the blog's code would run."""
    torch.manual_seed(seed)
    np.random.seed(seed)  # noqa: NPY002 - the blog's make_swiss_roll draws from the global RNG
    model = SeedStyleVAE().to(device)
    opt = torch.optim.Adam(model.parameters(), lr=2e-2)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1000, gamma=0.7)
    t0 = time.perf_counter()
    for _ in range(steps):
        x_np, _ = make_swiss_roll(batch, noise=0.3)
        x = torch.tensor(x_np[:, [0, 2]], dtype=torch.float32, device=device)
        losses = model.loss_function(model(x), kld_weight=1.0)
        opt.zero_grad()
        losses["loss"].backward()
        opt.step()
        sched.step()
        _ = (losses["loss"].item(), losses["Reconstruction_Loss"].item(), losses["KLD"].item())
    with torch.no_grad():
        points = model.decode(torch.randn(10_000, 2, device=device)).cpu().numpy()
    return time.perf_counter() - t0, points


def vaelab_cli(seed: int, steps: int, workdir: Path) -> tuple[float, float, np.ndarray]:
    """The vaelab commands: returns (wall seconds, loop-only seconds, generated points)."""
    run = workdir / f"seed{seed}"
    exe = [sys.executable, "-m", "vaelab"]
    t0 = time.perf_counter()
    subprocess.run([*exe, "train", "--preset", "seed", "--out", str(run), "--seed", str(seed),
                    "--steps", str(steps), "--quiet"], check=True, capture_output=True,
                   env=_env(workdir))
    subprocess.run([*exe, "sample", str(run), "-n", "10000", "-o", str(run / "points.npy"),
                    "--seed", str(seed)], check=True, capture_output=True, env=_env(workdir))
    wall = time.perf_counter() - t0
    import json

    loop = json.loads((run / "summary.json").read_text())["train_seconds"]
    return wall, loop, np.load(run / "points.npy")


def _env(workdir: Path) -> dict[str, str]:
    """The commands' environment: a compiled-step cache folder of this benchmark's own."""
    return {**os.environ, "VAELAB_CACHE_DIR": str(workdir / "vaelab-cache")}


def first_build(workdir: Path) -> float:
    """Seconds to build the seed preset's compiled step in an empty cache (what a machine's
    first ``vaelab train --preset seed`` adds): a 10-step run with ``--compile on`` builds the
    package the timed runs then load (same shapes, same key)."""
    import json

    run = workdir / "first"
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "vaelab", "train", "--preset", "seed", "--out",
                    str(run), "--steps", "10", "--compile", "on", "--quiet", "--no-figures"],
                   check=True, capture_output=True, env=_env(workdir))
    wall = time.perf_counter() - t0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["compile_cache"] == "built", summary
    print(f"first build: {summary['compile_seconds']:.1f} s ({wall:.1f} s whole command)",
          file=sys.stderr)
    return summary["compile_seconds"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=10_000)
    ap.add_argument("--write", action="store_true", help="update BENCHMARKS.md")
    args = ap.parse_args()

    rng = np.random.RandomState(0)
    truth, _ = make_swiss_roll(10_000, noise=0.3, random_state=rng)
    rows = {"seed loop": [], "vaelab": []}
    loop_only = []
    with tempfile.TemporaryDirectory() as tmp:
        build = first_build(Path(tmp))
        for s in range(args.seeds):
            secs, pts = seed_loop(s, args.steps)
            rows["seed loop"].append((secs, *roll_scores(pts)))
            wall, loop, pts = vaelab_cli(s, args.steps, Path(tmp))
            rows["vaelab"].append((wall, *roll_scores(pts)))
            loop_only.append(loop)
            print(f"seed {s}: seed loop {secs:.1f} s, vaelab {wall:.1f} s "
                  f"(loop {loop:.1f} s)", file=sys.stderr)

    def cell(values, fmt):
        mean = statistics.mean(values)
        sd = statistics.stdev(values) if len(values) > 1 else 0.0
        return f"{mean:{fmt}} ± {sd:{fmt}}"

    off_true, dist_true = roll_scores(truth[:, [0, 2]])
    lines = [
        f"Machine: {machine()}. {args.seeds} seeds each, {args.steps} steps of 512, "
        "mean ± sd over seeds.",
        "",
        "| | wall time to 10k samples (s) | steps/s | off the roll (> 1.0) | mean distance |",
        "|---|---|---|---|---|",
    ]
    for name, vals in rows.items():
        secs = [v[0] for v in vals]
        label = ("seed's loop logic" if name == "seed loop"
                 else "`vaelab train --preset seed` + `vaelab sample` (whole commands)")
        lines.append(f"| {label} | {cell(secs, '.1f')} | "
                     f"{cell([args.steps / s for s in secs], '.0f')} | "
                     f"{cell([v[1] for v in vals], '.4f')} | {cell([v[2] for v in vals], '.3f')} |")
    lines.append(f"| vaelab training loop alone | {cell(loop_only, '.1f')} | "
                 f"{cell([args.steps / s for s in loop_only], '.0f')} | | |")
    lines.append(f"| true data (10k points) | | | {off_true:.4f} | {dist_true:.3f} |")
    lines += ["", "vaelab trains the preset's 10,000 steps with its step compiled ahead of time "
              "(`--compile auto`), loaded here from a cache the benchmark filled first; a "
              f"machine's first run also builds it, {build:.1f} s here (in an empty cache "
              "folder, before the training clock starts)."]
    table = "\n".join(lines)
    print(table)
    if args.write:
        update_section("seed_walltime", "Seed preset vs the seed's own loop",
                       "python benchmarks/seed_walltime.py --seeds 3 --write", table)


if __name__ == "__main__":
    main()
