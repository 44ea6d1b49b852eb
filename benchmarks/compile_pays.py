"""Does compiling the step pay on each kind of CPU, its first build included?

Trains the seed preset (10,000 steps at batch 512, one thread) as a user would, by the
command line, under each vector instruction set torch can run on this machine
(``ATEN_CPU_CAPABILITY``: ``avx512``, ``avx2``, ``default``, the last standing in for a CPU
with no vector units torch uses; Inductor follows the same variable): eagerly
(``--compile off``), compiled with an empty cache (the first run on a machine: the build is
included) and compiled again with the package cached. The rounds are interleaved, so a drift
of the machine's speed reaches every kind alike.

Run::

    python benchmarks/compile_pays.py --write
    python benchmarks/compile_pays.py --steps 1000 --rounds 1 --capabilities avx2   # smoke
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks_md import machine, update_section

MODES = ("off", "first", "cached")


def one_run(capability: str, mode: str, cache: Path, steps: int, work: Path) -> dict:
    """One ``vaelab train --preset seed`` process; its summary and whole-process seconds."""
    out = work / f"{capability}-{mode}"
    shutil.rmtree(out, ignore_errors=True)
    if mode == "first":
        shutil.rmtree(cache, ignore_errors=True)
    env = {**os.environ, "ATEN_CPU_CAPABILITY": capability, "VAELAB_CACHE_DIR": str(cache),
           "TORCHINDUCTOR_CACHE_DIR": str(cache / "inductor")}
    cmd = [sys.executable, "-m", "vaelab", "train", "--preset", "seed", "--steps", str(steps),
           "--compile", "off" if mode == "off" else "on", "--threads", "1", "--out", str(out),
           "--quiet", "--no-figures"]
    started = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
    whole = time.perf_counter() - started
    summary = json.loads((out / "summary.json").read_text())
    return {"whole": whole, "train": summary["train_seconds"],
            "rate": summary["steps"] / summary["train_seconds"],
            "build": summary.get("compile_seconds") or 0.0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=10_000)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--capabilities", default="avx512,avx2,default")
    ap.add_argument("--write", action="store_true", help="update BENCHMARKS.md")
    args = ap.parse_args()
    caps = args.capabilities.split(",")
    results: dict[tuple[str, str], list[dict]] = {(c, m): [] for c in caps for m in MODES}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for r in range(args.rounds):
            for cap in caps:
                for mode in MODES:
                    row = one_run(cap, mode, work / f"cache-{cap}", args.steps, work)
                    results[cap, mode].append(row)
                    print(f"round {r + 1} {cap:8s} {mode:6s} whole {row['whole']:5.1f} s, "
                          f"train {row['train']:5.1f} s ({row['rate']:.0f} steps/s), "
                          f"build {row['build']:4.1f} s", flush=True)

    def med(cap: str, mode: str, key: str) -> float:
        return statistics.median(r[key] for r in results[cap, mode])

    def spread(cap: str, mode: str, key: str, fmt: str = ".0f") -> str:
        return "-".join(format(v, fmt) for v in sorted({round(r[key], 1)
                                                        for r in results[cap, mode]}))

    lines = [f"The seed preset, {args.steps:,} steps at batch 512, one thread, by the command "
             f"line; {args.rounds} interleaved rounds (values: min-max). `first`: compiled "
             "with an empty cache, the build included; `cached`: compiled, the package "
             "loaded from the cache.", "",
             "| instruction set | eager steps/s | compiled steps/s | compiled / eager | "
             "first build (s) | whole command: eager / first / cached (s) | build repaid "
             "after |", "|---|---|---|---|---|---|---|"]
    for cap in caps:
        eager, comp = med(cap, "off", "rate"), med(cap, "cached", "rate")
        saved = 1 / eager - 1 / comp  # seconds saved per step once compiled
        build = med(cap, "first", "build")
        repaid = f"{build / saved:,.0f} steps" if saved > 0 else "never"
        lines.append(f"| {cap} | {spread(cap, 'off', 'rate')} | {spread(cap, 'cached', 'rate')}"
                     f" | {comp / eager:.2f}x | {spread(cap, 'first', 'build', '.1f')} | "
                     f"{med(cap, 'off', 'whole'):.1f} / {med(cap, 'first', 'whole'):.1f} / "
                     f"{med(cap, 'cached', 'whole'):.1f} | {repaid} |")
    body = "\n".join(lines)
    print(body)
    if args.write:
        update_section("compile_pays", "Compiling on each kind of CPU",
                       "python benchmarks/compile_pays.py --write",
                       f"Machine: {machine()}.\n\n{body}")


if __name__ == "__main__":
    main()
