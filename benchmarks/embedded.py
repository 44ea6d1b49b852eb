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


def _roll_table(dim: int, rows: int, seed: int) -> tuple[np.ndarray, callable]:
    """The 2-D Swiss roll beside D - 2 Gaussian columns, rotated (the module's first kind)."""
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


def _mixture_table(dim: int, rows: int, seed: int) -> tuple[np.ndarray, callable]:
    """8 Gaussians of random full covariances (eigenvalues 0.05 to 1) and random weights,
    their means drawn with spread 3: the kind of file a GaussianMixture fits exactly."""
    rng = np.random.default_rng(seed)
    k = 8
    weights = rng.dirichlet(np.full(k, 4.0))
    means = rng.normal(size=(k, dim)) * 3.0
    chols = []
    for _ in range(k):
        q, _ = np.linalg.qr(rng.normal(size=(dim, dim)))
        cov = (q * rng.uniform(0.05, 1.0, size=dim)) @ q.T
        chols.append(np.linalg.cholesky(cov))
    comp = rng.choice(k, size=rows, p=weights)
    eps = rng.normal(size=(rows, dim))
    x = means[comp] + np.einsum("nij,nj->ni", np.stack(chols)[comp], eps)

    def log_p(x: np.ndarray) -> np.ndarray:
        parts = []
        for j in range(k):
            u = np.linalg.solve(chols[j], (x - means[j]).T).T
            parts.append(np.log(weights[j]) - 0.5 * (u ** 2).sum(1)
                         - np.log(np.diag(chols[j])).sum() - 0.5 * dim * math.log(2 * math.pi))
        return np.logaddexp.reduce(np.stack(parts), axis=0)
    return x, log_p


#: the toy sets a product table takes its column pairs from, in order
_PRODUCT_SETS = ("moons", "pinwheel", "8gaussians", "circles", "2spirals")


def _product_table(dim: int, rows: int, seed: int) -> tuple[np.ndarray, callable]:
    """Independent 2-D toy sets side by side (moons, pinwheel, 8gaussians, ...), and one
    standard Gaussian column where D is odd: log p is the sum of the parts' log-densities."""
    from vaelab.config import DataConfig
    from vaelab.data import build_source
    sources = [build_source(DataConfig(name=_PRODUCT_SETS[i % len(_PRODUCT_SETS)]))
               for i in range(dim // 2)]
    rng = np.random.default_rng(seed)
    cols = [s.sample(rows, torch.Generator().manual_seed(seed + 1 + i)).double().numpy()
            for i, s in enumerate(sources)]
    if dim % 2:
        cols.append(rng.normal(size=(rows, 1)))
    x = np.column_stack(cols)

    def log_p(x: np.ndarray) -> np.ndarray:
        lp = sum(s.log_prob(torch.as_tensor(x[:, 2 * i:2 * i + 2])).double().numpy()
                 for i, s in enumerate(sources))
        if dim % 2:
            lp = lp - 0.5 * x[:, -1] ** 2 - 0.5 * math.log(2 * math.pi)
        return lp
    return x, log_p


#: table kinds: each returns (rows, exact log-density in nats per row)
KINDS = {"roll": _roll_table, "mixture": _mixture_table, "product": _product_table}


def make_table(dim: int, rows: int, seed: int, kind: str = "roll"
               ) -> tuple[np.ndarray, callable]:
    """``rows`` points in ``dim`` columns of the given kind and their exact log-density."""
    return KINDS[kind](dim, rows, seed)


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


def training_rows(points: np.ndarray, out: Path, limit: int) -> np.ndarray:
    """Up to ``limit`` of the rows the run trained on: the table's rows less its held-out
    ones (matched as the float32 rows the run read)."""
    held = {r.tobytes() for r in np.load(out / "heldout.npy").astype(np.float32)}
    keep = [i for i, r in enumerate(points.astype(np.float32)) if r.tobytes() not in held]
    return points[keep[:limit]]


def nll_on(out: Path, rows: np.ndarray, k: int) -> float:
    """The run's IWAE NLL (nats per row) on ``rows``, through ``vaelab evaluate --input``."""
    inp, report = out / "train_rows.npy", out / "train_rows.json"
    np.save(inp, rows)
    subprocess.run([sys.executable, "-m", "vaelab", "evaluate", str(out), "--input", str(inp),
                    "--k", str(k), "--no-figures", "--json", str(report)], check=True,
                   stdout=subprocess.DEVNULL)
    return json.loads(report.read_text())["nll"]


def flow_gap(points: np.ndarray, out: Path, log_p: callable) -> str:
    """A zuko neural spline flow (``flow_baseline.fit_flow``, its reference budget, one
    thread) on the run's training rows: its gap on the run's held-out rows ± its standard
    error, and its training seconds; the gap on as many training rows too."""
    from flow_baseline import fit_flow

    held = np.load(out / "heldout.npy").astype(np.float64)
    seen = training_rows(points, out, len(points))
    t0 = time.perf_counter()
    flow = fit_flow(seen, seed=0)
    seconds = time.perf_counter() - t0
    d = log_p(held) - flow.log_prob(held)
    own = seen[:len(held)]
    d_seen = log_p(own) - flow.log_prob(own)
    return (f"{d.mean():.4f} ± {d.std() / math.sqrt(len(d)):.4f} (training rows: "
            f"{d_seen.mean():.4f}; {seconds:.0f} s)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dims", type=int, nargs="+", default=[6])
    ap.add_argument("--kinds", nargs="+", default=["roll"], choices=sorted(KINDS),
                    help="roll: the roll beside rotated Gaussian columns; mixture: 8 "
                         "full-covariance Gaussians; product: toy sets side by side")
    ap.add_argument("--tables", nargs="+", default=None, metavar="KIND:D",
                    help="the tables to run, e.g. roll:3 mixture:6 (instead of --kinds x "
                         "--dims)")
    ap.add_argument("--rows", type=int, default=20_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--settings", nargs="+", default=["", "--latent-dim 2"],
                    help="train options to compare ({D}: the table's columns, {2D} twice "
                         "that)")
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--k", type=int, default=1000)
    ap.add_argument("--train-gap", action="store_true",
                    help="also the model's gap on (up to as many as are held out of) its "
                         "training rows: how much better it fits the rows it saw")
    ap.add_argument("--flow", action="store_true",
                    help="also a neural spline flow (benchmarks/flow_baseline.py, its reference "
                         "budget) fitted on the first setting's training rows, scored on its "
                         "held-out rows: what a flow makes of the same table")
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    tables = [(kd, d) for kd in args.kinds for d in args.dims]
    if args.tables:
        try:
            tables = [(t.split(":")[0], int(t.split(":")[1])) for t in args.tables]
        except (IndexError, ValueError):
            ap.error("--tables takes KIND:D, e.g. roll:3")
        if any(kd not in KINDS or d < 2 for kd, d in tables):
            ap.error(f"--tables: KIND one of {', '.join(sorted(KINDS))}, D >= 2")
    flow_head = (" flow gap (training s) |", "---|") if args.flow else ("", "")
    lines = ["| kind | D | settings | model gap | GaussianMixture gap | KernelDensity gap | "
             "C2ST | training (s) |" + flow_head[0], "|---|---|---|---|---|---|---|---|"
             + flow_head[1]]
    with tempfile.TemporaryDirectory() as tmp:
        for kind, dim in tables:
            points, log_p = make_table(dim, args.rows, args.seed, kind)
            csv = Path(tmp) / f"{kind}{dim}.csv"
            header = ",".join(f"c{j}" for j in range(dim))
            np.savetxt(csv, points, delimiter=",", header=header, comments="")
            for i, settings in enumerate(args.settings):
                s = settings.replace("{2D}", str(2 * dim)).replace("{D}", str(dim))
                out = Path(tmp) / f"run-{kind}{dim}-{i}"
                result = run_one(csv, out, s, args.steps, args.k)
                rep = result["report"]
                held = np.load(out / "heldout.npy").astype(np.float64)
                # the gaps, paired over the held-out rows: mean log p - mean log q
                h = -float(log_p(held).mean())
                gaps = {"model": rep["nll"] - h}
                for key in ("gaussian_mixture", "kernel_density"):
                    gaps[key] = rep["baselines"][key]["nll"] - h
                c2st = rep.get("sample_metrics", {}).get("c2st_accuracy", {}).get("value")
                model_gap = f"{gaps['model']:.4f}"
                if args.train_gap:
                    seen = training_rows(points, out, len(held))
                    seen_gap = nll_on(out, seen, args.k) + float(log_p(seen).mean())
                    model_gap += f" (training rows: {seen_gap:.4f})"
                line = (f"| {kind} | {dim} | `{s or '(default)'}` | {model_gap} | "
                        f"{gaps['gaussian_mixture']:.4f} | {gaps['kernel_density']:.4f} | "
                        f"{c2st if c2st is None else round(c2st, 3)} | "
                        f"{result['train_seconds']:.0f} |")
                if args.flow:  # once per table, on the first setting's split
                    line += (f" {flow_gap(points, out, log_p)} |" if i == 0 else " |")
                print(line, flush=True)
                lines.append(line)
    body = "\n".join(lines)
    print(body)
    if args.write:
        update_section("embedded", "A 2-D structure hidden in D columns",
                       shlex.join(["python", "benchmarks/embedded.py", *sys.argv[1:]]),
                       f"`{shlex.join(['python', 'benchmarks/embedded.py', *sys.argv[1:]])}`"
                       f"\n\nMachine: {machine()}. {args.rows:,} rows (20% held out), seed "
                       f"{args.seed}; gaps in nats per row on the held-out rows, IWAE K = "
                       f"{args.k}.\n\n{body}")


if __name__ == "__main__":
    main()
