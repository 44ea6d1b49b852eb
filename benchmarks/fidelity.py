"""How well each preset learns every built-in toy data set, beside two classical baselines.

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

Run::

    python benchmarks/fidelity.py                              # print the tables
    python benchmarks/fidelity.py --write --json fidelity.json # and update BENCHMARKS.md
    python benchmarks/fidelity.py --from-json fidelity.json --write  # tables again, no training
    python benchmarks/fidelity.py --presets seed --datasets swiss_roll,moons --seeds 1 \
        --steps 300 --n 2000 --k 50                            # a smoke run
    python benchmarks/fidelity.py --presets default --set loss.decoder_std_mode=latent \
        --datasets checkerboard --seeds 1 --no-baselines       # a preset with a setting changed

``--set KEY=VALUE`` (repeatable; a dotted config path or a short name, as ``vaelab train
--set``) changes every preset's config, to measure what one lever buys; the tables then name
each preset with its settings.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from benchmarks_md import machine, update_section

from vaelab.baselines import Baseline, fit_gmm, fit_kde
from vaelab.cli.main import key_value
from vaelab.data.toys import TOY_SOURCES
from vaelab.devices import derive_seeds, make_generator
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
BASELINE_LABELS = {"gmm": "GaussianMixture (BIC)", "kde": "KernelDensity (CV)"}
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


def run_baselines(data: str, seed: int, run: Run, args: argparse.Namespace) -> list[dict]:
    """Fit both baselines for one (data set, seed); score them on ``run``'s test set."""
    test = test_data(run, args.n, seed)
    source = test.source
    assert source is not None and test.reference is not None
    train = source.sample(args.train_points, make_generator(derive_seeds(seed).data))
    train = train.numpy().astype(np.float64)
    x = test.points
    logp = source.log_prob(x).numpy()
    x64 = x.numpy().astype(np.float64)
    fitted: list[Baseline] = [fit_gmm(train, max_components=GMM_MAX_COMPONENTS, seed=seed),
                              fit_kde(train, seed=seed)]
    records = []
    for model in fitted:
        t0 = time.perf_counter()
        diff = logp - model.log_prob(x64)
        gap, gap_se = float(diff.mean()), float(diff.std(ddof=1) / np.sqrt(len(diff)))
        report = sample_report(model.sample(len(x), seed + 1), x.numpy(),
                               test.reference.numpy(), seed=seed)
        record = {
            "data": data, "kind": "baseline", "method": model.name, "seed": seed,
            "dim": int(x.shape[1]),
            "train_points": args.train_points, "noise": run.config.data.noise,
            "nll_gap": gap, "nll_gap_stderr": gap_se, "nll": float(-model.log_prob(x64).mean()),
            "entropy": float(source.entropy()), "metrics": _metrics(report),
            "seconds": model.fit_seconds, "params": model.params,
            "eval_seconds": time.perf_counter() - t0, "selection": model.selection,
            "sample_metrics": report,
        }
        records.append(record)
        log(f"[{data} seed {seed}] {model.name} {model.params}: fitted in "
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


def build_body(records: list[dict], datasets: list[str], methods: list[str],
               args: argparse.Namespace, machine_text: str | None = None) -> str:
    """Machine and settings, then one table per data set."""
    steps = f"{args.steps} steps each" if args.steps is not None else "each at its own steps"
    head = [
        f"Machine: {machine_text or machine()}.",
        "",
        f"Presets {', '.join(f'`{p}`' for p in args.presets)} ({steps}); {args.seeds} seed(s); "
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
    return "\n".join(head + [""] + ["\n\n".join(data_table(d, records, methods)
                                                for d in datasets)])


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--presets", default="seed,default",
                    help="comma-separated preset names (default: seed,default)")
    ap.add_argument("--datasets", default=",".join(default_datasets()),
                    help="comma-separated built-in data sets (default: all with a density)")
    ap.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 (default 3)")
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
    ap.add_argument("--train-points", type=int, default=20_000,
                    help="training points drawn for the baselines (default 20000)")
    ap.add_argument("--json", type=Path, default=None, help="write the raw results here")
    ap.add_argument("--write", action="store_true", help="update BENCHMARKS.md")
    ap.add_argument("--from-json", type=Path, default=None, metavar="JSON",
                    help="rebuild the tables from a --json file of an earlier run (no training)")
    args = ap.parse_args(argv)
    args.presets = [p.strip() for p in args.presets.split(",") if p.strip()]
    args.datasets = [d.strip() for d in args.datasets.split(",") if d.strip()]
    return args


def check_args(args: argparse.Namespace) -> None:
    """Every name and number checked before anything is trained: a one-line error if not."""
    if not args.presets or not args.datasets:
        raise ConfigError("--presets and --datasets must each name at least one")
    for preset in args.presets:
        get_preset(preset)
        build_config(preset, None, dict(args.set))  # a --set that cannot work, named now
    valid = default_datasets()
    for data in args.datasets:
        if data not in valid:
            raise ConfigError(f"unknown data set {data!r} (valid: {', '.join(valid)})")
    for name in ("seeds", "n", "k", "train_points") + (("steps",) if args.steps else ()):
        if getattr(args, name) < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be >= 1")
    if args.n < 10:
        raise ConfigError("--n must be >= 10 (the sample metrics need a few points)")


def command_line(args: argparse.Namespace) -> str:
    """The command that reproduces this table (for BENCHMARKS.md)."""
    parts = ["python benchmarks/fidelity.py", f"--presets {','.join(args.presets)}"]
    if args.datasets != default_datasets():
        parts.append(f"--datasets {','.join(args.datasets)}")
    parts += [f"--seeds {args.seeds}", f"--n {args.n}", f"--k {args.k}"]
    if args.steps is not None:
        parts.append(f"--steps {args.steps}")
    parts += [f"--set {k}={json.dumps(v)}" for k, v in getattr(args, "set", None) or []]
    parts.append(f"--train-points {args.train_points}" if args.baselines else "--no-baselines")
    return " ".join([*parts, "--write"])


def from_json(path: Path, write: bool) -> None:
    """Rebuild the tables of an earlier run from its --json file."""
    try:
        payload = json.loads(path.read_text())
        settings, records = payload["settings"], payload["results"]
    except (OSError, ValueError, KeyError) as exc:
        sys.exit(f"fidelity.py: error: {path} is not a fidelity --json file: {exc}")
    args = argparse.Namespace(**{k: settings[k] for k in (
        "presets", "datasets", "seeds", "n", "k", "steps", "baselines", "train_points")},
                              set=[tuple(kv) for kv in settings.get("set", [])])
    methods = ([method_name(p, args) for p in args.presets]
               + (list(BASELINE_LABELS) if args.baselines else []))
    body = build_body(records, args.datasets, methods, args, payload.get("machine"))
    print(body)
    if write:
        update_section("fidelity", "Fidelity: presets and classical baselines on the toy sets",
                       payload.get("command", command_line(args)), body)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.from_json is not None:
        from_json(args.from_json, args.write)
        return
    try:
        check_args(args)
    except ConfigError as exc:
        sys.exit(f"fidelity.py: error: {exc}")
    records: list[dict] = []
    t_start = time.perf_counter()
    for data in args.datasets:
        for seed in range(args.seeds):
            first_run: Run | None = None
            for preset in args.presets:
                run, record = run_preset(data, preset, seed, args)
                records.append(record)
                if first_run is None:
                    first_run = run
                elif run.config.data.noise != first_run.config.data.noise:
                    log(f"warning: {data}: preset {preset} uses noise {run.config.data.noise}, "
                        f"{args.presets[0]} {first_run.config.data.noise}: different test sets")
            if args.baselines:
                assert first_run is not None
                records += run_baselines(data, seed, first_run, args)
    log(f"done in {time.perf_counter() - t_start:.0f} s")
    methods = ([method_name(p, args) for p in args.presets]
               + (list(BASELINE_LABELS) if args.baselines else []))
    body = build_body(records, args.datasets, methods, args)
    print(body)
    if args.json is not None:
        payload = {"machine": machine(), "command": command_line(args),
                   "settings": {k: (str(v) if isinstance(v, Path) else v)
                                for k, v in vars(args).items()},
                   "results": records}
        args.json.write_text(json.dumps(payload, indent=1, default=float) + "\n")
        log(f"raw results written to {args.json}")
    if args.write:
        update_section("fidelity", "Fidelity: presets and classical baselines on the toy sets",
                       command_line(args), body)


if __name__ == "__main__":
    main()
