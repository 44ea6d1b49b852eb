"""Training speed of two vaelab source trees, from interleaved runs in one session.

For a change to the trainer: check out the other version beside this one (for example
``git worktree add /tmp/before HEAD~1``), then::

    python benchmarks/compare_versions.py --old /tmp/before/src --new src [--rounds 3]

Each case is a whole ``vaelab train`` command of each tree in turn (old, new; then new, old:
the order alternates by round), both with the same compiled-step cache; the figure is the
steps/s of the training loop that the run's summary.json records, and the ratio new/old is
taken round by round, so a drift of the machine's speed cancels out. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

CASES = {
    "seed preset, eager": ["--preset", "seed", "--steps", "6000", "--compile", "off"],
    "seed preset, compiled": ["--preset", "seed", "--steps", "6000", "--compile", "on"],
    "default preset, eager": ["--preset", "default", "--steps", "2000", "--compile", "off"],
    "default preset, compiled": ["--preset", "default", "--steps", "2000", "--compile", "on"],
    "8 seed-preset models, eager": ["--preset", "seed", "--steps", "1500", "--compile", "off",
                                    "--seeds", "8"],
}


def steps_per_second(src: Path, args: list[str], out: Path, cache: Path) -> float:
    env = dict(os.environ, PYTHONPATH=str(src.resolve()), VAELAB_CACHE_DIR=str(cache))
    subprocess.run([sys.executable, "-m", "vaelab", "train", *args, "--quiet", "--no-figures",
                    "--force", "--out", str(out)], env=env, check=True, capture_output=True)
    summary = out / ("seed-0" if "--seeds" in args else "") / "summary.json"
    return float(json.loads(summary.read_text())["steps_per_second"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--old", type=Path, required=True, help="the other tree's src folder")
    ap.add_argument("--new", type=Path, default=Path("src"), help="this tree's src folder")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp) / "cache"
        for src in (args.old, args.new):  # every compiled step built once, before timing
            for case in ("seed preset, compiled", "default preset, compiled"):
                steps_per_second(src, CASES[case], Path(tmp) / "warm", cache)
        rates: dict[tuple[str, str], list[float]] = {}
        for r in range(args.rounds):
            for case, case_args in CASES.items():
                for name in (("old", "new") if r % 2 == 0 else ("new", "old")):
                    src = args.old if name == "old" else args.new
                    rates.setdefault((case, name), []).append(
                        steps_per_second(src, case_args, Path(tmp) / name, cache))
    print("| case | old steps/s | new steps/s | new / old, median (min-max) |")
    print("|---|---|---|---|")
    for case in CASES:
        old, new = rates[(case, "old")], rates[(case, "new")]
        ratios = [b / a for a, b in zip(old, new, strict=True)]
        print(f"| {case} | {statistics.median(old):,.0f} | {statistics.median(new):,.0f} | "
              f"{statistics.median(ratios):.3f} ({min(ratios):.3f}-{max(ratios):.3f}) |")


if __name__ == "__main__":
    main()
