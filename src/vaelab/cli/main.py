"""The ``vaelab`` command: train, sample, plot.

Every user error (bad flag value, unknown preset, unreadable run) ends in one line
``vaelab: error: ...`` on stderr and exit status 2; never a traceback.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from vaelab._version import __version__
from vaelab.errors import TrainingInterrupted, VaelabError


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad command line is one error line, not usage + error."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"{self.prog}: error: {message} (see {self.prog} --help)\n")
        raise SystemExit(2)


# -- value parsers: each rejects with a message argparse puts on the one error line -------

def _number(text: str, kind: type) -> Any:
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a valid {kind.__name__}") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def positive_int(text: str) -> int:
    value = _number(text, int)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be a positive integer")
    return value


def nonnegative_int(text: str) -> int:
    value = _number(text, int)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be >= 0")
    return value


def positive_float(text: str) -> float:
    value = _number(text, float)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be a positive number")
    return value


def nonnegative_float(text: str) -> float:
    value = _number(text, float)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be >= 0")
    return value


def fraction(text: str) -> float:
    value = _number(text, float)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be a fraction in [0, 1)")
    return value


def int_list(text: str) -> list[int]:
    parts = text.split(",")
    if len(parts) > 1 and not all(part.strip() for part in parts):  # 128,,128 is not 128,128
        raise argparse.ArgumentTypeError(f"{text!r} has an empty item: list positive "
                                         "integers, e.g. 128,128")
    try:
        values = [int(part) for part in parts if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a comma-separated list of integers, e.g. 128,128") from None
    if not values or any(v <= 0 for v in values):
        raise argparse.ArgumentTypeError(f"{text!r} must list positive integers, e.g. 128,128")
    return values


def key_value(text: str) -> tuple[str, Any]:
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE, e.g. optim.gamma=0.5")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw  # a bare string such as cpu
    return key.strip(), value


def sweep_values(text: str) -> tuple[str, list[float]]:
    """``KEY=V1,V2,...`` for --sweep: a key and its numbers (checked as config values later)."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip() or not raw.strip():
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=V1,V2,..., e.g. lr=0.001,0.01")
    values: list[float] = []
    for item in raw.split(","):
        try:  # an integer as written (a count's field refuses 1e2 and 100.0, as everywhere)
            number: float = int(item)
        except ValueError:
            try:
                number = float(item)
            except ValueError:
                raise argparse.ArgumentTypeError(
                    f"{text!r}: {item.strip()!r} is not a number") from None
        values.append(number)
    return key.strip(), values


# -- the parser ----------------------------------------------------------------------------

def _add_settings(parser: argparse.ArgumentParser) -> None:
    """The run settings ``train`` and ``sweep`` share (they override the preset and
    --config)."""
    from vaelab.config import ACTIVATIONS, DECODER_STD_MODES, LOSSES, PRIORS, SCHEDULERS
    from vaelab.data import source_names

    g = parser.add_argument_group("settings (override the preset and --config)")
    g.add_argument("--data", help=f"data source: {', '.join(source_names())}")
    g.add_argument("--noise", type=nonnegative_float, help="data noise (seed: 0.3)")
    g.add_argument("--n-train", type=positive_int,
                   help="fix a training set of N points (default: a fresh batch every step)")
    g.add_argument("--data-backend", choices=["torch", "sklearn"],
                   help="draw data with torch on the device (fast) or with scikit-learn")
    g.add_argument("--decorrelate", action=argparse.BooleanOptionalAction, default=None,
                   help="rotate the data onto its principal axes before standardising "
                   "(PCA whitening; default: yes for a data file, no for a built-in set)")
    g.add_argument("--steps", type=positive_int,
                   help="training steps (the default preset: 24,000 on every data set, the "
                   "time that takes by CPU in the README; with --time-limit: a cap, default "
                   "then none)")
    g.add_argument("--time-limit", type=positive_float, metavar="SECONDS",
                   help="train until this many seconds are spent, then save as usual")
    g.add_argument("--validation", type=fraction, metavar="FRACTION",
                   help="set this fraction of a fixed training set (a file's training rows, "
                   "--n-train) aside and keep the weights of the step that fits it best "
                   "(IWAE NLL), where clearly better than the last step's: a small set is "
                   "learned by heart before the steps are spent. "
                   "0: off, the last step's weights. Default preset: 0.1 below 4,000 "
                   "training rows, else off")
    g.add_argument("--restarts", type=positive_int, metavar="N",
                   help="try N initial weights (the run's own and N - 1 more from its seed) "
                   "for the first twelfth of the steps and train the one whose training loss "
                   "is lowest: where a run ends can depend on them (default 1: the run's "
                   "own only)")
    g.add_argument("--batch-size", type=positive_int, help="points per step")
    g.add_argument("--lr", type=positive_float, help="Adam learning rate")
    g.add_argument("--scheduler", choices=list(SCHEDULERS), help="learning-rate schedule")
    g.add_argument("--step-size", type=positive_int, help="StepLR period in steps")
    g.add_argument("--gamma", type=positive_float, help="StepLR factor")
    g.add_argument("--lr-warmup", type=fraction,
                   help="fraction of training with a linear learning-rate warm-up")
    g.add_argument("--latent-dim", type=positive_int,
                   help="latent dimension (default preset: the data's columns, at least 2; "
                   "twice the columns for 6 to 16 columns)")
    g.add_argument("--hidden-dims", type=int_list, help="hidden widths, e.g. 128,128")
    g.add_argument("--decoder-hidden-dims", type=int_list,
                   help="decoder widths from z outwards (default: hidden dims mirrored)")
    g.add_argument("--activation", choices=list(ACTIVATIONS), help="hidden-layer activation")
    g.add_argument("--prior", choices=list(PRIORS), help="latent prior p(z)")
    g.add_argument("--loss", choices=list(LOSSES),
                   help="objective: seed_mse (the seed's), gaussian (ELBO), iwae")
    g.add_argument("--iwae-k", type=positive_int, help="importance samples of the iwae loss")
    g.add_argument("--kl-warmup", type=fraction,
                   help="fraction of training over which the KL weight rises from 0")
    g.add_argument("--kld-weight", type=positive_float,
                   help="weight of the KL term (seed_mse: sets the decoder variance D*w/2)")
    g.add_argument("--decoder-std-mode", choices=list(DECODER_STD_MODES),
                   help="global: one learned decoder sigma per data dimension; latent: "
                   "sigma(z) from a head on the decoder, floored at loss.min_decoder_std, so "
                   "the decoder can be sharp where the data is thin (gaussian or iwae loss); "
                   "full: a full covariance L(z) L(z)^T from that head, for noise correlated "
                   "across columns. Default: full for a data file of 3-16 "
                   "columns, latent for a built-in set of 3+, else global")
    g.add_argument("--seed", type=nonnegative_int, help="fixes data, initialisation, noise")
    g.add_argument("--device", help="auto, cpu, cuda or cuda:N")
    g.add_argument("--compile", choices=["auto", "on", "off"],
                   help="compile the step (on the CPU the explicit step, compiled ahead of "
                   "time once per machine and shapes, cached in ~/.cache/vaelab or "
                   "$VAELAB_CACHE_DIR, and loaded before the training clock starts; auto: "
                   "the seed's and the IWAE loss on the CPU, for runs of >= 10,000 steps "
                   "and >= 10 s, where compiling pays for itself; elsewhere eager (see "
                   "BENCHMARKS.md))")
    g.add_argument("--handoff", type=nonnegative_int, metavar="STEPS",
                   help="with the step compiled under --compile auto: train the first STEPS "
                   "eagerly while the compiled step is built in a second process (the same "
                   "on every run, so a first and a cached run give the same bits; default "
                   "0: build first)")
    g.add_argument("--cuda-graph", choices=["auto", "on", "off"],
                   help="on CUDA, replay the whole step as one CUDA graph, with the eager "
                   "step's results bit for bit (auto: wherever it can: a fresh batch every "
                   "step, nothing compiled)")
    g.add_argument("--gradients", choices=["auto", "explicit", "autograd"],
                   help="explicit: a simple model's networks (and the seed and IWAE losses) "
                   "forward and backward by hand, no autograd graph; autograd: "
                   "backpropagation; auto: explicit where the loss is in closed form, else "
                   "autograd")
    g.add_argument("--log-every", type=positive_int, help="steps per metrics row")
    g.add_argument("--checkpoint-every", type=nonnegative_int, metavar="N",
                   help="steps between checkpoints for --resume (default 1000; 0: only at "
                   "the end and on an interrupt)")
    g.add_argument("--frame-every", type=nonnegative_int,
                   help="steps per display frame (0: final frame only)")
    g.add_argument("--set", type=key_value, action="append", default=[], metavar="KEY=VALUE",
                   help="any config field by dotted path, e.g. --set optim.gamma=0.5")


def build_parser() -> argparse.ArgumentParser:
    from vaelab.presets import DEFAULT_PRESET, preset_names

    parser = _Parser(prog="vaelab", description="Learn a distribution from samples with a VAE: "
                     "train a model, generate from it, evaluate log p(x), draw what it learned.")
    parser.add_argument("--version", action="version", version=f"vaelab {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                parser_class=_Parser)

    t = sub.add_parser("train", help="train a model into a run directory",
                       description="Train a VAE. Settings come from the preset, then --config, "
                       "then the flags below (later wins; a flag and a --set of one field "
                       "are refused). The resolved config is saved with the run.")
    t.add_argument("--preset", help=f"starting configuration: {', '.join(preset_names())} "
                   f"(default: {DEFAULT_PRESET})")
    t.add_argument("--config", type=Path, help="TOML or JSON file with [data], [model], [loss], "
                   "[optim], [train], [display] tables")
    t.add_argument("--out", type=Path, help="run directory to create (default: runs/PRESET)")
    t.add_argument("--force", action="store_true",
                   help="replace the run in --out if it is not empty")
    t.add_argument("--resume", type=Path, metavar="RUN",
                   help="continue RUN (a run, or the OUT of a group) from its last checkpoint "
                   "with its saved config (no other settings); SIGINT/SIGTERM save a "
                   "checkpoint and stop")
    t.add_argument("--seeds", type=positive_int, metavar="N",
                   help="train N models at once (seeds SEED..SEED+N-1, batched weights) into "
                   "OUT/seed-S each")
    t.add_argument("--sweep", type=sweep_values, action="append", default=[],
                   metavar="KEY=V1,V2,...",
                   help="train one model per value at once (batched weights); KEY is lr, "
                   "kld_weight or seed; repeat it for every combination, add --seeds N for N "
                   "seeds each; into OUT/KEY-V_..._seed-S")
    _add_settings(t)
    t.add_argument("--no-figures", action="store_true", help="skip drawing the figures")
    t.add_argument("--no-report", action="store_true",
                   help="skip writing RUN/report.html (for a group: OUT/report.html)")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.add_argument("--dry-run", action="store_true",
                   help="print the resolved config and the step plan (how each step will "
                        "run, and why), then exit without training or writing anything")

    sw = sub.add_parser("sweep", help="train many runs over a search space on Ray Tune",
                        description="Train one run (or one group of --seeds N) per setting of "
                        "a search space over any config field, scheduled by Ray Tune: on this "
                        "machine's cores, one trial per core, or on a Ray cluster "
                        "(--address). Each trial is an ordinary run directory DIR/trial-NNN; "
                        "DIR/sweep.csv and sweep.json hold one row per trial and "
                        "DIR/report.html compares them. Needs the extra: "
                        "pip install 'vaelab[sweep]'.")
    sw.add_argument("--preset", help=f"starting configuration: {', '.join(preset_names())} "
                    f"(default: {DEFAULT_PRESET})")
    sw.add_argument("--config", type=Path, help="TOML or JSON file of settings, as for train")
    sw.add_argument("--out", type=Path, metavar="DIR", help="the sweep's directory (new)")
    sw.add_argument("--resume", type=Path, metavar="DIR",
                    help="finish the sweep in DIR with its saved settings: only its unfinished "
                    "trials run")
    sw.add_argument("--search", action="append", default=[], metavar="KEY=...",
                    help="a searched setting (short name or dotted path, as --set takes "
                    "them): a list KEY=V1,V2,... (a list value with x: hidden_dims=64x64,"
                    "128x128), or a range KEY=log:LO:HI, int:LO:HI or uniform:LO:HI; "
                    "repeat it for every key")
    sw.add_argument("--searcher", choices=["grid", "random", "tpe"],
                    help="grid: every combination; random: --trials draws; tpe: Bayesian "
                    "search by Optuna's TPE (default: grid when every key lists its values, "
                    "else random)")
    sw.add_argument("--trials", type=positive_int, metavar="N",
                    help="trials of a random or tpe search (default 10)")
    sw.add_argument("--seeds", type=positive_int, metavar="N",
                    help="train each setting with seeds SEED..SEED+N-1 at once (one group), "
                    "scored by their mean")
    sw.add_argument("--metric", choices=["nll_gap", "nll", "c2st"],
                    help="what ranks the trials, lower is better: nll_gap (test NLL minus the "
                    "true entropy, where the data's density is known: the default there), nll "
                    "(held-out NLL: the default for a data file), c2st (a classifier's "
                    "accuracy telling samples from data; 0.5 is chance)")
    sw.add_argument("--early-stop", action="store_true",
                    help="stop poor trials early (ASHA) by a held-out -ELBO reported while "
                    "they train")
    sw.add_argument("--address", metavar="HOST:PORT",
                    help="join this Ray cluster (default: RAY_ADDRESS if set, else start Ray "
                    "on this machine); its nodes need vaelab and DIR at the same path")
    sw.add_argument("--max-failures", type=nonnegative_int, default=3, metavar="N",
                    help="retries of a trial whose worker or node was lost (default 3)")
    sw.add_argument("--eval-n", type=positive_int, default=2000, metavar="N",
                    help="test points each trial is scored on (default 2000)")
    sw.add_argument("--eval-k", type=positive_int, default=100, metavar="K",
                    help="IWAE samples per test point for nll and nll_gap (default 100)")
    _add_settings(sw)

    s = sub.add_parser("sample", help="generate points from a trained run",
                       description="Draw z from the run's prior p(z) (N(0, I), or the learned "
                       "mixture or flow it trained), decode it into data space and write the "
                       "points.")
    s.add_argument("run", type=Path, help="run directory")
    s.add_argument("-n", type=positive_int, default=1000, help="number of points (default 1000)")
    s.add_argument("-o", "--output", type=Path,
                   help="file to write: .csv (with a header row) or .npy (default: CSV to stdout)")
    s.add_argument("--seed", type=nonnegative_int, default=0, help="sampling seed (default 0)")
    s.add_argument("--device", default="cpu", help="auto, cpu, cuda or cuda:N (default cpu)")
    s.add_argument("--decoder-noise", choices=["auto", "on", "off"], default="auto",
                   help="on: draw from p(x|z) too (the model's full p(x)); off: the decoder "
                   "means; auto (default, as run.sample() and model.sample() in Python): "
                   "what the objective trained, means for seed_mse, p(x) for gaussian and "
                   "iwae")

    lp = sub.add_parser("logp", help="estimate log p(x) for every row of a file",
                        description="Write one log p(x) estimate (nats, the data's own units) "
                        "per input row, in order, as CSV: the input columns, then log_p.")
    lp.add_argument("run", type=Path, help="run directory")
    lp.add_argument("--input", type=Path, required=True, help="points: .csv or .npy")
    lp.add_argument("-o", "--output", type=Path,
                    help="CSV file to write (default: stdout)")
    lp.add_argument("--estimator", choices=["iwae", "elbo", "prior-mc"], default="iwae",
                    help="iwae: importance-weighted bound (default); elbo: the evidence lower "
                    "bound; prior-mc: plain Monte Carlo over the prior")
    lp.add_argument("--k", type=positive_int, default=1000,
                    help="samples per point (default 1000)")
    lp.add_argument("--seed", type=nonnegative_int, default=0, help="sampling seed")
    lp.add_argument("--device", default="cpu", help="auto, cpu, cuda or cuda:N (default cpu)")

    ev = sub.add_parser("evaluate", help="test NLL, gap to the true entropy, sample metrics",
                        description="Draw a fresh test set from the run's data source (or the "
                        "held-out part of its data file, or --input) and report the test NLL "
                        "(IWAE), the ELBO, the true entropy and the gap NLL - H in nats, and "
                        "sample metrics beside their data-vs-data floors.")
    ev.add_argument("run", type=Path, help="run directory")
    ev.add_argument("--n", type=positive_int, default=10_000, help="test points (default 10000)")
    ev.add_argument("--k", type=positive_int, default=1000, help="IWAE samples (default 1000)")
    ev.add_argument("--input", type=Path, help="evaluate on these points instead (.csv/.npy)")
    ev.add_argument("--json", type=Path, help="also write the report as JSON")
    ev.add_argument("--seed", type=nonnegative_int, default=0, help="evaluation seed")
    ev.add_argument("--device", default="cpu", help="auto, cpu, cuda or cuda:N (default cpu)")
    ev.add_argument("--no-metrics", action="store_true", help="skip the sample metrics")
    ev.add_argument("--data", type=Path, metavar="NEW_PATH",
                    help="where the run's data file is now, if it moved (checked against the "
                         "fingerprint the run keeps)")
    ev.add_argument("--baselines", action=argparse.BooleanOptionalAction, default=None,
                    help="fit a GaussianMixture and a KernelDensity on the run's training rows "
                         "and score them beside the model (default: on for a data file's "
                         "run, which has no true density to compare with)")
    ev.add_argument("--no-figures", action="store_true",
                    help="skip the density figure (RUN/figures/density.png, 2-D data)")

    cv = sub.add_parser("convergence", help="how the log p(x) estimators converge with K",
                        description="For a set of test points, estimate log p(x) with the ELBO, "
                        "IWAE and plain prior Monte Carlo at growing K, with repeats, against "
                        "the true density when it is known: a table and a plot.")
    cv.add_argument("run", type=Path, help="run directory")
    cv.add_argument("--points", type=positive_int, default=200, help="test points (default 200)")
    cv.add_argument("--ks", type=int_list, default=[1, 10, 100, 1000, 10_000],
                    help="values of K (default 1,10,100,1000,10000)")
    cv.add_argument("--repeats", type=positive_int, default=3,
                    help="independent repeats per K (default 3)")
    cv.add_argument("--seed", type=nonnegative_int, default=0, help="seed")
    cv.add_argument("--json", type=Path, help="also write the table as JSON")
    cv.add_argument("-o", "--output", type=Path,
                    help="plot file (default RUN/figures/convergence.png)")
    cv.add_argument("--device", default="cpu", help="auto, cpu, cuda or cuda:N (default cpu)")

    rp = sub.add_parser("report", help="write a self-contained HTML report of runs",
                        description="One HTML file that opens from disk with no network: "
                        "what was trained, the three panels over training (a slider), the "
                        "training curves, and what evaluate and convergence measured (named "
                        "with the command that adds it when missing). Several runs, or a "
                        "group's directory: a sortable table and their panels side by side.")
    rp.add_argument("runs", type=Path, nargs="+", metavar="RUN",
                    help="run directories, or the OUT of a group (--seeds, --sweep)")
    rp.add_argument("-o", "--output", type=Path,
                    help="the HTML file to write (default: RUN/report.html for one run or "
                    "one group; required for several)")

    p = sub.add_parser("plot", help="redraw a run's figures",
                       description="Redraw the panels, the training GIF and the loss curves "
                       "from the run's saved frames and metrics.")
    p.add_argument("run", type=Path, help="run directory")
    p.add_argument("--out", type=Path, help="figure directory (default: RUN/figures)")

    c = sub.add_parser("compare", help="draw several runs' samples beside the true data",
                       description="One panel of real points (a fresh draw from the first "
                       "run's data, or its held-out points for a file), then one panel of "
                       "generated points per run, on the same axes; for more than 2 columns, "
                       "a pair plot of each (at most 6 columns; --columns chooses).")
    c.add_argument("runs", type=Path, nargs="+", help="run directories (same data)")
    c.add_argument("-o", "--output", type=Path, required=True, help="the PNG to write")
    c.add_argument("-n", type=positive_int, default=5000, help="points per panel (default 5000)")
    c.add_argument("--labels", help="comma-separated panel titles (default: each run's preset)")
    c.add_argument("--seed", type=nonnegative_int, default=0, help="sampling seed")
    c.add_argument("--columns", metavar="NAME,NAME,...",
                   help="the columns to draw, by the data's column names or 0-based indices: "
                   "two for one scatter per run, 3 to 6 for a pair plot (default: every "
                   "column, at most the first 6)")
    for command in sub.choices.values():
        command.add_argument("--threads", type=positive_int, metavar="N",
                             help="CPU threads (default: OMP_NUM_THREADS if set, else 1: "
                             "vaelab's small products gain little from more, and lose much "
                             "when other processes share the cores)")
    return parser


_TRAIN_FLAGS = ("data", "noise", "n_train", "data_backend", "decorrelate", "steps", "time_limit",
                "batch_size", "lr", "scheduler", "step_size", "gamma", "lr_warmup", "latent_dim",
                "hidden_dims", "decoder_hidden_dims", "activation", "prior", "loss", "iwae_k",
                "kl_warmup", "kld_weight", "decoder_std_mode", "seed", "device", "compile",
                "handoff", "cuda_graph", "gradients", "validation", "restarts",
                "log_every", "checkpoint_every", "frame_every")


# -- commands -------------------------------------------------------------------------------

def cmd_train(args: argparse.Namespace) -> int:
    from vaelab.resolve import build_config
    from vaelab.runs import GROUP_FILE, resume_group, resume_run, train_run

    settings: dict[str, Any] = {k: getattr(args, k) for k in _TRAIN_FLAGS}
    settings.update(_set_settings(args.set, settings))
    if args.dry_run:
        return _dry_run(args, settings)
    if args.resume is not None:
        given = [f"--{k.replace('_', '-')}" for k, v in settings.items() if v is not None]
        given += [f"--{k}" for k in ("preset", "config", "out", "force")
                  if getattr(args, k) not in (None, False)]
        given += [flag for flag in ("--seeds", "--sweep")
                  if getattr(args, flag[2:]) not in (None, [])]
        if given:
            raise VaelabError(f"--resume continues a run with its saved config; drop "
                              f"{', '.join(given)}")
        if (args.resume / GROUP_FILE).is_file():  # a group (--seeds, --sweep) resumes whole
            runs = resume_group(args.resume, progress=not args.quiet,
                                figures=not args.no_figures)
            _report_group(runs)
            _write_report(args, runs, args.resume, _group_title(args.resume, runs))
            return 0
        run = resume_run(args.resume, progress=not args.quiet, figures=not args.no_figures)
    elif args.seeds is not None or args.sweep:
        return _train_group(args, build_config(args.preset, args.config, settings), settings)
    else:
        config = build_config(args.preset, args.config, settings)
        out = args.out or Path("runs") / (config.preset or "custom")
        run = train_run(config, out, force=args.force, progress=not args.quiet,
                        figures=not args.no_figures)
    s = run.summary
    final = s["final"]
    print(f"trained {s['steps']} steps in {s['train_seconds']:.1f} s "
          f"(stopped by {str(s.get('stopped_by', 'steps')).replace('_', ' ')}) "
          f"({s['steps_per_second']:.0f} steps/s, {s['device']}); final loss "
          f"{final['loss']:.4f} (reconstruction {final['reconstruction']:.4f}, "
          f"KLD {final['kld']:.4f}, -ELBO {final['neg_elbo']:.3f} nats/point)")
    _report_compile(s)
    _report_restarts(s)
    _report_validation(s)
    print(f"run saved to {run.path}")
    _write_report(args, [run], run.path)
    return 0


def _write_report(args: argparse.Namespace, runs: list[Any], where: Path,
                  title: str | None = None) -> None:
    """``train``'s last act: the run's (or the group's) report.html, unless --no-report."""
    if args.no_report:
        return
    from vaelab.report import build_report
    from vaelab.runs import REPORT_FILE

    report = build_report(runs, title)
    path = report.save(where / REPORT_FILE)
    print(f"report: {path} ({report.size / 1e6:.1f} MB; vaelab evaluate and convergence add "
          "to it, then vaelab report)")


def _dry_run(args: argparse.Namespace, settings: dict[str, Any]) -> int:
    """``train --dry-run``: the resolved config(s) and the step plan; nothing is written."""
    from vaelab.groups import check_group
    from vaelab.resolve import build_config, prepare
    from vaelab.training.plan import plan_for

    if args.resume is not None:
        raise VaelabError("--dry-run shows the plan of a new run; drop --resume")
    configs = _configs_of(args, build_config(args.preset, args.config, settings), settings)
    resolved = [prepare(c) for c in configs]
    if len(resolved) > 1 or args.seeds is not None or args.sweep:
        check_group([r for r, _ in resolved])
    plan = plan_for([r for r, _ in resolved], resolved[0][1])
    for i, (cfg, _) in enumerate(resolved):
        title = "resolved config" + (f" of model {i}" if len(resolved) > 1 else "")
        print(f"# {title}\n{cfg.to_json()}")
    print("# step plan")
    for line in plan.lines():
        print(line)
    return 0


def _set_settings(pairs: list[tuple[str, Any]], flags: dict[str, Any]) -> dict[str, Any]:
    """The ``--set KEY=VALUE`` settings, refusing a field that a flag or another ``--set``
    sets too: neither would silently win, whatever the order on the command line."""
    from vaelab.resolve import SHORT_KEYS

    given = {SHORT_KEYS.get(k, k): f"--{k.replace('_', '-')}"
             for k, v in flags.items() if v is not None}
    out: dict[str, Any] = {}
    for key, value in pairs:
        path = SHORT_KEYS.get(key, key)
        if path in given:
            raise VaelabError(f"{given[path]} and --set {key} both set {path}; drop one")
        given[path] = f"--set {key}"
        out[key] = value
    return out


def _configs_of(args: argparse.Namespace, config: Any, settings: dict[str, Any]) -> list:
    """The run's configs: ``config`` alone, or the group ``--seeds`` or ``--sweep`` (with
    ``--seeds``) makes of it, each flag checked against the sweep."""
    from vaelab.groups import SWEEP_KEYS, seed_group, sweep_group

    if not args.sweep:
        return [config] if args.seeds is None else seed_group(config, args.seeds)
    from vaelab.resolve import SHORT_KEYS

    sweep: dict[str, list[float]] = {}
    for key, values in args.sweep:
        if key in sweep:
            raise VaelabError(f"--sweep {key} is given twice; list all its values in one")
        # a flag that sets the swept field too would be silently overridden: refuse it
        path = SWEEP_KEYS.get(key, key)
        for name, value in settings.items():
            if value is not None and SHORT_KEYS.get(name, name) == path:
                flag = f"--set {name}" if "." in name else f"--{name.replace('_', '-')}"
                raise VaelabError(f"--sweep {key} and {flag} both set {path}; drop one")
        sweep[key] = values
    return sweep_group(config, sweep, args.seeds)


def _train_group(args: argparse.Namespace, config: Any, settings: dict[str, Any]) -> int:
    from vaelab.runs import train_group

    group, kind = _configs_of(args, config, settings), "sweep" if args.sweep else "seeds"
    out = args.out or Path("runs") / f"{config.preset or 'custom'}-{kind}"
    runs = train_group(group, out, force=args.force, progress=not args.quiet,
                       figures=not args.no_figures)
    _report_group(runs)
    _write_report(args, runs, out, _group_title(out, runs))
    return 0


def _group_title(out: Path, runs: list[Any]) -> str:
    return f"vaelab group {out.name} ({len(runs)} models)"


def _report_compile(summary: dict[str, Any]) -> None:
    """Say what compiling the step took (spent before the training clock started), or why
    it fell back to the eager step."""
    handoff = summary.get("compile_handoff")
    background = str(summary.get("compile_background", ""))
    if summary.get("compile_note"):  # (a failed build: the run trained on eagerly)
        print(f"note: {summary['compile_note']}", file=sys.stderr)
    elif handoff:
        how = ("built in a second process meanwhile" if background == "built" else
               f"built at the hand-off; the second process {background}" if background else
               "loaded from the cache")
        print(f"the first {handoff:,} steps trained eagerly, then the compiled step ({how}; "
              f"{summary.get('compile_wait_seconds', 0):.1f} s waited for it, off the "
              "training clock)")
    elif summary.get("compile_cache") == "loaded":
        print(f"loaded the compiled training step from the cache in "
              f"{summary['compile_seconds']:.2f} s (--compile off trains eagerly)")
    elif summary.get("compiled") and summary.get("compile_seconds") is not None:
        print(f"compiled the training step in {summary['compile_seconds']:.1f} s, before "
              "the training clock started (--compile off trains eagerly)")


def _report_restarts(summary: dict[str, Any]) -> None:
    """Say which initial weights the run trained, where it tried several."""
    from vaelab.training.restarts import restart_words

    words = restart_words(summary)
    if words:
        print(words)


def _report_validation(summary: dict[str, Any]) -> None:
    """Say which step's weights the run kept, where it chose them on rows set aside."""
    from vaelab.describe import kept_words

    words = kept_words(summary)
    if words:
        print(words)


def _report_group(runs: list[Any]) -> int:
    s = runs[0].summary
    print(f"trained {len(runs)} models x {s['steps']} steps in {s['train_seconds']:.1f} s "
          f"({s['group']['model_steps_per_second']:.0f} model-steps/s, {s['device']})")
    _report_compile(s)
    for run in runs:  # each directory is named by the settings that differ
        f = run.summary["final"]
        v = run.summary.get("validation") or {}
        kept = (f", weights of step {v['best_step']:,} (best on its validation rows)"
                if v.get("kept") == "best" else "")
        r = run.summary.get("restarts") or {}
        if r.get("candidates", 1) > 1:
            kept += f", initial weights {r['chosen']} of {r['candidates']} tried"
        print(f"  {run.path.name}: final loss {f['loss']:.4f}, "
              f"-ELBO {f['neg_elbo']:.3f} nats/point{kept} -> {run.path}")
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from vaelab.sweep.driver import check_address, plan_sweep, require_ray, resume, start

    settings: dict[str, Any] = {k: getattr(args, k) for k in _TRAIN_FLAGS}
    settings.update(dict(args.set))
    if args.resume is not None:
        given = [f"--{k.replace('_', '-')}" for k, v in settings.items() if v is not None]
        given += [f"--{k.replace('_', '-')}" for k in ("preset", "config", "out", "searcher",
                                                        "trials", "seeds", "metric")
                  if getattr(args, k) is not None]
        given += ["--search"] if args.search else []
        given += ["--early-stop"] if args.early_stop else []
        if given:
            raise VaelabError(f"--resume finishes a sweep with its saved settings; drop "
                              f"{', '.join(given)}")
        require_ray()
        check_address(args.address)
        return resume(args.resume, args.address)
    if args.out is None:
        raise VaelabError("name the sweep's directory with --out DIR")
    from vaelab.resolve import build_config

    base = build_config(args.preset, args.config, settings)
    plan = plan_sweep(base, args.search, searcher=args.searcher, trials=args.trials,
                      metric=args.metric, seed=base.train.seed, seeds=args.seeds,
                      early_stop=args.early_stop, eval_n=args.eval_n, eval_k=args.eval_k,
                      max_failures=args.max_failures,
                      fixed={k: v for k, v in settings.items() if v is not None})
    require_ray()
    check_address(args.address)
    return start(args.out, plan, args.address)


def cmd_sample(args: argparse.Namespace) -> int:
    from vaelab.devices import resolve_device
    from vaelab.runs import load_run, points_to_csv, write_points

    resolve_device(args.device)
    if args.output is not None:  # a path that cannot be written is named before any work
        from vaelab.fileio import check_output

        check_output(args.output, "-o", (".csv", ".npy"))
    run = load_run(args.run, frames=False)
    from vaelab.sizes import check_fits, sample_bytes

    check_fits(sample_bytes(run.config, args.n), f"-n {args.n}", "to sample")
    noise = {"auto": None, "on": True, "off": False}[args.decoder_noise]
    points = run.sample(args.n, seed=args.seed, device=args.device, noise=noise)
    if args.output is None:  # the data file's own column names, else x0, x1, ...
        sys.stdout.write(points_to_csv(points.numpy(), names=run.columns))
    else:
        write_points(points, args.output, names=run.columns)
        print(f"wrote {args.n} points to {args.output}", file=sys.stderr)
    return 0


def _load_on(path: Path, device: str, frames: bool = False):  # noqa: ANN202
    from vaelab.devices import resolve_device
    from vaelab.runs import load_run

    dev = resolve_device(device)
    run = load_run(path, frames=frames)
    run.model.to(dev)
    return run


def cmd_logp(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from vaelab.data.files import as_float32, read_points
    from vaelab.estimators import log_density_wide
    from vaelab.fileio import atomic_write_text
    from vaelab.runs import points_to_csv

    if args.output is not None:
        from vaelab.fileio import check_output

        check_output(args.output, "-o")
    run = _load_on(args.run, args.device)
    points = read_points(args.input)
    if points.shape[1] != run.model.in_channels:
        raise VaelabError(f"{args.input} has {points.shape[1]} columns but the model was "
                          f"trained on {run.model.in_channels}-dimensional data")
    try:
        logp, far = log_density_wide(run.model, torch.from_numpy(as_float32(args.input, points)),
                                     args.estimator, k=args.k, seed=args.seed)
    except OverflowError as exc:
        raise VaelabError(f"{args.input}: {exc}") from None
    if far:
        print(f"note: {len(far)} row(s) (the first: row {far[0] + 1}) lie so far outside the "
              f"data that the {args.estimator} estimate overflows there; their log p is "
              f"estimated by prior Monte Carlo (K={args.k}) instead", file=sys.stderr)
    logp = logp.numpy()
    text = points_to_csv(np.column_stack((points, logp)), names=[*run.columns, "log_p"])
    if args.output is None:
        sys.stdout.write(text)
    else:
        atomic_write_text(args.output, text)
        print(f"wrote {len(logp)} log-densities ({args.estimator}, K={args.k}) to "
              f"{args.output}", file=sys.stderr)
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from vaelab.evaluation import evaluate, format_report
    from vaelab.fileio import atomic_write_text
    from vaelab.results import DENSITY_FILE, EVALUATION_FILE, save_density

    if args.json is not None:
        from vaelab.fileio import check_output

        check_output(args.json, "--json")
    run = _load_on(args.run, args.device, frames=True)  # frames fix the density plot's axes
    from vaelab.sizes import check_fits, points_bytes

    check_fits(4 * points_bytes(args.n, run.model.in_channels), f"--n {args.n}", "to evaluate")
    report = evaluate(run, n=args.n, k=args.k, seed=args.seed, input_path=args.input,
                      metrics=not args.no_metrics, baselines=args.baselines,
                      data_path=args.data)
    print(format_report(report))
    if args.json is not None:
        atomic_write_text(args.json, json.dumps(report, indent=2) + "\n")
    _keep_result(args.run, EVALUATION_FILE, report, run.model)
    if not args.no_figures and run.model.in_channels == 2:
        from vaelab.evaluation import density_grid
        from vaelab.plots.render import render_density

        grid = density_grid(run, data_path=args.data)
        _keep(lambda: save_density(args.run / DENSITY_FILE, grid, run.model), DENSITY_FILE)
        _keep(lambda: print(render_density(run, grid=grid)), "figures/density.png")
    return 0


def _keep(write: Any, name: str) -> None:
    """Save a result into the run directory for ``vaelab report``; a run directory that
    cannot be written to costs the report that result, not the command."""
    try:
        write()
    except OSError as exc:
        print(f"note: could not save {name} into the run for vaelab report: "
              f"{exc.strerror or exc}", file=sys.stderr)


def _keep_result(run_dir: Path, name: str, result: dict[str, Any], model: Any) -> None:
    from vaelab.results import save_result

    _keep(lambda: save_result(run_dir / name, result, model), name)


def cmd_convergence(args: argparse.Namespace) -> int:
    from vaelab.evaluation import convergence, format_convergence
    from vaelab.fileio import FIGURE_SUFFIXES, atomic_write_text, check_output
    from vaelab.plots.convergence import draw_convergence
    from vaelab.plots.style import save_figure

    out = args.output or args.run / "figures" / "convergence.png"
    check_output(out, "-o" if args.output else "the plot (-o)", FIGURE_SUFFIXES)
    if args.json is not None:
        check_output(args.json, "--json")
    run = _load_on(args.run, args.device)
    result = convergence(run, n_points=args.points, ks=tuple(args.ks), repeats=args.repeats,
                         seed=args.seed)
    print(format_convergence(result))
    if args.json is not None:
        atomic_write_text(args.json, json.dumps(result, indent=2) + "\n")
    from vaelab.results import CONVERGENCE_FILE

    _keep_result(args.run, CONVERGENCE_FILE, result, run.model)
    print(save_figure(draw_convergence(result), out))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from vaelab.report import build_report
    from vaelab.runs import REPORT_FILE, load_for_report

    if args.output is None and len(args.runs) > 1:
        raise VaelabError("several runs make one comparison page: name its file with -o FILE")
    if args.output is not None and args.output.is_dir():
        raise VaelabError(f"-o {args.output} is a directory: give the HTML file to write")
    runs, title = load_for_report(args.runs)
    out = args.output or args.runs[0] / REPORT_FILE
    report = build_report(runs, title)
    print(f"wrote {report.save(out)} ({report.size / 1e6:.1f} MB)")
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    from vaelab.fileio import check_writable_dir
    from vaelab.runs import load_run

    out = args.out or args.run / "figures"
    if out.exists() and not out.is_dir():
        raise VaelabError(f"--out {out} exists and is not a directory: give a folder")
    check_writable_dir(out, f"the figures into {out}")
    run = load_run(args.run)
    for path in run.plot(args.out):
        print(path)
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from vaelab.evaluation import test_data
    from vaelab.fileio import FIGURE_SUFFIXES, check_output
    from vaelab.plots.compare import draw_comparison, draw_pairs, select_columns
    from vaelab.plots.style import save_figure
    from vaelab.runs import load_run

    check_output(args.output, "-o", FIGURE_SUFFIXES)
    runs = [load_run(path) for path in args.runs]
    labels = args.labels.split(",") if args.labels else [
        f"{r.config.preset or 'custom'} ({p.name})" for r, p in zip(runs, args.runs, strict=True)]
    if len(labels) != len(runs):
        raise VaelabError(f"--labels has {len(labels)} names for {len(runs)} runs")
    names = {r.config.data.name for r in runs}
    if len(names) > 1:
        raise VaelabError(f"the runs were trained on different data: {', '.join(sorted(names))}")
    columns = runs[0].columns  # the data file's own names, else x0, x1, ...
    chosen, note = select_columns(args.columns, columns)
    real = test_data(runs[0], args.n, args.seed).points.numpy()
    samples = [(label, r.sample(len(real), seed=args.seed + 1).numpy()[:, chosen])
               for label, r in zip(labels, runs, strict=True)]
    title = runs[0].config.data.name
    if len(chosen) < len(columns):
        title += f" (columns {', '.join(columns[i] for i in chosen)} of {len(columns)})"
    if len(chosen) == 2:
        fig = draw_comparison(real[:, chosen], samples, title=title,
                              columns=(columns[chosen[0]], columns[chosen[1]]))
    else:
        fig = draw_pairs(real[:, chosen], samples, [columns[i] for i in chosen], title=title,
                         note=note)
    if note:
        print(f"note: {note}", file=sys.stderr)
    print(save_figure(fig, args.output))
    return 0


COMMANDS = {"train": cmd_train, "sample": cmd_sample, "logp": cmd_logp,
            "evaluate": cmd_evaluate, "convergence": cmd_convergence, "plot": cmd_plot,
            "compare": cmd_compare, "report": cmd_report, "sweep": cmd_sweep}


def main(argv: Sequence[str] | None = None) -> int:
    from vaelab.signals import SignalExit, exit_on_signals

    command = "vaelab"
    try:  # SIGINT/SIGTERM from the first moment on: one line (signals.py)
        with exit_on_signals():
            parser = build_parser()
            args = parser.parse_args(argv)
            command = f"vaelab {args.command}"
            return _run(args)
    except SignalExit as exc:
        print(f"{command}: {exc}", file=sys.stderr)
        return 128 + exc.signum


def _os_error_line(exc: OSError) -> str:
    """An OSError as one line: what could not be read or written, and why (a temporary
    file's name is given as its folder, where the write was going)."""
    name = exc.filename
    where = ""
    if name is not None:
        path = Path(str(name))
        if path.name.startswith(".") and ".tmp" in path.name:
            path = path.parent
        where = f" {path}"
    return f"cannot write or read{where}: {exc.strerror or exc}"


def _run(args: argparse.Namespace) -> int:
    try:
        if args.command != "sweep":  # (the sweep's driver computes nothing with torch,
            # and does not import it; each trial takes one thread)
            from vaelab.devices import choose_threads

            choose_threads(args.threads)
        return COMMANDS[args.command](args)
    except TrainingInterrupted as exc:
        print(f"vaelab {args.command}: {exc}", file=sys.stderr)
        return 128 + exc.signum
    except VaelabError as exc:
        print(f"vaelab {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"vaelab {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `vaelab sample RUN | head`
        return 0
    except OSError as exc:  # a full disk, a read-only folder, ...: one line, not a traceback
        print(f"vaelab {args.command}: error: {_os_error_line(exc)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
