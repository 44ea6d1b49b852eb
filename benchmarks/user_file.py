"""A user's own file: does the default preset learn a Swiss roll of another noise and scale
as well as the built-in one, with no tuning?

The file holds ``--points`` draws of the 2-D Swiss roll with noise ``--noise``, mapped by
x -> ``--scale`` * x + ``--shift`` (so its true density is known exactly: the roll's, with the
Jacobian -2 log scale). ``vaelab train --data FILE`` (the default preset, nothing else set) trains
on its 80% training split; the model is then scored on 10,000 *fresh* draws of the same
distribution: the paired NLL gap mean[log p_true - log q] (IWAE, K = 1000, nats per point, in
the file's units) and the classifier two-sample accuracy against those points.

Run::

    python benchmarks/user_file.py --write
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from benchmarks_md import machine, update_section

from vaelab.data.swiss_roll import SwissRoll2D
from vaelab.estimators import log_density
from vaelab.metrics import c2st_accuracy, knn_precision_recall
from vaelab.resolve import build_config
from vaelab.runs import train_run


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--noise", type=float, default=0.6)
    ap.add_argument("--scale", type=float, default=25.0)
    ap.add_argument("--shift", type=float, default=-40.0)
    ap.add_argument("--points", type=int, default=50_000, help="points in the file")
    ap.add_argument("--n", type=int, default=10_000, help="fresh test points")
    ap.add_argument("--k", type=int, default=1000, help="IWAE samples per test point")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="a config field to change (e.g. data.decorrelate=false); repeatable")
    ap.add_argument("--write", action="store_true", help="update BENCHMARKS.md")
    args = ap.parse_args(argv)
    extra = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            sys.exit(f"user_file.py: error: --set {item!r} is not KEY=VALUE")
        extra[key] = json.loads(value) if value in ("true", "false", "null") else value
    if args.noise <= 0 or args.scale <= 0 or args.points < 10 or args.n < 10:
        sys.exit("user_file.py: error: --noise and --scale must be > 0, --points and --n >= 10")
    source = SwissRoll2D(args.noise)
    g = torch.Generator().manual_seed(10_000 + args.seed)
    data = source.sample(args.points, g).double() * args.scale + args.shift
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "roll.npy"
        np.save(path, data.numpy())
        cfg = build_config(None, None, {"data": str(path), "seed": args.seed, "frame_every": 0,
                                        **extra})
        run = train_run(cfg, None, progress=False, figures=False)
    test = source.sample(args.n, g).double() * args.scale + args.shift
    log_p = source.log_prob((test - args.shift) / args.scale) - 2 * math.log(args.scale)
    log_q = log_density(run.model, test.float(), "iwae", k=args.k, seed=args.seed)
    diff = log_p - log_q
    gap, se = diff.mean().item(), diff.std().item() / math.sqrt(len(diff))
    gen = run.sample(args.n, seed=args.seed + 1).numpy()
    c2st = c2st_accuracy(gen, test.numpy(), seed=args.seed)
    pr = knn_precision_recall(gen, test.numpy())
    model = run.model
    if model.std_head is None:
        sigma, what = model.obs_std(), "learned decoder sigma"
    else:  # sigma(z): its mean over z ~ p(z)
        with torch.no_grad():
            z = model.sample_prior(10_000, torch.Generator().manual_seed(args.seed))
            sigma, what = model.decode_params_internal(z)[1].mean(0), "decoder sigma(z), mean"
    sigma = (sigma * model.data_scale).tolist()
    # per column, or per principal axis where the model decorrelates (data.decorrelate)
    along = "principal axis" if model.data_rotation is not None else "column"
    body = "\n".join([
        f"Machine: {machine()}.",
        "",
        f"A file of {args.points} points: the Swiss roll with noise {args.noise}, times "
        f"{args.scale:g}, plus {args.shift:g} (seed {args.seed}); `vaelab train --data FILE` "
        f"with the default preset and {'nothing else set' if not extra else extra} (80% of "
        "the file trains, standardised in the model); scored on "
        f"{args.n} fresh points of the same distribution (IWAE, "
        f"K = {args.k}).",
        "",
        "| | value |",
        "|---|---|",
        f"| true entropy H (file units) | {-log_p.mean().item():.4f} nats |",
        f"| NLL gap (paired) | {gap:.4f} ± {se:.4f} nats |",
        f"| C2ST accuracy | {c2st:.3f} |",
        f"| precision / recall (k = 3) | {pr.precision:.3f} / {pr.recall:.3f} |",
        f"| {what} per {along} (file units) | {sigma[0]:.3f}, {sigma[1]:.3f} "
        f"(true noise x scale: {args.noise * args.scale:.3f}) |",
        f"| training | {run.summary['steps']} steps, {run.summary['train_seconds']:.1f} s |",
    ])
    print(body)
    if args.write:
        update_section("user_file", "A user's file: another noise and scale, no tuning",
                       "python benchmarks/user_file.py --write", body)


if __name__ == "__main__":
    main()
