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
from vaelab.errors import VaelabError


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


def int_list(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
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


# -- the parser ----------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    from vaelab.data import source_names
    from vaelab.presets import DEFAULT_PRESET, preset_names

    parser = _Parser(prog="vaelab", description="Learn a distribution from samples with a VAE: "
                     "train a model, generate from it, draw what it learned.")
    parser.add_argument("--version", action="version", version=f"vaelab {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                parser_class=_Parser)

    t = sub.add_parser("train", help="train a model into a run directory",
                       description="Train a VAE. Settings come from the preset, then --config, "
                       "then the flags below (later wins). The resolved config is saved with "
                       "the run.")
    t.add_argument("--preset", help=f"starting configuration: {', '.join(preset_names())} "
                   f"(default: {DEFAULT_PRESET})")
    t.add_argument("--config", type=Path, help="TOML or JSON file with [data], [model], [loss], "
                   "[optim], [train], [display] tables")
    t.add_argument("--out", type=Path, help="run directory to create (default: runs/PRESET)")
    t.add_argument("--force", action="store_true",
                   help="replace the run in --out if it is not empty")
    g = t.add_argument_group("settings (override the preset and --config)")
    g.add_argument("--data", help=f"data source: {', '.join(source_names())}")
    g.add_argument("--noise", type=nonnegative_float, help="data noise (seed: 0.3)")
    g.add_argument("--n-train", type=positive_int,
                   help="fix a training set of N points (default: a fresh batch every step)")
    g.add_argument("--data-backend", choices=["torch", "sklearn"],
                   help="draw data with torch on the device (fast) or with scikit-learn")
    g.add_argument("--steps", type=positive_int, help="training steps")
    g.add_argument("--batch-size", type=positive_int, help="points per step")
    g.add_argument("--lr", type=positive_float, help="Adam learning rate")
    g.add_argument("--scheduler", choices=["step", "constant"], help="learning-rate schedule")
    g.add_argument("--step-size", type=positive_int, help="StepLR period in steps")
    g.add_argument("--gamma", type=positive_float, help="StepLR factor")
    g.add_argument("--latent-dim", type=positive_int, help="latent dimension")
    g.add_argument("--hidden-dims", type=int_list, help="hidden widths, e.g. 128,128")
    g.add_argument("--kld-weight", type=positive_float,
                   help="weight of the KL term; sets the decoder variance D*w/2")
    g.add_argument("--seed", type=nonnegative_int, help="fixes data, initialisation, noise")
    g.add_argument("--device", help="auto, cpu, cuda or cuda:N")
    g.add_argument("--log-every", type=positive_int, help="steps per metrics row")
    g.add_argument("--frame-every", type=nonnegative_int,
                   help="steps per display frame (0: final frame only)")
    g.add_argument("--set", type=key_value, action="append", default=[], metavar="KEY=VALUE",
                   help="any config field by dotted path, e.g. --set optim.gamma=0.5")
    t.add_argument("--no-figures", action="store_true", help="skip drawing the figures")
    t.add_argument("--quiet", action="store_true", help="no progress bar")

    s = sub.add_parser("sample", help="generate points from a trained run",
                       description="Decode z ~ N(0, I) into data space and write the points.")
    s.add_argument("run", type=Path, help="run directory")
    s.add_argument("-n", type=positive_int, default=1000, help="number of points (default 1000)")
    s.add_argument("-o", "--output", type=Path,
                   help="file to write: .csv (with a header row) or .npy (default: CSV to stdout)")
    s.add_argument("--seed", type=nonnegative_int, default=0, help="sampling seed (default 0)")
    s.add_argument("--device", default="cpu", help="auto, cpu, cuda or cuda:N (default cpu)")

    p = sub.add_parser("plot", help="redraw a run's figures",
                       description="Redraw the panels, the training GIF and the loss curves "
                       "from the run's saved frames and metrics.")
    p.add_argument("run", type=Path, help="run directory")
    p.add_argument("--out", type=Path, help="figure directory (default: RUN/figures)")
    return parser


_TRAIN_FLAGS = ("data", "noise", "n_train", "data_backend", "steps", "batch_size", "lr",
                "scheduler", "step_size", "gamma", "latent_dim", "hidden_dims", "kld_weight",
                "seed", "device", "log_every", "frame_every")


# -- commands -------------------------------------------------------------------------------

def cmd_train(args: argparse.Namespace) -> int:
    from vaelab.resolve import build_config
    from vaelab.runs import train_run

    settings: dict[str, Any] = {k: getattr(args, k) for k in _TRAIN_FLAGS}
    settings.update(dict(args.set))
    config = build_config(args.preset, args.config, settings)
    out = args.out or Path("runs") / (config.preset or "custom")
    run = train_run(config, out, force=args.force, progress=not args.quiet,
                    figures=not args.no_figures)
    s = run.summary
    final = s["final"]
    print(f"trained {s['steps']} steps in {s['train_seconds']:.1f} s "
          f"({s['steps_per_second']:.0f} steps/s, {s['device']}); final loss "
          f"{final['loss']:.4f} (reconstruction {final['reconstruction']:.4f}, "
          f"KLD {final['kld']:.4f}, -ELBO {final['neg_elbo']:.3f} nats/point)")
    print(f"run saved to {run.path}")
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    from vaelab.runs import load_run, points_to_csv, write_points
    from vaelab.training.devices import resolve_device

    resolve_device(args.device)
    run = load_run(args.run, frames=False)
    points = run.sample(args.n, seed=args.seed, device=args.device)
    if args.output is None:
        sys.stdout.write(points_to_csv(points.numpy()))
    else:
        write_points(points, args.output)
        print(f"wrote {args.n} points to {args.output}", file=sys.stderr)
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    from vaelab.runs import load_run

    run = load_run(args.run)
    for path in run.plot(args.out):
        print(path)
    return 0


COMMANDS = {"train": cmd_train, "sample": cmd_sample, "plot": cmd_plot}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except VaelabError as exc:
        print(f"vaelab {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"vaelab {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `vaelab sample RUN | head`
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
