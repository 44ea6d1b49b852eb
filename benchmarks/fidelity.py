"""How well each preset learns every built-in toy data set, beside classical baselines and a flow.

For every (data set, preset, seed) the preset is trained in memory at its own settings (or
``--steps``) and scored by :func:`vaelab.evaluation.evaluate` on ``--n`` fresh test points
(the evaluation stream of that seed, never training data): the paired NLL gap
mean[log p_true(x) - log q(x)] (IWAE with K = ``--k``, so an upper bound on KL(p || model) up
to Monte-Carlo noise) and the sample metrics of ``n`` generated points against the test points,
each beside its data-vs-data floor.

The baselines, for every (data set, seed): a full-covariance ``GaussianMixture`` (components by
BIC) and a Gaussian ``KernelDensity`` (bandwidth by 5-fold CV), from
:mod:`vaelab.baselines`, fitted to ``--train-points`` points drawn once from the source with the
seed's training-data stream (``derive_seeds(seed).data``, on the CPU: the very set a preset with
``n_train = --train-points`` trains on; never the test stream). They are scored on the same test
points as the presets, with their exact log-densities and ``sample(n, seed + 1)``.

A third baseline, a neural spline flow (zuko's ``NSF``, :mod:`flow_baseline`; zuko comes with
``pip install -e '.[bench]'`` and vaelab never imports it), is fitted to the same points and
scored the same way: a modern density estimator to set vaelab's VAEs against, at a stated
budget. ``--flow-steps`` steps (default 8000), at most ``--flow-seconds`` of wall-clock time if
given; ``--flow-budget match`` gives it the training time the last preset (``default`` if
listed) took on the same set and seed, so the two are compared at the same wall-clock budget.
``--no-flow`` skips it, ``--no-baselines`` the two classical ones, ``--presets none`` every
preset (the test points are then built from the ``default`` preset's data settings, the very
points its runs are scored on).

Run::

    python benchmarks/fidelity.py                              # print the tables
    python benchmarks/fidelity.py --write --json fidelity.json # and update BENCHMARKS.md
    python benchmarks/fidelity.py --from-json fidelity.json --write  # tables again, no training
    python benchmarks/fidelity.py --presets seed --datasets swiss_roll,moons --seeds 1 \
        --steps 300 --n 2000 --k 50 --flow-steps 200           # a smoke run
    python benchmarks/fidelity.py --presets none --no-baselines --json flow.json
                                                               # the flow alone
    python benchmarks/fidelity.py --from-json benchmarks/results/fidelity.json \
        --from-json flow.json --section flow --write           # the flow beside the rest
    python benchmarks/fidelity.py --presets default --set loss.decoder_std_mode=latent \
        --datasets checkerboard --seeds 1 --no-baselines       # a preset with a setting changed

``--set KEY=VALUE`` (repeatable; a dotted config path or a short name, as ``vaelab train
--set``) changes every preset's config, to measure what one lever buys; the tables then name
each preset with its settings.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from benchmarks_md import machine, update_section

from vaelab.baselines import fit_gmm, fit_kde
from vaelab.cli.main import key_value
from vaelab.data.registry import build_source
from vaelab.data.toys import TOY_SOURCES
from vaelab.devices import choose_threads, derive_seeds, make_generator
from vaelab.errors import ConfigError
from vaelab.evaluation import evaluate, test_data
from vaelab.metrics import sample_report
from vaelab.metrics.sample_metrics import REPORT_METRICS
from vaelab.presets import get_preset
from vaelab.resolve import build_config
from vaelab.runs import Run, train_run

#: the components the BIC search may go up to
GMM_MAX_COMPONENTS = 30
#: table labels of the baselines
BASELINE_LABELS = {"gmm": "GaussianMixture (BIC)", "kde": "KernelDensity (CV)",
                   "flow": "NSF flow (zuko)"}
#: the preset whose data settings give the test points when no preset is trained
TEST_SET_PRESET = "default"
#: BENCHMARKS.md sections --write can update: key -> title
SECTIONS = {"fidelity": ("fidelity", "Fidelity: presets and classical baselines on the toy sets"),
            "flow": ("fidelity_flow", "A neural spline flow on the toy sets"),
            "flow_match": ("fidelity_flow_match", "The flow at the default's wall-clock budget")}
#: table column headers of the sample metrics, in REPORT_METRICS order
METRIC_HEADERS = {"mmd2": "MMD²", "energy": "energy", "c2st_accuracy": "C2ST acc",
                  "precision": "precision", "recall": "recall"}
TABLE_METRICS = ("c2st_accuracy", "precision", "recall", "mmd2", "energy")


def default_datasets() -> list[str]:
    """Every built-in source with a known density, the Swiss rolls first."""
    names = [n for n, cls in TOY_SOURCES.items() if getattr(cls, "has_density", False)]
    rolls = [n for n in ("swiss_roll", "swiss_roll_3d") if n in names]
    return rolls + sorted(n for n in names if n not in rolls)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _metrics(sample_metrics: dict[str, Any]) -> dict[str, dict[str, float]]:
    return {m: {"value": float(sample_metrics[m]["value"]),
                "floor": float(sample_metrics[m]["floor"])} for m in REPORT_METRICS}


def method_name(preset: str, args: argparse.Namespace) -> str:
    """A preset's label in the records and tables: its name, and its ``--set`` settings."""
    sets = getattr(args, "set", None) or []
    return " ".join([preset, *(f"{k}={json.dumps(v)}" for k, v in sets)])


def run_preset(data: str, preset: str, seed: int, args: argparse.Namespace) -> tuple[Run, dict]:
    """Train one preset on one data set and evaluate it: (the run, its record)."""
    cfg = build_config(preset, None, {"data": data, "seed": seed, "steps": args.steps,
                                      "gradients": args.gradients, **dict(args.set)})
    run = train_run(cfg, None, force=False, progress=False, figures=False)
    t0 = time.perf_counter()
    report = evaluate(run, n=args.n, k=args.k, seed=seed)
    record = {
        "data": data, "kind": "preset", "method": method_name(preset, args), "seed": seed,
        "dim": int(run.model.in_channels),
        "steps": run.summary["steps"], "noise": run.config.data.noise,
        "nll_gap": report["nll_gap"], "nll_gap_stderr": report["nll_gap_stderr"],
        "nll": report["nll"], "entropy": report["entropy"],
        "metrics": _metrics(report["sample_metrics"]),
        "seconds": float(run.summary["train_seconds"]), "params": {},
        "eval_seconds": time.perf_counter() - t0, "report": report,
    }
    log(f"[{data} seed {seed}] {record['method']}: {record['steps']} steps in "
        f"{record['seconds']:.1f} s, "
        f"evaluated in {record['eval_seconds']:.1f} s; NLL gap {record['nll_gap']:.4f} "
        f"± {record['nll_gap_stderr']:.4f}, C2ST {record['metrics']['c2st_accuracy']['value']:.3f}")
    return run, record


def baseline_methods(args: argparse.Namespace) -> list[str]:
    """The baselines this run fits, in table order."""
    return (["gmm", "kde"] if args.baselines else []) + (["flow"] if args.flow else [])


def test_set(data: str, seed: int, run: Run | None, args: argparse.Namespace) -> dict[str, Any]:
    """The seed's test points, their reference sample, the source and its noise: ``run``'s
    test set if a preset was trained, else the same points built from the data settings of
    :data:`TEST_SET_PRESET` (the evaluation stream, as :func:`vaelab.evaluation.test_data`)."""
    if run is not None:
        test = test_data(run, args.n, seed)
        assert test.source is not None and test.reference is not None
        return {"source": test.source, "points": test.points, "reference": test.reference,
                "noise": run.config.data.noise}
    cfg = build_config(TEST_SET_PRESET, None, {"data": data, "seed": seed})
    source = build_source(cfg.data)
    g = make_generator(derive_seeds(seed).evaluation)
    points = source.sample(args.n, g).cpu()
    reference = source.sample(args.n, g).cpu()
    return {"source": source, "points": points, "reference": reference,
            "noise": getattr(source, "noise", cfg.data.noise)}


def run_baselines(data: str, seed: int, test: dict[str, Any], args: argparse.Namespace,
                  flow_seconds: float | None = None) -> list[dict]:
    """Fit the baselines for one (data set, seed); score them on the ``test`` set.

    ``flow_seconds`` is the flow's wall-clock budget (None: its steps alone)."""
    source = test["source"]
    train = source.sample(args.train_points, make_generator(derive_seeds(seed).data))
    train = train.numpy().astype(np.float64)
    x = test["points"]
    logp = source.log_prob(x).numpy()
    x64 = x.numpy().astype(np.float64)
    fitted: list[Any] = []
    if args.baselines:
        fitted += [fit_gmm(train, max_components=GMM_MAX_COMPONENTS, seed=seed),
                   fit_kde(train, seed=seed)]
    if args.flow:
        from flow_baseline import fit_flow

        fitted.append(fit_flow(train, seed=seed, steps=args.flow_steps,
                               max_seconds=flow_seconds))
    records = []
    for model in fitted:
        t0 = time.perf_counter()
        logq = model.log_prob(x64)
        diff = logp - logq
        gap, gap_se = float(diff.mean()), float(diff.std(ddof=1) / np.sqrt(len(diff)))
        report = sample_report(model.sample(len(x), seed + 1), x.numpy(),
                               test["reference"].numpy(), seed=seed)
        record = {
            "data": data, "kind": "baseline", "method": model.name, "seed": seed,
            "dim": int(x.shape[1]),
            "train_points": args.train_points, "noise": test["noise"],
            "nll_gap": gap, "nll_gap_stderr": gap_se, "nll": float(-logq.mean()),
            "entropy": float(source.entropy()), "metrics": _metrics(report),
            "seconds": model.fit_seconds, "params": model.params,
            "eval_seconds": time.perf_counter() - t0, "selection": model.selection,
            "sample_metrics": report,
        }
        if model.name == "flow":
            record["steps"] = model.steps
        records.append(record)
        what = f"{model.steps} steps" if model.name == "flow" else "fitted"
        log(f"[{data} seed {seed}] {model.name} {model.params}: {what} in "
            f"{model.fit_seconds:.1f} s; NLL gap {gap:.4f} ± {gap_se:.4f}, "
            f"C2ST {record['metrics']['c2st_accuracy']['value']:.3f}")
    return records


def _mean_sd(values: list[float], fmt: str) -> str:
    mean = statistics.mean(values)
    if len(values) < 2:
        return f"{mean:{fmt}}"
    return f"{mean:{fmt}} ± {statistics.stdev(values):{fmt}}"


def _selected(rows: list[dict]) -> str:
    params = [r["params"] for r in rows]
    if not params or not params[0]:
        return ""
    if "components" in params[0]:
        ks = [p["components"] for p in params]
        cap = " (the cap)" if GMM_MAX_COMPONENTS in ks else ""
        return "K = " + ", ".join(str(k) for k in ks) + cap
    if "transforms" in params[0]:
        timed = any(r.get("selection", {}).get("stopped_by") == "time" for r in rows)
        return ("steps = " + ", ".join(str(p["steps"]) for p in params)
                + (" (time budget)" if timed else ""))
    return "h = " + ", ".join(f"{p['bandwidth']:.3g}" for p in params)


def data_table(data: str, records: list[dict], methods: list[str]) -> str:
    """The markdown table of one data set: a row per method, then the floors."""
    mine = [r for r in records if r["data"] == data]
    first = mine[0]
    dim = first["dim"]
    noise = f", noise {first['noise']:g}" if first.get("noise") is not None else ""
    lines = [f"**{data}** ({dim}-D{noise}; true entropy H = {first['entropy']:.3f} nats)", "",
             "| method | NLL gap (nats) | " + " | ".join(METRIC_HEADERS[m] for m in TABLE_METRICS)
             + " | train/fit (s) | selected |",
             "|---" * (len(TABLE_METRICS) + 4) + "|"]
    for method in methods:
        rows = sorted((r for r in mine if r["method"] == method), key=lambda r: r["seed"])
        if not rows:
            continue
        label = BASELINE_LABELS.get(method, f"`{method}`")
        cells = [_mean_sd([r["nll_gap"] for r in rows], ".4f")]
        for m in TABLE_METRICS:
            fmt = ".3f" if m in ("c2st_accuracy", "precision", "recall") else ".2e"
            cells.append(f"{statistics.mean(r['metrics'][m]['value'] for r in rows):{fmt}}")
        cells.append(f"{statistics.median(r['seconds'] for r in rows):.1f}")
        cells.append(_selected(rows))
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    # the floors depend only on the test set, its reference and the seed: one set per seed
    per_seed = {r["seed"]: r["metrics"] for r in mine}
    floors = []
    for m in TABLE_METRICS:
        fmt = ".3f" if m in ("c2st_accuracy", "precision", "recall") else ".2e"
        floors.append(f"{METRIC_HEADERS[m]} "
                      f"{statistics.mean(v[m]['floor'] for v in per_seed.values()):{fmt}}")
    lines += ["", "Floors (data vs data, a second real sample in place of the generated one): "
              + ", ".join(floors) + "."]
    return "\n".join(lines)


def _seeds_text(args: argparse.Namespace) -> str:
    first = getattr(args, "first_seed", 0)
    return f"{args.seeds} seed(s)" + (f" from {first}" if first else "")


def flow_text(args: argparse.Namespace) -> str:
    """What the flow baseline is and the budget it had (for BENCHMARKS.md)."""
    from flow_baseline import BATCH, BINS, HIDDEN, LR, TRANSFORMS

    budget = f"{args.flow_steps} steps"
    if getattr(args, "flow_budget", "steps") == "match":
        budget += ", and at most the training time of the preset on the same set and seed"
    elif getattr(args, "flow_seconds", None) is not None:
        budget += f", and at most {args.flow_seconds:g} s"
    return (f"NSF flow: zuko's `NSF`, {TRANSFORMS} autoregressive transforms of {BINS}-bin "
            f"rational-quadratic splines, conditioners MLPs of {len(HIDDEN)} x {HIDDEN[0]}; "
            f"maximum likelihood on the training points standardised by their mean and sd "
            f"(the log-density corrected by the Jacobian, -sum log sd), batch {BATCH} drawn "
            f"with replacement, Adam {LR:g} with a cosine decay over the budget ({budget}), "
            "seeded by the benchmark's seed, one torch thread. Its time is the training loop.")


def build_body(records: list[dict], datasets: list[str], methods: list[str],
               args: argparse.Namespace, machine_text: str | None = None) -> str:
    """Machine and settings, then one table per data set."""
    steps = f"{args.steps} steps each" if args.steps is not None else "each at its own steps"
    presets = (f"Presets {', '.join(f'`{p}`' for p in args.presets)} ({steps})"
               if args.presets else "No preset trained")
    head = [
        f"Machine: {machine_text or machine()}.",
        "",
        f"{presets}; {_seeds_text(args)}; "
        f"per seed {args.n} fresh test points (the evaluation stream, never training data). "
        f"NLL gap = mean over the test points of log p_true - log q, nats per point, an "
        f"estimate of KL(p || model): for the presets q is IWAE with K = {args.k} (a lower "
        "bound on log q, so the gap is biased upward by the bound's slack), for the baselines "
        "it is exact. Shown as mean ± sd over seeds; the sample metrics (generated vs test "
        "points, n = test points) are means over seeds, the times medians over seeds (robust "
        "to a seed timed while the machine was busy). C2ST 0.5, MMD² and "
        "energy 0, and precision and recall at their floors are ideal.",
    ]
    if args.baselines:
        head += ["", f"Baselines: fitted to {args.train_points} points drawn from the source "
                 "with the seed's training-data stream (the presets see fresh batches every "
                 f"step instead). GaussianMixture: full covariances, components 1..."
                 f"{GMM_MAX_COMPONENTS} by BIC (stopping after 5 counts without a better BIC); "
                 "KernelDensity: one isotropic Gaussian bandwidth from 20 log-spaced values "
                 "(0.01-1 x the mean per-dimension sd) by 5-fold CV log-likelihood on up to "
                 "5000 of the points, then fitted on all. Their time is the selection and fit."]
    if getattr(args, "flow", False):
        head += ["", flow_text(args)]
    return "\n".join(head + [""] + ["\n\n".join(data_table(d, records, methods)
                                                for d in datasets)])


def side_by_side(records: list[dict], datasets: list[str], methods: list[str]) -> str:
    """One row per data set: each method's NLL gap (mean ± sd over seeds) and training time
    (median over seeds), side by side; of the presets only ``default`` where it is there.
    With the default and the flow both there, a last column says whether the default's mean
    gap is at most the flow's."""
    present = [m for m in methods if any(r["method"] == m for r in records)]
    if "default" in present:
        present = [m for m in present if m == "default" or m in BASELINE_LABELS]
    compare = "default" in present and "flow" in present
    labels = [BASELINE_LABELS.get(m, f"`{m}`") for m in present]
    lines = ["| data set | " + " | ".join(f"{lab} gap" for lab in labels) + " | "
             + " | ".join(f"{lab} (s)" for lab in labels)
             + (" | `default` gap <= flow's |" if compare else " |"),
             "|---" * (1 + 2 * len(present) + compare) + "|"]
    for data in datasets:
        gaps, secs = [], []
        means = {}
        for m in present:
            rows = [r for r in records if r["data"] == data and r["method"] == m]
            if not rows:
                gaps.append("")
                secs.append("")
                continue
            n = f" ({len(rows)})" if len(rows) != 3 else ""
            gaps.append(_mean_sd([r["nll_gap"] for r in rows], ".4f") + n)
            secs.append(f"{statistics.median(r['seconds'] for r in rows):.1f}")
            means[m] = statistics.mean(r["nll_gap"] for r in rows)
        if compare:
            both = "default" in means and "flow" in means
            secs.append(("yes" if means["default"] <= means["flow"] else "**no**")
                        if both else "")
        lines.append(f"| {data} | " + " | ".join(gaps + secs) + " |")
    return "\n".join(lines)


def flow_table(records: list[dict], datasets: list[str]) -> str:
    """The flow on every data set: gap, sample metrics (and the C2ST floor), time, steps."""
    lines = ["| data set | NLL gap (nats) | C2ST acc (floor) | precision | recall | MMD² | "
             "energy | train (s) | steps | seeds |", "|---" * 10 + "|"]
    for data in datasets:
        rows = sorted((r for r in records if r["data"] == data and r["method"] == "flow"),
                      key=lambda r: r["seed"])
        if not rows:
            continue

        def mean(m: str, key: str = "value", rows: list[dict] = rows) -> float:
            return statistics.mean(r["metrics"][m][key] for r in rows)

        lines.append(
            f"| {data} | {_mean_sd([r['nll_gap'] for r in rows], '.4f')} | "
            f"{mean('c2st_accuracy'):.3f} ({mean('c2st_accuracy', 'floor'):.3f}) | "
            f"{mean('precision'):.3f} | {mean('recall'):.3f} | {mean('mmd2'):.2e} | "
            f"{mean('energy'):.2e} | {statistics.median(r['seconds'] for r in rows):.1f} | "
            f"{', '.join(str(r['steps']) for r in rows)} | "
            f"{', '.join(str(r['seed']) for r in rows)} |")
    return "\n".join(lines)


def build_flow_body(records: list[dict], datasets: list[str], methods: list[str],
                    runs: list[dict]) -> str:
    """The flow's section: each run's machine and settings, the flow's table, then every
    method's gap and time side by side (the rows of all the runs given)."""
    head = []
    for run in runs:
        settings = run["settings"]
        args = _settings_args(settings)
        what = ", ".join(BASELINE_LABELS.get(m, f"`{m}`") for m in run["methods"])
        head.append(f"- {what}: `{run['command']}`, {_seeds_text(args)}, "
                    f"{args.n} test points per seed; machine: {run['machine']}.")
    flow_run = next((r for r in runs if "flow" in r["methods"]), None)
    if flow_run is not None:
        head += ["", flow_text(_settings_args(flow_run["settings"]))]
    return "\n".join(
        ["Rows from:", "", *head, "",
         "The flow on every set (C2ST floor: data vs data):", "", flow_table(records, datasets),
         "", "Every method side by side: NLL gap in nats (mean ± sd over seeds; the number "
         "of seeds in brackets where it is not 3) and training/fit time in seconds (median "
         "over seeds; each from its own run above). For the presets q is IWAE with K = 1000, "
         "for the baselines exact; all are scored on the same test points per seed.", "",
         side_by_side(records, datasets, methods)])


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--presets", default="seed,default",
                    help="comma-separated preset names, or none (default: seed,default)")
    ap.add_argument("--datasets", default=",".join(default_datasets()),
                    help="comma-separated built-in data sets (default: all with a density)")
    ap.add_argument("--seeds", type=int, default=3,
                    help="how many seeds: --first-seed onwards (default 3)")
    ap.add_argument("--first-seed", type=int, default=0,
                    help="start the seeds here: FIRST..FIRST+N-1 (default 0; to add seeds to "
                    "an earlier run, merged with --from-json)")
    ap.add_argument("--gradients", choices=["auto", "explicit", "autograd"], default="auto",
                    help="train.gradients of every preset run (the committed results predate "
                    "explicit gradients: autograd retraces them bit for bit)")
    ap.add_argument("--n", type=int, default=10_000, help="test points per seed")
    ap.add_argument("--k", type=int, default=1000, help="IWAE samples per test point")
    ap.add_argument("--steps", type=int, default=None,
                    help="override every preset's training steps (for smoke runs)")
    ap.add_argument("--set", type=key_value, action="append", default=[], metavar="KEY=VALUE",
                    help="change a config field of every preset (a dotted path such as "
                    "loss.decoder_std_mode=latent, or a short name): what one lever buys")
    ap.add_argument("--baselines", action=argparse.BooleanOptionalAction, default=True,
                    help="fit the GaussianMixture and KernelDensity baselines (default: on)")
    ap.add_argument("--flow", action=argparse.BooleanOptionalAction, default=True,
                    help="fit the neural spline flow baseline (zuko, from the bench extra; "
                    "default: on)")
    ap.add_argument("--flow-steps", type=int, default=8000,
                    help="the flow's training steps, its cosine schedule's length "
                    "(default 8000)")
    ap.add_argument("--flow-seconds", type=float, default=None,
                    help="at most this much wall-clock training for the flow (default: none)")
    ap.add_argument("--flow-budget", choices=["steps", "match"], default="steps",
                    help="steps: the flow has --flow-steps (and --flow-seconds); match: at most "
                    "the training time the last preset (default, if listed) took on the same "
                    "set and seed, for a comparison at the same wall-clock budget")
    ap.add_argument("--train-points", type=int, default=20_000,
                    help="training points drawn for the baselines (default 20000)")
    ap.add_argument("--json", type=Path, default=None,
                    help="write the raw results here (after every set and seed, so a stopped "
                    "run keeps what it finished)")
    ap.add_argument("--write", action="store_true", help="update BENCHMARKS.md")
    ap.add_argument("--section", choices=sorted(SECTIONS), default="fidelity",
                    help="the BENCHMARKS.md section --write updates: fidelity (a table per "
                    "set), flow (the flow beside the rest) or flow_match (a table per set, "
                    "for a --flow-budget match run)")
    ap.add_argument("--from-json", type=Path, action="append", default=None, metavar="JSON",
                    help="rebuild the tables from a --json file of an earlier run (no "
                    "training); repeat it to merge runs (a later file's row for the same "
                    "set, method and seed wins)")
    args = ap.parse_args(argv)
    args.presets = [p.strip() for p in args.presets.split(",") if p.strip()]
    if args.presets == ["none"]:
        args.presets = []
    args.datasets = [d.strip() for d in args.datasets.split(",") if d.strip()]
    return args


def check_args(args: argparse.Namespace) -> None:
    """Every name and number checked before anything is trained: a one-line error if not."""
    if not args.datasets:
        raise ConfigError("--datasets must name at least one")
    if not args.presets and not (args.baselines or args.flow):
        raise ConfigError("--presets none with --no-baselines and --no-flow leaves nothing to run")
    for preset in args.presets:
        get_preset(preset)
        build_config(preset, None, dict(args.set))  # a --set that cannot work, named now
    valid = default_datasets()
    for data in args.datasets:
        if data not in valid:
            raise ConfigError(f"unknown data set {data!r} (valid: {', '.join(valid)})")
    for name in ("seeds", "n", "k", "train_points", "flow_steps") \
            + (("steps",) if args.steps else ()):
        if getattr(args, name) < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be >= 1")
    if args.first_seed < 0:
        raise ConfigError("--first-seed must be >= 0")
    if args.n < 10:
        raise ConfigError("--n must be >= 10 (the sample metrics need a few points)")
    if args.flow_seconds is not None and not args.flow_seconds > 0:
        raise ConfigError("--flow-seconds must be > 0")
    if args.flow and args.flow_budget == "match" and not args.presets:
        raise ConfigError("--flow-budget match needs a preset to match (not --presets none)")
    if args.flow and importlib.util.find_spec("zuko") is None:
        raise ConfigError("the flow baseline needs zuko: pip install -e '.[bench]' "
                          "(or --no-flow)")


def command_line(args: argparse.Namespace) -> str:
    """The command that reproduces this table (for BENCHMARKS.md)."""
    parts = ["python benchmarks/fidelity.py", f"--presets {','.join(args.presets) or 'none'}"]
    if args.datasets != default_datasets():
        parts.append(f"--datasets {','.join(args.datasets)}")
    parts.append(f"--seeds {args.seeds}")
    if args.first_seed:
        parts.append(f"--first-seed {args.first_seed}")
    parts += [f"--n {args.n}", f"--k {args.k}"]
    if args.steps is not None:
        parts.append(f"--steps {args.steps}")
    parts += [f"--set {k}={json.dumps(v)}" for k, v in getattr(args, "set", None) or []]
    if args.baselines or args.flow:
        parts.append(f"--train-points {args.train_points}")
    if not args.baselines:
        parts.append("--no-baselines")
    if args.flow:
        parts.append(f"--flow-steps {args.flow_steps}")
        if args.flow_seconds is not None:
            parts.append(f"--flow-seconds {args.flow_seconds:g}")
        if args.flow_budget != "steps":
            parts.append(f"--flow-budget {args.flow_budget}")
    else:
        parts.append("--no-flow")
    if getattr(args, "json", None) is not None:
        parts.append(f"--json {args.json}")
    return " ".join([*parts, "--write"])


def _settings_args(settings: dict[str, Any]) -> argparse.Namespace:
    """The settings of a --json file as arguments; keys an older file lacks get the values
    that run had (no flow, seeds from 0)."""
    defaults = {"flow": False, "flow_steps": 8000, "flow_seconds": None,
                "flow_budget": "steps", "first_seed": 0, "json": None}
    keys = ("presets", "datasets", "seeds", "n", "k", "steps", "baselines", "train_points")
    return argparse.Namespace(**{k: settings[k] for k in keys},
                              **{k: settings.get(k, v) for k, v in defaults.items()},
                              set=[tuple(kv) for kv in settings.get("set", [])])


def _methods(args: argparse.Namespace) -> list[str]:
    return [method_name(p, args) for p in args.presets] + baseline_methods(args)


def from_json(paths: list[Path], write: bool, section: str = "fidelity") -> None:
    """Rebuild the tables of earlier runs from their --json files (merged, in order)."""
    runs, merged = [], {}
    for path in paths:
        try:
            payload = json.loads(path.read_text())
            settings, records = payload["settings"], payload["results"]
            args = _settings_args(settings)
        except (OSError, ValueError, KeyError) as exc:
            sys.exit(f"fidelity.py: error: {path} is not a fidelity --json file: {exc}")
        runs.append({"settings": settings, "methods": _methods(args),
                     "machine": payload.get("machine", "not recorded"),
                     "command": payload.get("command", command_line(args)), "args": args})
        for r in records:
            merged[(r["data"], r["method"], r["seed"])] = r
    records = list(merged.values())
    first = runs[0]
    methods: list[str] = []
    for run in runs:
        methods += [m for m in run["methods"] if m not in methods and m not in BASELINE_LABELS]
    methods += [m for m in BASELINE_LABELS if any(r["method"] == m for r in records)]
    datasets: list[str] = []
    for run in runs:
        datasets += [d for d in run["args"].datasets if d not in datasets]
    if section == "flow":
        body = build_flow_body(records, datasets, methods, runs)
        command = next((r["command"] for r in runs if "flow" in r["methods"]),
                       first["command"])
    else:
        body = build_body(records, datasets, methods, first["args"],
                          first["machine"] if first["machine"] != "not recorded" else None)
        command = first["command"]
    print(body)
    if write:
        key, title = SECTIONS[section]
        update_section(key, title, command, body)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.from_json is not None:
        from_json(args.from_json, args.write, args.section)
        return
    try:
        check_args(args)
    except ConfigError as exc:
        sys.exit(f"fidelity.py: error: {exc}")
    # one torch thread unless OMP_NUM_THREADS says (vaelab's own default): the sample metrics
    # and the flow's small products gain little from a second and stall when a core is busy
    choose_threads()
    records: list[dict] = []
    t_start = time.perf_counter()
    match = args.flow_budget == "match"
    matched = ("default" if "default" in args.presets else args.presets[-1]) if match else None
    for data in args.datasets:
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            first_run: Run | None = None
            flow_seconds = args.flow_seconds
            for preset in args.presets:
                run, record = run_preset(data, preset, seed, args)
                records.append(record)
                if preset == matched:
                    flow_seconds = min(record["seconds"], args.flow_seconds or np.inf)
                if first_run is None:
                    first_run = run
                elif run.config.data.noise != first_run.config.data.noise:
                    log(f"warning: {data}: preset {preset} uses noise {run.config.data.noise}, "
                        f"{args.presets[0]} {first_run.config.data.noise}: different test sets")
            if args.baselines or args.flow:
                test = test_set(data, seed, first_run, args)
                records += run_baselines(data, seed, test, args, flow_seconds)
            if args.json is not None:
                save_json(args, records)
    log(f"done in {time.perf_counter() - t_start:.0f} s")
    body = build_body(records, args.datasets, _methods(args), args)
    print(body)
    if args.json is not None:
        save_json(args, records)
        log(f"raw results written to {args.json}")
    if args.write:
        key, title = SECTIONS[args.section]
        if args.section == "flow":
            runs = [{"settings": vars(args), "methods": _methods(args), "machine": machine(),
                     "command": command_line(args)}]
            body = build_flow_body(records, args.datasets, _methods(args), runs)
        update_section(key, title, command_line(args), body)


def save_json(args: argparse.Namespace, records: list[dict]) -> None:
    """The raw results and the settings behind them (rewritten as the run goes)."""
    payload = {"machine": machine(), "command": command_line(args),
               "settings": {k: (str(v) if isinstance(v, Path) else v)
                            for k, v in vars(args).items()},
               "results": records}
    args.json.write_text(json.dumps(payload, indent=1, default=float) + "\n")


if __name__ == "__main__":
    main()
