"""Training speed on a CUDA GPU: the step replayed as one CUDA graph against the eager step,
torch.compile, a plain PyTorch loop and the seed's loop; many models at once; time to quality.

Every rate is a steady rate: steps over seconds between the first and the last metrics row of
the run (so CUDA start-up, the first eager step, the graph's capture and compilation are left
out; they are reported apart as the run's first-row time), measured one after another in this
process, after a warm-up run. Rows:

* **seed preset** (batch 128, 512, 4096): ``vaelab``, :func:`vaelab.training.loop.fit` with
  ``--cuda-graph on`` (the default on CUDA) and ``off`` (eager: one kernel launch at a time);
  ``--compile on`` (torch.compile, ``reduce-overhead``) at 512; a plain PyTorch loop (a
  ``DataLoader`` over a ``TensorDataset`` on the GPU, ``loss.item()`` every step); the seed's
  own loop (scikit-learn batches copied to the GPU, three ``.item()`` per step).
* **default preset** at batch 128, graphed and eager.
* **many models at once**: aggregate model-steps/s of M = 1, 8, 64, 256 seed-preset models
  (:func:`vaelab.training.loop.fit_group`, graphed) at batch 128 and 512, M = 256 eager, and
  the default preset's M = 1 .. 256 at 128; each against one model trained alone.
* **bit for bit**: a graphed and an eager run of both presets (1,000 steps) hold equal weights.
* **time to quality**: the default preset with ``--time-limit T``, scored by
  :func:`vaelab.evaluation.evaluate` (C2ST accuracy, NLL gap).

Run where CUDA is (writes the measurements to a JSON file)::

    python benchmarks/gpu_speed.py --json gpu_speed.json       # about 4 minutes on an H100

and, anywhere, turn that file into BENCHMARKS.md's section::

    python benchmarks/gpu_speed.py --render gpu_speed.json --write
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import speed
import torch
from benchmarks_md import update_section
from seed_walltime import seed_loop

from vaelab.errors import TrainingDiverged
from vaelab.evaluation import evaluate
from vaelab.groups import seed_group
from vaelab.resolve import build_config
from vaelab.runs import Run
from vaelab.training.loop import fit, fit_group

RESULTS = Path(__file__).resolve().parent / "results" / "gpu_speed.json"
TARGET_STEPS, TARGET_GROUP = 20_000, 50  # issue 5: seed preset steps/s; 256 models' gain


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def steady(metrics: list[dict], models: int = 1) -> dict:
    """Steady (model-)steps/s between the first and the last metrics row; the first row's
    time (start-up, first step, capture or compilation, and the first interval)."""
    first, last = metrics[0], metrics[-1]
    rate = (last["step"] - first["step"]) / (last["elapsed_s"] - first["elapsed_s"])
    return {"rate": models * rate, "first_row_s": first["elapsed_s"], "steps": last["step"]}


def settings(batch: int, steps: int, **extra: object) -> dict:
    return {"batch_size": batch, "steps": steps, "device": "cuda", "frame_every": 0,
            "log_every": max(steps // 20, 1), "checkpoint_every": 0, **extra}


def vaelab_rate(preset: str, batch: int, steps: int, **extra: object) -> dict:
    result = fit(build_config(preset, settings=settings(batch, steps, **extra)), progress=False)
    out = steady(result.metrics)
    out["cuda_graph"] = result.summary["cuda_graph"]
    out["gradients"] = result.summary["gradients"]
    return out


def group_rate(preset: str, models: int, batch: int, steps: int, **extra: object) -> dict:
    cfg = build_config(preset, settings=settings(batch, steps, **extra))
    results = fit_group(seed_group(cfg, models), progress=False)
    out = steady(results[0].metrics, models)
    out["cuda_graph"] = results[0].summary["cuda_graph"]
    return out


def plain_rate(batch: int, steps: int) -> dict:
    """The seed's network in a textbook loop on the GPU (speed.py's)."""
    return {"rate": speed.plain_rate(batch, steps, device="cuda")}


def seed_loop_rate(batch: int, steps: int) -> dict:
    seconds, _ = seed_loop(0, steps, batch, device="cuda")
    return {"rate": steps / seconds}


def bit_identical(preset: str, batch: int, steps: int) -> str:
    """Whether a graphed and an eager run end with equal weights ("yes"/"no"), or, if they
    diverge, whether both diverge at the same step."""
    runs = []
    for mode in ("on", "off"):
        try:
            runs.append(fit(build_config(preset, settings=settings(batch, steps,
                                                                   cuda_graph=mode)),
                            progress=False))
        except TrainingDiverged as exc:
            runs.append(str(exc).split(":")[0])
    if any(isinstance(r, str) for r in runs):
        return f"graphed: {runs[0]!s:.40}; eager: {runs[1]!s:.40}"
    a, b = (r.model.state_dict() for r in runs)
    return "yes" if all(torch.equal(a[k], b[k]) for k in a) else "no"


def time_to_quality(limits: list[float]) -> list[dict]:
    rows = []
    for limit in limits:
        cfg = build_config("default", settings={"time_limit": limit, "device": "cuda",
                                                "frame_every": 0, "checkpoint_every": 0})
        result = fit(cfg, progress=False)
        run = Run(result.config, result.model.cpu(), result.metrics, result.frames,
                  result.summary)  # scored on the CPU, as `vaelab evaluate` scores a run
        report = evaluate(run, n=10_000, k=1000, seed=0)
        c2st = report["sample_metrics"]["c2st_accuracy"]
        rows.append({"limit": limit, "steps": result.summary["steps"], "c2st": c2st["value"],
                     "gap": report["nll_gap"], "gap_se": report["nll_gap_stderr"]})
        log(f"time limit {limit:g} s: {rows[-1]}")
    return rows


def measure(quick: bool) -> dict:
    scale = 20 if quick else 1
    props = torch.cuda.get_device_properties(0)
    res: dict = {"device": f"{props.name}, {props.multi_processor_count} SMs",
                 "host": f"{platform.processor() or platform.machine()}, Python "
                         f"{platform.python_version()}, torch {torch.__version__}",
                 "date": time.strftime("%Y-%m-%d")}
    log(res["device"])
    vaelab_rate("seed", 512, 2000 // scale)  # warm-up: CUDA start, clocks up, kernels loaded

    seed_rows = {}
    # batch 4096: 700 steps, since the seed's lr 2e-2 can diverge there (at step 752 in one
    # CUDA run; not on the CPU's stream): `bit_identical` below shows both paths alike
    for batch, graph_steps, eager_steps in ((128, 20_000, 3000), (512, 20_000, 3000),
                                            (4096, 700, 700)):
        row = {"graph": vaelab_rate("seed", batch, graph_steps // scale),
               "eager": vaelab_rate("seed", batch, eager_steps // scale, cuda_graph="off"),
               "plain": plain_rate(batch, 1500 // scale),
               "seed_loop": seed_loop_rate(batch, 1500 // scale)}
        if batch == 512:
            row["compiled"] = vaelab_rate("seed", batch, 3000 // scale, compile="on")
        seed_rows[str(batch)] = row
        log(f"seed preset, batch {batch}: " + ", ".join(
            f"{k} {v['rate']:,.0f}" for k, v in row.items()))
    res["seed"] = seed_rows
    res["default"] = {"graph": vaelab_rate("default", 128, 10_000 // scale),
                      "eager": vaelab_rate("default", 128, 2000 // scale, cuda_graph="off")}
    log(f"default preset: {res['default']}")

    groups: dict = {}
    for preset, batch, sizes in (("seed", 128, (1, 8, 64, 256)), ("seed", 512, (1, 8, 64, 256)),
                                 ("default", 128, (1, 8, 64, 256))):
        key = f"{preset}_{batch}"
        groups[key] = {"single": vaelab_rate(preset, batch, 10_000 // scale)}
        for m in sizes:
            steps = max({1: 10_000, 8: 6000, 64: 2000, 256: 1000}[m] // scale, 40)
            groups[key][str(m)] = group_rate(preset, m, batch, steps)
            log(f"{key} M={m}: {groups[key][str(m)]['rate']:,.0f} model-steps/s")
        if preset == "seed":
            groups[key]["256_eager"] = group_rate(preset, 256, batch, 400 // scale,
                                                  cuda_graph="off")
    res["groups"] = groups
    res["bit_identical"] = {f"{p} {b}": bit_identical(p, b, 1000 // scale)
                            for p, b in (("seed", 512), ("default", 128), ("seed", 4096))}
    log(f"bit identical: {res['bit_identical']}")
    try:
        res["time_to_quality"] = time_to_quality([1.0, 2.0] if quick else [2.0, 5.0, 10.0])
    except Exception as exc:  # noqa: BLE001 - keep the speed measurements if scoring fails
        log(f"time to quality failed: {exc!r}")
        res["time_to_quality"] = []
    return res


def render(res: dict) -> str:
    s = res["seed"]
    lines = [f"Measured on {res['device']} ({res['host']}), {res['date']}, by "
             "`python benchmarks/gpu_speed.py --json F` on a GPU machine lent to the session; "
             "rendered here with `--render F --write` (the file: "
             "benchmarks/results/gpu_speed.json). Steady rates: steps between the first and "
             "last metrics rows over their seconds.", "",
             "**Seed preset** (SimpleVAE 2-128-128-2, MSE + KLD, Adam, StepLR), steps/s:", "",
             "| batch | vaelab (CUDA graph) | vaelab eager | `--compile on` | plain PyTorch "
             "| seed's loop | graph / seed's loop |",
             "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for batch, row in s.items():
        comp = f"{row['compiled']['rate']:,.0f}" if "compiled" in row else "-"
        lines.append(f"| {batch} | {row['graph']['rate']:,.0f} | {row['eager']['rate']:,.0f} "
                     f"| {comp} | {row['plain']['rate']:,.0f} | {row['seed_loop']['rate']:,.0f} "
                     f"| {row['graph']['rate'] / row['seed_loop']['rate']:.1f}x |")
    d = res["default"]
    g512 = s["512"]["graph"]["rate"]
    lines += ["", f"Default preset (IWAE k = 4, mixture prior, batch 128): "
              f"{d['graph']['rate']:,.0f} steps/s as a CUDA graph, {d['eager']['rate']:,.0f} "
              "eager.", "",
              "**Many models at once** (model-steps/s; gain: over one model trained alone):", "",
              "| preset, batch | one alone | M = 1 | M = 8 | M = 64 | M = 256 | gain at 256 "
              "| M = 256 eager |", "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for key, row in res["groups"].items():
        single = row["single"]["rate"]
        eager = f"{row['256_eager']['rate']:,.0f}" if "256_eager" in row else "-"
        lines.append(f"| {key.replace('_', ', ')} | {single:,.0f} | "
                     + " | ".join(f"{row[m]['rate']:,.0f}" for m in ("1", "8", "64", "256"))
                     + f" | {row['256']['rate'] / single:.0f}x | {eager} |")
    same = "; ".join(f"{k}: {v}" for k, v in res["bit_identical"].items())
    lines += ["", f"Graphed and eager runs (1,000 steps) give the same weights bit for bit: "
              f"{same}.", "",
              "Time to quality, default preset (`--time-limit T`, then `vaelab evaluate`):", "",
              "| T (s) | steps | C2ST | NLL gap (nats) |", "| ---: | ---: | ---: | ---: |"]
    for r in res["time_to_quality"]:
        lines.append(f"| {r['limit']:g} | {r['steps']:,} | {r['c2st']:.3f} | "
                     f"{r['gap']:.4f} ± {r['gap_se']:.4f} |")
    best = max(row["graph"]["rate"] for row in s.values())
    gains = {key.replace("_", ", "): row["256"]["rate"] / row["single"]["rate"]
             for key, row in res["groups"].items()}
    lines += ["", f"Targets (issue 5, one H100): seed preset >= {TARGET_STEPS:,} steps/s: "
              f"{g512:,.0f} at batch 512 ({'met' if g512 >= TARGET_STEPS else 'missed'}; "
              f"{best:,.0f} at its best batch). 256 models >= {TARGET_GROUP}x one: "
              + ", ".join(f"{g:.0f}x ({k}: {'met' if g >= TARGET_GROUP else 'missed'})"
                          for k, g in gains.items()) + "."]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", type=Path, help="measure (needs CUDA) and write the results here")
    ap.add_argument("--render", type=Path, help="print the section from a results file")
    ap.add_argument("--write", action="store_true",
                    help="with --render: update BENCHMARKS.md and benchmarks/results/")
    ap.add_argument("--quick", action="store_true", help="tiny step counts (a smoke run)")
    args = ap.parse_args()
    if args.json is not None:
        if not torch.cuda.is_available():
            sys.exit("gpu_speed.py: error: measuring needs a CUDA device (use --render F "
                     "to show results measured elsewhere)")
        res = measure(args.quick)
        args.json.write_text(json.dumps(res, indent=1))
        print(render(res))
    if args.render is not None:
        res = json.loads(args.render.read_text())
        body = render(res)
        print(body)
        if args.write:
            RESULTS.write_text(json.dumps(res, indent=1) + "\n")
            update_section("gpu_speed", "Training speed on a GPU",
                           "python benchmarks/gpu_speed.py --json F; "
                           "python benchmarks/gpu_speed.py --render F --write", body)
    if args.json is None and args.render is None:
        ap.error("give --json F (measure) or --render F (show)")


if __name__ == "__main__":
    main()
