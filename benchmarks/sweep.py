"""What ``vaelab sweep`` costs beyond its trials' training: a 16-trial grid of 3,000-step
``seed`` preset runs on this machine's cores, timed end to end.

The sweep's overhead is its wall time minus the time its trials' training would take on
this machine's cores with nothing around it: ``wall - sum(training seconds) / parallelism``,
reported as a share of the latter. What remains is Ray's start and stop, starting the workers
(each imports torch and vaelab once), scoring each trial on its test set, the table and the
report. The per-trial wall (training and scoring, as measured in the worker) is reported
beside it, and the wall time is cut into phases by the trials' start and end times (their
rows in sweep.json) and the moments the driver printed its lines: from the command's start
to Ray being up (the driver's imports and planning, ``ray.init``), on to the first trial's
start (Ray Tune's set-up, the workers' start and their first import of torch and vaelab),
the trials (first start to last end), and from the last trial's end to the exit (Ray's
shutdown, the table, the report).

Run::

    python benchmarks/sweep.py [--out DIR] [--steps 3000] [--address HOST:PORT]

``--address`` sends the sweep to a Ray cluster already running (``ray start --head``), as a
user who runs many sweeps would: Ray's start and stop are then outside the command.
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
    parser.add_argument("--address", help="a running Ray cluster's HOST:PORT (default: start "
                        "Ray on this machine, as vaelab sweep does)")
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="vaelab-sweep-bench-")) / "sweep"
    command = [sys.executable, "-m", "vaelab", "sweep", "--preset", "seed", "--device", "cpu",
               "--steps", str(args.steps), "--search", f"lr={LRS}",
               "--search", f"kld_weight={KLD_WEIGHTS}", "--out", str(out),
               *(["--address", args.address] if args.address else [])]
    said: dict[str, float] = {}  # when the driver printed its lines (unbuffered)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    t0 = time.time()
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            now = time.time()
            if line.startswith("sweep: "):  # "sweep: N trials ... on this machine": Ray is up
                said.setdefault("up", now)
            elif " trials: " in line and " done, " in line:  # the table is written
                said.setdefault("table", now)
            elif line.startswith("report: "):
                said.setdefault("report", now)
            print(line, end="", flush=True)
    wall = time.time() - t0
    if proc.returncode:
        raise SystemExit(f"the sweep failed (exit {proc.returncode})")
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
    up, table_at, report_at = (said.get(k, t0) - t0 for k in ("up", "table", "report"))
    print("phases (s from the command's start):")
    print(f"  start to Ray up (imports, planning, ray.init): {up:.1f}")
    if not all("started" in r for r in rows):  # a vaelab whose rows have no times
        print(f"  Ray up to the table: {table_at - up:.1f}; the report "
              f"{report_at - table_at:.1f}; to the exit {wall - report_at:.1f}")
        return 0
    first = min(r["started"] for r in rows) - t0
    last = max(r["ended"] for r in rows) - t0
    print(f"  Ray up to the first trial's start (Tune, workers, their imports): "
          f"{first - up:.1f}")
    print(f"  trials, first start to last end: {last - first:.1f}")
    print(f"  last end to exit: {wall - last:.1f} (to the table {table_at - last:.1f}, "
          f"the report {report_at - table_at:.1f})")
    print(f"  fixed part (start to first trial + last end to exit): "
          f"{first + wall - last:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
