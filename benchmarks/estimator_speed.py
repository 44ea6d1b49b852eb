"""Wall time of the IWAE estimate of log p(x) on the CPU: each chunk in cache-sized blocks
(what ``vaelab evaluate`` and a sweep's score do) against one network pass per chunk.

    OMP_NUM_THREADS=1 python benchmarks/estimator_speed.py [--rounds 3]

The two differ only in ``CACHE_VALUES`` (one pass: a bound no chunk reaches), so the chunks
and random draws are the same; the values are compared too. Cases: the models of the seed
preset, of the default on the checkerboard (128 prior components) and on swiss_roll_3d
(σ(z)), and of the default on a 4-column file (full covariance), untrained (the time does not
depend on the weights), at the sweep's score (2,000 points, K = 100) and at K = 1,000. The
order alternates by round; the figure is the median, and the ratio is taken round by round.
Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import vaelab.estimators  # noqa: F401 - the module below, by its full name
from vaelab.resolve import build_config
from vaelab.runs import train_run

LOG_DENSITY = sys.modules["vaelab.estimators.log_density"]
ONE_PASS = 1 << 62


def models(tmp: Path) -> dict[str, torch.nn.Module]:
    table = tmp / "file4.csv"
    rng = np.random.default_rng(0)
    np.savetxt(table, rng.normal(size=(6000, 4)) @ rng.normal(size=(4, 4)), delimiter=",")
    cases = {"seed preset (Swiss roll)": ("seed", "swiss_roll"),
             "default, checkerboard (128 components)": ("default", "checkerboard"),
             "default, swiss_roll_3d (sigma(z))": ("default", "swiss_roll_3d"),
             "default, 4-column file (full covariance)": ("default", str(table))}
    out = {}
    for label, (preset, data) in cases.items():
        config = build_config(preset, None, {"data": data, "steps": 2, "log_every": 1,
                                             "compile": "off"})
        out[label] = train_run(config, None, progress=False, figures=False).model
    return out


def timed(model: torch.nn.Module, x: torch.Tensor, k: int,
          cache: int) -> tuple[float, torch.Tensor]:
    LOG_DENSITY.CACHE_VALUES = cache
    t0 = time.perf_counter()
    values = LOG_DENSITY.log_density(model, x, "iwae", k=k, seed=0)
    return time.perf_counter() - t0, values


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    blocked = LOG_DENSITY.CACHE_VALUES
    print(f"torch threads: {torch.get_num_threads()}")
    print("| model | points x K | one pass per chunk (s) | cache-sized blocks (s) | "
          "speed-up | largest difference (nats) |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for label, model in models(Path(tmp)).items():
            for n, k in ((2000, 100), (1000, 1000)):
                x = torch.randn(n, model.in_channels, generator=torch.Generator().manual_seed(1))
                timed(model, x[:50], k, blocked)  # warm-up
                one, block, ratios, diff = [], [], [], 0.0
                for r in range(args.rounds):
                    order = (ONE_PASS, blocked) if r % 2 == 0 else (blocked, ONE_PASS)
                    times = {}
                    for cache in order:
                        times[cache], values = timed(model, x, k, cache)
                        if cache == ONE_PASS:
                            reference = values
                        else:
                            got = values
                    diff = max(diff, float((got - reference).abs().max()))
                    one.append(times[ONE_PASS])
                    block.append(times[blocked])
                    ratios.append(times[ONE_PASS] / times[blocked])
                print(f"| {label} | {n:,} x {k:,} | {statistics.median(one):.2f} | "
                      f"{statistics.median(block):.2f} | {statistics.median(ratios):.2f}x "
                      f"({min(ratios):.2f}-{max(ratios):.2f}) | {diff:.1e} |", flush=True)
    LOG_DENSITY.CACHE_VALUES = blocked


if __name__ == "__main__":
    main()
