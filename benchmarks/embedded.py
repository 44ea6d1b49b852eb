"""A user's table with a known density: a 2-D structure hidden in D dimensions.

The rows are y = (roll, g) rotated, x = Q y: ``roll`` a 2-D Swiss roll (vaelab's own, with its
exact density), ``g`` D - 2 independent Gaussian columns of standard deviations spread from
0.5 to 3, and Q a random orthogonal matrix, so that every column mixes the roll and the
noise. Since |det Q| = 1, log p(x) = log p_roll(y_1, y_2) + sum_j log N(y_j; 0, s_j^2) exactly,
in nats per row. The file goes through ``vaelab train --data`` as a user's would (the
settings under test on the command line) and ``vaelab evaluate`` (its held-out rows and its
GaussianMixture and KernelDensity baselines); the gap of each to the true entropy is
mean(log p - log q) over the same held-out rows, with its standard error.

Run::

    python benchmarks/embedded.py --write
    python benchmarks/embedded.py --dims 4 --rows 5000 --settings "" "--latent-dim 4" --steps 2000
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from benchmarks_md import machine, update_section

from vaelab.data import SwissRoll2D


def make_table(dim: int, rows: int, seed: int) -> tuple[np.ndarray, callable]:
    """``rows`` points in ``dim`` columns and their exact log-density."""
    rng = np.random.default_rng(seed)
    roll = SwissRoll2D()
    y2 = roll.sample(rows, torch.Generator().manual_seed(seed)).double().numpy()
    scales = np.linspace(0.5, 3.0, dim - 2) if dim > 2 else np.zeros(0)
    y = np.column_stack([y2, rng.normal(size=(rows, dim - 2)) * scales])
    q, _ = np.linalg.qr(rng.normal(size=(dim, dim)))

    def log_p(x: np.ndarray) -> np.ndarray:
        yy = x @ q  # y = Q^T x, row-wise
        lp = roll.log_prob(torch.as_tensor(yy[:, :2])).double().numpy()
        if dim > 2:
            z = yy[:, 2:] / scales
            lp = lp + (-0.5 * z ** 2 - np.log(scales) - 0.5 * math.log(2 * math.pi)).sum(1)
        return lp
    return y @ q.T, log_p


def run_one(csv: Path, out: Path, settings: str, steps: int | None, k: int) -> dict:
    cmd = [sys.executable, "-m", "vaelab", "train", "--data", str(csv), "--out", str(out),
           "--quiet", "--no-figures", "--no-report", *shlex.split(settings)]
    if steps is not None:
        cmd += ["--steps", str(steps)]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - t0
    report = out / "e.json"
    subprocess.run([sys.executable, "-m", "vaelab", "evaluate", str(out), "--k", str(k),
                    "--no-figures", "--json", str(report)], check=True,
                   stdout=subprocess.DEVNULL)
    summary = json.loads((out / "summary.json").read_text())
    return {"report": json.loads(report.read_text()), "seconds": seconds,
            "train_seconds": summary["train_seconds"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dims", type=int, nargs="+", default=[6])
    ap.add_argument("--rows", type=int, default=20_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--settings", nargs="+", default=["", "--latent-dim 2"],
                    help="train options to compare ({D}: the table's columns)")
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--k", type=int, default=1000)
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    lines = ["| D | settings | model gap | GaussianMixture gap | KernelDensity gap | "
             "C2ST | training (s) |", "|---|---|---|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as tmp:
        for dim in args.dims:
            points, log_p = make_table(dim, args.rows, args.seed)
            csv = Path(tmp) / f"table{dim}.csv"
            header = ",".join(f"c{j}" for j in range(dim))
            np.savetxt(csv, points, delimiter=",", header=header, comments="")
            for i, settings in enumerate(args.settings):
                s = settings.replace("{D}", str(dim))
                out = Path(tmp) / f"run{dim}-{i}"
                result = run_one(csv, out, s, args.steps, args.k)
                rep = result["report"]
                held = np.load(out / "heldout.npy").astype(np.float64)
                # the gaps, paired over the held-out rows: mean log p - mean log q
                h = -float(log_p(held).mean())
                gaps = {"model": rep["nll"] - h}
                for key in ("gaussian_mixture", "kernel_density"):
                    gaps[key] = rep["baselines"][key]["nll"] - h
                c2st = rep.get("sample_metrics", {}).get("c2st_accuracy", {}).get("value")
                line = (f"| {dim} | `{s or '(default)'}` | {gaps['model']:.4f} | "
                        f"{gaps['gaussian_mixture']:.4f} | {gaps['kernel_density']:.4f} | "
                        f"{c2st if c2st is None else round(c2st, 3)} | "
                        f"{result['train_seconds']:.0f} |")
                print(line, flush=True)
                lines.append(line)
    body = "\n".join(lines)
    print(body)
    if args.write:
        update_section("embedded", "A 2-D structure hidden in D columns",
                       "python benchmarks/embedded.py --dims 3 6 10 --settings \"\" "
                       "\"--latent-dim 2\" --k 500 --write",
                       f"Machine: {machine()}. {args.rows:,} rows (20% held out), seed "
                       f"{args.seed}; gaps in nats per row on the held-out rows, IWAE K = "
                       f"{args.k}.\n\n{body}")


if __name__ == "__main__":
    main()
