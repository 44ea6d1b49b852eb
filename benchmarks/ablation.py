"""Why the default preset is what it is: each of its choices undone, one at a time, measured.

Every variant is the ``default`` preset with one setting changed (or the ``seed`` preset for
reference), trained on the Swiss roll and scored by :func:`vaelab.evaluation.evaluate` on 10,000
fresh test points (IWAE, K = 1000): the paired NLL gap to the true entropy (nats per point), the
classifier two-sample accuracy, k-NN precision and recall with their data-vs-data floors, and the
training time on this machine.

Run::

    python benchmarks/ablation.py --seeds 1 --write
"""

from __future__ import annotations

import argparse
import statistics
import sys
from typing import Any

from benchmarks_md import machine, update_section

from vaelab.evaluation import evaluate
from vaelab.resolve import build_config
from vaelab.runs import train_run

#: (label, preset, settings over it)
VARIANTS: list[tuple[str, str, dict[str, Any]]] = [
    ("`seed` preset (the blog's run)", "seed", {}),
    ("`default` preset", "default", {}),
    ("default, ELBO instead of IWAE (k = 1)", "default", {"loss": "gaussian", "iwae_k": 1}),
    ("default, IWAE k = 8 at batch 64 (same cost)", "default", {"iwae_k": 8, "batch_size": 64}),
    ("default, N(0, I) prior instead of the mixture", "default", {"prior": "standard"}),
    ("default, flow prior (RealNVP, 4 layers) instead of the mixture", "default",
     {"prior": "flow"}),
    ("default, fixed decoder sigma (0.1, standardised units)", "default",
     {"loss.learn_decoder_std": False}),
    ("default, KL warm-up over the first 20%", "default", {"kl_warmup": 0.2}),
    ("default, 2 hidden layers instead of 3", "default", {"hidden_dims": [128, 128]}),
    ("default, batch 512 (4x the points per step)", "default", {"batch_size": 512}),
    ("default, 10 s time limit", "default", {"time_limit": 10.0}),
]


def measure(preset: str, settings: dict[str, Any], seed: int, n: int, k: int) -> dict[str, float]:
    cfg = build_config(preset, None, {**settings, "seed": seed, "frame_every": 0})
    run = train_run(cfg, None, progress=False, figures=False)
    rep = evaluate(run, n=n, k=k, seed=seed)
    sm = rep["sample_metrics"]
    return {"gap": rep["nll_gap"], "gap_se": rep["nll_gap_stderr"],
            "c2st": sm["c2st_accuracy"]["value"], "precision": sm["precision"]["value"],
            "recall": sm["recall"]["value"], "c2st_floor": sm["c2st_accuracy"]["floor"],
            "precision_floor": sm["precision"]["floor"], "recall_floor": sm["recall"]["floor"],
            "seconds": float(run.summary["train_seconds"]), "steps": run.summary["steps"]}


def cell(values: list[float], fmt: str) -> str:
    mean = statistics.mean(values)
    return f"{mean:{fmt}}" + (f" ± {statistics.stdev(values):{fmt}}" if len(values) > 1 else "")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=1, help="seeds 0..N-1 (default 1)")
    ap.add_argument("--n", type=int, default=10_000, help="test points")
    ap.add_argument("--k", type=int, default=1000, help="IWAE samples per test point")
    ap.add_argument("--write", action="store_true", help="update BENCHMARKS.md")
    args = ap.parse_args(argv)
    if args.seeds < 1 or args.n < 10 or args.k < 1:
        sys.exit("ablation.py: error: --seeds, --n and --k must be positive (--n >= 10)")
    rows = []
    floors: list[dict[str, float]] = []
    for label, preset, settings in VARIANTS:
        results = [measure(preset, settings, s, args.n, args.k) for s in range(args.seeds)]
        floors += results
        print(f"{label}: " + ", ".join(f"{key} {statistics.mean(r[key] for r in results):.4g}"
                                       for key in ("gap", "c2st", "seconds")),
              file=sys.stderr, flush=True)
        rows.append(
            f"| {label} | {cell([r['gap'] for r in results], '.3f')} "
            f"| {cell([r['c2st'] for r in results], '.3f')} "
            f"| {cell([r['precision'] for r in results], '.3f')} "
            f"| {cell([r['recall'] for r in results], '.3f')} "
            f"| {cell([r['seconds'] for r in results], '.1f')} "
            f"| {cell([float(r['steps']) for r in results], '.0f')} |")
    floor = {key: statistics.mean(r[f"{key}_floor"] for r in floors)
             for key in ("c2st", "precision", "recall")}
    body = "\n".join([
        f"Machine: {machine()}. Swiss roll (noise 0.3, unscaled), {args.seeds} seed(s), "
        f"{args.n} fresh test points, IWAE K = {args.k}; mean ± sd over seeds.",
        "",
        "| variant | NLL gap (nats) | C2ST acc | precision | recall | train (s) | steps |",
        "|---|---|---|---|---|---|---|",
        *rows,
        f"| floors (real vs real data) | 0 | {floor['c2st']:.3f} | {floor['precision']:.3f} "
        f"| {floor['recall']:.3f} | | |",
    ])
    print(body)
    if args.write:
        update_section("ablation", "Choosing the default preset",
                       f"python benchmarks/ablation.py --seeds {args.seeds} --write", body)


if __name__ == "__main__":
    main()
