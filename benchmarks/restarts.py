"""Restarts on a user's table: the default preset with and without its probe of initial weights.

For each table (the kinds of ``embedded.py``: a structure of known density in D columns) and
each seed, the default preset trains on the table's rows as a data file with each of the
settings (by default ``--restarts 4``, four initial weights probed, and ``--restarts 1``, the
run's own); every run is scored on the rows the file holds out, as ``vaelab evaluate`` takes
them, by IWAE with K samples: the gap mean(log p - log q) in nats per row, with its standard
error. The table shows every seed, so the spread between seeds (what restarts are for) is
seen beside the mean; the training seconds include the probe's.

    python benchmarks/restarts.py --tables product:6 product:4 --seeds 0 1 2 3

Each setting runs in its own process, one torch thread each, all at once (``--jobs``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from embedded import KINDS, make_table  # noqa: E402


def _one(csv: Path, out: Path, settings: str, seed: int, k: int) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "vaelab", "train", "--data", str(csv), "--out", str(out),
           "--seed", str(seed), "--quiet", "--no-figures", "--no-report",
           *shlex.split(settings)]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env=env)
    score = out / "score.npy"
    code = (f"import numpy as np, torch, vaelab; r = vaelab.load({str(out)!r}); "
            f"x = torch.as_tensor(np.load({str(out / 'heldout.npy')!r}), dtype=torch.float32); "
            f"np.save({str(score)!r}, r.log_prob(x, k={k}).double().numpy())")
    subprocess.run([sys.executable, "-c", code], check=True, env=env)
    summary = json.loads((out / "summary.json").read_text())
    probe = (summary.get("restarts") or {}).get("probe_seconds", 0.0)
    return {"log_q": np.load(score), "train_seconds": summary["train_seconds"] + probe,
            "restarts": summary.get("restarts")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tables", nargs="+", default=["product:6"], help="KIND:D, e.g. roll:3")
    ap.add_argument("--rows", type=int, default=20_000)
    ap.add_argument("--table-seed", type=int, default=0, help="the table's own draw")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3],
                    help="the runs' --seed values")
    ap.add_argument("--settings", nargs="+", default=[" --restarts 4", " --restarts 1"],
                    help="train options to compare (a value starting with -- needs a space)")
    ap.add_argument("--k", type=int, default=500)
    ap.add_argument("--jobs", type=int, default=2, help="runs at once, one thread each")
    args = ap.parse_args()
    tables = [(t.split(":")[0], int(t.split(":")[1])) for t in args.tables]
    if any(kd not in KINDS or d < 2 for kd, d in tables):
        ap.error(f"--tables: KIND one of {', '.join(sorted(KINDS))}, D >= 2")
    lines = ["| table | settings | " + " | ".join(f"seed {s}" for s in args.seeds)
             + " | mean | worst | training (s) |",
             "|---|---|" + "---|" * len(args.seeds) + "---|---|---|"]
    with tempfile.TemporaryDirectory() as tmp:
        for kind, dim in tables:
            points, log_p = make_table(dim, args.rows, args.table_seed, kind)
            csv = Path(tmp) / f"{kind}{dim}.csv"
            np.savetxt(csv, points, delimiter=",",
                       header=",".join(f"c{j}" for j in range(dim)), comments="")
            jobs = [(i, s) for i in range(len(args.settings)) for s in args.seeds]
            with ThreadPoolExecutor(args.jobs) as pool:
                futures = {(i, s): pool.submit(_one, csv, Path(tmp) / f"{kind}{dim}-{i}-{s}",
                                               args.settings[i], s, args.k)
                           for i, s in jobs}
                done = {job: f.result() for job, f in futures.items()}
            for i, settings in enumerate(args.settings):
                cells, gaps, seconds = [], [], []
                for s in args.seeds:
                    out = Path(tmp) / f"{kind}{dim}-{i}-{s}"
                    held = np.load(out / "heldout.npy").astype(np.float64)
                    d = log_p(held) - done[(i, s)]["log_q"]
                    gaps.append(float(d.mean()))
                    seconds.append(done[(i, s)]["train_seconds"])
                    r = done[(i, s)]["restarts"]
                    chosen = f" (kept {r['chosen']})" if r and r["candidates"] > 1 else ""
                    cells.append(f"{d.mean():.4f} ± {d.std() / math.sqrt(len(d)):.4f}{chosen}")
                line = (f"| {kind}:{dim} | `{settings.strip() or '(default)'}` | "
                        + " | ".join(cells) + f" | {np.mean(gaps):.4f} | {max(gaps):.4f} | "
                        f"{min(seconds):.0f}-{max(seconds):.0f} |")
                print(line, flush=True)
                lines.append(line)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
