"""Wall time of the sample metrics (``vaelab.metrics.sample_report``) at n = 10,000.

    python benchmarks/metrics_speed.py           # print
    python benchmarks/metrics_speed.py --write   # and update BENCHMARKS.md

Three 2-D Swiss-roll samples of n points (generated, real, reference), the full report
(MMD at 5 bandwidths, energy distance, C2ST, k-NN precision and recall, each with its floor),
best of ``--repeats`` runs.
"""

from __future__ import annotations

import argparse
import time

import torch
from benchmarks_md import update_section

from vaelab.data import SwissRoll2D
from vaelab.metrics import sample_report


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    g = torch.Generator().manual_seed(0)
    gen = SwissRoll2D(noise=0.35).sample(args.n, g).numpy()
    real, ref = (SwissRoll2D().sample(args.n, g).numpy() for _ in range(2))
    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        sample_report(gen, real, ref)
        times.append(time.perf_counter() - t0)
    line = (f"`sample_report` at n = {args.n} (2-D, three samples): best {min(times):.2f} s, "
            f"worst {max(times):.2f} s over {args.repeats} runs, {torch.get_num_threads()} "
            "torch threads.")
    print(line)
    if args.write:
        update_section("metrics_speed", "Sample metrics",
                       "python benchmarks/metrics_speed.py --write", line)


if __name__ == "__main__":
    main()
