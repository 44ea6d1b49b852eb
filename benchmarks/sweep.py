"""What ``vaelab sweep`` costs beyond its trials' training: a 16-trial grid of 3,000-step
``seed`` preset runs on this machine's cores, timed end to end.

The sweep's overhead is its wall time minus the time its trials' training would take on
this machine's cores with nothing around it: ``wall - sum(training seconds) / parallelism``,
reported as a share of the latter. What remains is Ray's start and stop, starting the workers
(each imports torch and vaelab once), scoring each trial on its test set, the table and the
report. The per-trial wall (training and scoring, as measured in the worker) is reported
beside it.

Run::

    python benchmarks/sweep.py [--out DIR] [--steps 3000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

#: 4 x 4 = 16 trials
LRS = "0.005,0.01,0.02,0.03"
KLD_WEIGHTS = "0.5,0.75,1,1.5"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, help="the sweep's directory (default: a temp dir)")
    parser.add_argument("--steps", type=int, default=3000)
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="vaelab-sweep-bench-")) / "sweep"
    command = [sys.executable, "-m", "vaelab", "sweep", "--preset", "seed", "--device", "cpu",
               "--steps", str(args.steps), "--search", f"lr={LRS}",
               "--search", f"kld_weight={KLD_WEIGHTS}", "--out", str(out)]
    t0 = time.perf_counter()
    subprocess.run(command, check=True)
    wall = time.perf_counter() - t0
    table = json.loads((out / "sweep.json").read_text())
    rows = [r for r in table["trials"] if r["status"] == "done"]
    parallel = os.cpu_count() or 1
    train = sum(r["seconds"] for r in rows)
    trial_wall = sum(r["wall_seconds"] for r in rows)
    ideal = train / parallel
    print(f"\ncommand: {' '.join(command[1:])}")
    print(f"{len(rows)} trials done of {len(table['trials'])}, {parallel} at a time")
    print(f"wall {wall:.1f} s; training {train:.1f} s in all ({ideal:.1f} s on {parallel} "
          f"cores); trials' own wall (training + scoring) {trial_wall:.1f} s")
    print(f"overhead: {wall - ideal:.1f} s = {(wall - ideal) / ideal:.0%} of the training "
          f"time on {parallel} cores (beyond the trials' own wall: "
          f"{wall - trial_wall / parallel:.1f} s = "
          f"{(wall - trial_wall / parallel) / ideal:.0%})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
