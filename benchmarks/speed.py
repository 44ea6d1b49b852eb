"""Training speed: vaelab against plain PyTorch, the seed's loop and pythae; many models at
once; and time to quality.

Every number is the training loop alone (after imports and setup), on this machine, measured
in this process one after another (nothing else should run meanwhile), on one thread (vaelab's
default) unless said:

* **steps/s and samples/s** of the seed's model and settings (Swiss roll noise 0.3,
  SimpleVAE 2-128-128-2, MSE + KLD, Adam 2e-2, StepLR(1000, 0.7)) at batch 128, 512 and 4096:
  - ``vaelab``: :func:`vaelab.training.loop.fit` on the ``seed`` preset as ``vaelab train``
    trains its 10,000 steps (``--compile auto``, which compiles them: here ``on``, since
    these runs are shorter): data drawn on the device, the explicit step with Adam compiled
    ahead of time (built or loaded before the clock starts), one host synchronisation per
    100 steps, the divergence guard on;
  - ``vaelab, eager``: the same with ``--compile off`` (the explicit step op by op, fused
    Adam);
  - ``vaelab, autograd``: the same with ``--gradients autograd`` (backpropagation through
    the model's own forward and loss);
  - ``plain PyTorch``: the same network in a textbook loop: a ``DataLoader`` (shuffled) over a
    ``TensorDataset`` of pre-drawn points, ``torch.optim.Adam`` with its defaults, ``StepLR``,
    ``loss.item()`` every step;
  - ``seed loop``: the blog's loop logic (a fresh scikit-learn ``make_swiss_roll`` batch every
    step, list outputs, a loss dict, three ``.item()`` per step), from seed_walltime.py;
  - ``pythae``: ``TrainingPipeline`` with a ``VAE`` built on the same encoder and decoder, one
    epoch over pre-drawn points (only when pythae is installed: ``pip install -e .[bench]``).
* **the headline**: the seed preset at batch 512 (compiled, as it trains by default)
  against the seed's loop, from interleaved pairs of runs.
* **many models at once**: aggregate model-steps/s of M = 1, 8, 64 seed-preset models trained
  by :func:`vaelab.training.loop.fit_group` (batched weights, eager), at batch 128 and 512,
  against the eager single-model loop; the
  cost of 8 default-preset models against one, explicit gradients against vmap + autograd; and
  the cost of a step of 8 models against one model's, from interleaved pairs of runs.
* **the default preset**: its steps/s with explicit gradients and with autograd.
* **the BLAS limit and contention** (first; ``--only limit`` runs it alone): the seed preset
  at batch 512 against its step's matrix products replayed alone (blas_limit.py), its FLOPs,
  the GEMM rate at each of its shapes, and the ratios to the seed's loop and to pythae, idle
  and with one other busy process, from interleaved rounds.
* **threads**: vaelab at batch 512 with its default one thread and with all cores.
* **compiling**: the explicit step of both presets eager against compiled (``--compile on``:
  ahead of time, vaelab.training.aot), from interleaved pairs, and the seconds to build it
  in a new process with an empty cache and to load it from the filled one; and the seed
  model's autograd step (forward + loss + backward + fused Adam) eager against
  ``torch.compile`` (inductor), at batch 512.
* **time to quality**: the ``default`` preset trained with ``--time-limit T`` for several T
  (``--compile auto``), and with 10 s eagerly, then scored by
  :func:`vaelab.evaluation.evaluate` (10,000 test points): C2ST accuracy (target <= 0.55
  within 10 s) and the NLL gap.

Run::

    python benchmarks/speed.py            # print the tables (about 10 minutes on 2 cores)
    python benchmarks/speed.py --write    # and update BENCHMARKS.md
    python benchmarks/speed.py --quick    # a smoke run with tiny step counts
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import time

import numpy as np
import torch
from benchmarks_md import machine, update_section
from blas_limit import flops, measure, step_products
from seed_walltime import seed_loop

from vaelab.data.swiss_roll import SwissRoll2D
from vaelab.devices import DEFAULT_THREADS, make_generator
from vaelab.evaluation import evaluate
from vaelab.groups import seed_group
from vaelab.models import SimpleVAE
from vaelab.objectives import seed_loss
from vaelab.resolve import build_config
from vaelab.runs import Run
from vaelab.training.loop import fit, fit_group

BATCHES = (128, 512, 4096)
#: the fidelity threshold of time to quality (issue 5): classifier two-sample accuracy
C2ST_THRESHOLD = 0.55


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def steps_for(batch: int, quick: bool) -> int:
    """Enough steps for a few seconds of training at each batch size."""
    if quick:
        return 60
    return {128: 4000, 512: 3000, 4096: 400}.get(batch, 1000)


# -- the contenders -------------------------------------------------------------------------

def vaelab_fit(batch: int, steps: int, preset: str = "seed", gradients: str = "auto",
               compile: str = "off") -> dict:
    """The summary of a vaelab training loop (``train_seconds`` excludes the compilation)."""
    cfg = build_config(preset, settings={"batch_size": batch, "steps": steps, "device": "cpu",
                                         "frame_every": 0, "log_every": 100,
                                         "gradients": gradients, "compile": compile})
    return fit(cfg, progress=False).summary


def vaelab_rate(batch: int, steps: int, preset: str = "seed", gradients: str = "auto",
                compile: str = "off") -> float:
    """Steps/s of the training loop, eager unless ``compile`` says otherwise."""
    return steps / vaelab_fit(batch, steps, preset, gradients, compile)["train_seconds"]


def plain_rate(batch: int, steps: int, device: str = "cpu") -> float:
    """The seed's network in a textbook loop (on ``device``: gpu_speed.py uses it too)."""
    torch.manual_seed(0)
    points = SwissRoll2D(noise=0.3).sample(batch * steps, make_generator(0, device), device)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(points),
                                         batch_size=batch, shuffle=True, drop_last=True)
    model = SimpleVAE().to(device)
    opt = torch.optim.Adam(model.parameters(), lr=2e-2)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1000, gamma=0.7)
    total = 0.0
    t0 = time.perf_counter()
    for (x,) in loader:
        out = model(x)
        loss = seed_loss(out.x, out.x_hat, out.mu, out.log_var, 1.0).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        total += loss.item()
    return steps / (time.perf_counter() - t0)


def seed_loop_rate(batch: int, steps: int) -> float:
    seconds, _ = seed_loop(0, steps, batch)
    return steps / seconds


def pythae_rate(batch: int, steps: int) -> float | None:
    try:
        from pythae.models import VAE, VAEConfig
        from pythae.models.base.base_utils import ModelOutput
        from pythae.models.nn import BaseDecoder, BaseEncoder
        from pythae.pipelines import TrainingPipeline
        from pythae.trainers import BaseTrainerConfig
    except ImportError:
        return None
    import logging

    # pythae's modules set their own loggers to INFO, with handlers bound to the streams of
    # import time (which redirect_stdout below does not reach): quieted one by one
    for name in list(logging.root.manager.loggerDict):
        if name.startswith("pythae"):
            logging.getLogger(name).setLevel(logging.ERROR)
    net = SimpleVAE()

    class Encoder(BaseEncoder):
        def __init__(self) -> None:
            super().__init__()
            self.encoder, self.fc_mu, self.fc_var = net.encoder, net.fc_mu, net.fc_var

        def forward(self, x):  # noqa: ANN001, ANN202
            h = self.encoder(x)
            return ModelOutput(embedding=self.fc_mu(h), log_covariance=self.fc_var(h))

    class Decoder(BaseDecoder):
        def __init__(self) -> None:
            super().__init__()
            self.decoder_input, self.decoder = net.decoder_input, net.decoder
            self.final_layer = net.final_layer

        def forward(self, z):  # noqa: ANN001, ANN202
            return ModelOutput(
                reconstruction=self.final_layer(self.decoder(self.decoder_input(z))))

    points = SwissRoll2D(noise=0.3).sample(batch * steps, make_generator(0)).numpy()
    # pythae prints its configuration and a progress bar: silenced, outside the timing
    with tempfile.TemporaryDirectory() as tmp, open(os.devnull, "w") as sink, \
            contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        model = VAE(VAEConfig(input_dim=(2,), latent_dim=2, reconstruction_loss="mse"),
                    encoder=Encoder(), decoder=Decoder())
        cfg = BaseTrainerConfig(output_dir=tmp, learning_rate=2e-2,
                                per_device_train_batch_size=batch,
                                per_device_eval_batch_size=batch, num_epochs=1,
                                optimizer_cls="Adam", scheduler_cls="StepLR",
                                scheduler_params={"step_size": 1000, "gamma": 0.7},
                                no_cuda=True)
        pipeline = TrainingPipeline(training_config=cfg, model=model)
        t0 = time.perf_counter()
        pipeline(train_data=points)
        return steps / (time.perf_counter() - t0)


def group_rate(models: int, batch: int, steps: int, preset: str = "seed",
               gradients: str = "auto", compile: str = "auto") -> float:
    cfg = build_config(preset, settings={"batch_size": batch, "steps": steps, "device": "cpu",
                                         "frame_every": 0, "log_every": 100,
                                         "checkpoint_every": 0, "gradients": gradients,
                                         "compile": compile})
    results = fit_group(seed_group(cfg, models), progress=False)
    return models * steps / results[0].summary["train_seconds"]


def group_cost(models: int, batch: int, repeats: int, quick: bool, preset: str = "seed",
               gradients: str = "auto", compile: str = "off") -> list[float]:
    """The time of one step of ``models`` models at once against one single-model step, from
    ``repeats`` interleaved pairs (single loop, then group): each pair is measured within a few
    seconds, so a drift of this machine's speed moves both sides alike. ``compile`` applies
    to both sides (``on``: each side's step compiled ahead of time, before its clock)."""
    scale = 1 if preset == "seed" else 4  # the default preset's step is about 4x longer
    single_steps = 60 if quick else steps_for(batch, quick) // scale
    group_steps = 40 if quick else max(12_000 // models // scale, 60)
    ratios = []
    for _ in range(repeats):
        single = vaelab_rate(batch, single_steps, preset, compile=compile)
        ratios.append(models * single / group_rate(models, batch, group_steps, preset,
                                                   gradients, compile))
    return ratios


def compiled_explicit(preset: str, batch: int, steps: int, pairs: int) -> list[dict]:
    """Interleaved pairs of the explicit step eager, then compiled (``--compile on``): their
    steps/s (the compilation, before the training clock, is timed by :func:`compile_cost`)."""
    rows = []
    for _ in range(pairs):
        eager = vaelab_rate(batch, steps, preset)
        summary = vaelab_fit(batch, steps, preset, compile="on")
        rows.append({"eager": eager, "compiled": steps / summary["train_seconds"]})
    return rows


def compile_cost(preset: str, batch: int) -> tuple[float | None, float | None]:
    """Seconds to compile the explicit step in a new process (``vaelab train --compile on``):
    first with empty vaelab and Inductor caches (a machine's first build), then again with the
    caches that run filled (a load). None where the compilation failed."""
    import json
    import subprocess

    seconds: list[float | None] = []
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": os.path.join(tmp, "cache"),
               "VAELAB_CACHE_DIR": os.path.join(tmp, "vaelab-cache")}
        for attempt in ("cold", "warm"):
            out = os.path.join(tmp, attempt)
            subprocess.run([sys.executable, "-m", "vaelab", "train", "--preset", preset,
                            "--steps", "20", "--batch-size", str(batch), "--compile", "on",
                            "--device", "cpu", "--out", out, "--quiet", "--no-figures"],
                           env=env, check=False, capture_output=True)
            try:
                with open(os.path.join(out, "summary.json")) as f:
                    seconds.append(json.load(f).get("compile_seconds"))
            except OSError:
                seconds.append(None)
    return seconds[0], seconds[1]


def compile_rates(batch: int, steps: int) -> tuple[float, float | None, str]:
    """(eager steps/s, compiled steps/s or None, a note) for the seed model's autograd step
    (forward + loss + backward + fused Adam), compiled as a whole."""
    def make_step(compiled: bool):  # noqa: ANN202
        torch.manual_seed(0)
        model = SimpleVAE()
        model.configure_objective("seed_mse", 1.0)
        opt = torch.optim.Adam(model.parameters(), lr=2e-2, fused=True)
        gen = make_generator(1)
        source = SwissRoll2D(noise=0.3)

        def loss_of(x: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
            return model.loss(model(x, eps=eps)).loss

        fn = torch.compile(loss_of) if compiled else loss_of

        def step() -> None:
            x = source.sample(batch, gen)
            eps = torch.randn(batch, 2, generator=gen)
            loss = fn(x, eps)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        return step

    def rate(step) -> float:  # noqa: ANN001
        for _ in range(20):
            step()  # warm-up (and compilation)
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        return steps / (time.perf_counter() - t0)

    eager = rate(make_step(False))
    try:
        compiled = rate(make_step(True))
        note = ""
    except Exception as exc:  # noqa: BLE001 - report why compile is unavailable here
        compiled, note = None, f"torch.compile failed here: {type(exc).__name__}"
    return eager, compiled, note


def time_to_quality(limits: list[float], n: int, k: int, compile: str = "auto") -> list[dict]:
    """The default preset under ``--time-limit T`` for each T (``--compile`` as given: ``auto``
    compiles runs of 10 s and more), scored on n fresh test points."""
    rows = []
    for limit in limits:
        cfg = build_config("default", settings={"time_limit": limit, "device": "cpu",
                                                "frame_every": 0, "compile": compile})
        result = fit(cfg, progress=False)
        run = Run(result.config, result.model, result.metrics, result.frames, result.summary)
        report = evaluate(run, n=n, k=k, seed=0)
        c2st = report["sample_metrics"]["c2st_accuracy"]
        rows.append({"limit": limit, "steps": result.summary["steps"],
                     "compiled": result.summary["compiled"],
                     "c2st": c2st["value"], "c2st_floor": c2st["floor"],
                     "gap": report["nll_gap"], "gap_se": report["nll_gap_stderr"]})
        log(f"time limit {limit:g} s (compile {compile}): {result.summary['steps']} steps, C2ST "
            f"{c2st['value']:.3f}, gap {report['nll_gap']:.4f}")
    return rows


# -- the report ----------------------------------------------------------------------------

# -- the BLAS limit and contention -----------------------------------------------------------

@contextlib.contextmanager
def threads_set(count: int):  # noqa: ANN201
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextlib.contextmanager
def busy(load: bool):  # noqa: ANN201
    """One competing process spinning on a core (a shell loop, not Python threads) while the
    block runs, when ``load``."""
    import subprocess

    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if load else None
    try:
        if hog is not None:
            time.sleep(0.5)
        yield
    finally:
        if hog is not None:
            hog.kill()
            hog.wait()


def limit_section(quick: bool) -> str:
    """The seed preset at batch 512 against the BLAS limit of its step, and the ratios to the
    seed's loop and to pythae, idle and with one busy process, from interleaved rounds."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
    load_before = os.getloadavg()[0]  # other work on the machine, said with the figures
    batch, steps = 512, 200 if quick else 3000
    counts = [1] + ([cores] if cores > 1 else [])
    with threads_set(DEFAULT_THREADS):
        products = step_products("seed", batch)
        vaelab_rate(batch, 100, compile="on")  # build or load the package before any clock
    limits = {}
    for t in counts:
        with threads_set(t):
            limits[t] = measure(products, rounds=3 if quick else 7)
            log(f"limit, {t} thread(s): {limits[t].steps_per_second:.0f} steps/s, "
                f"{limits[t].gflops:.0f} GFLOP/s")
    shapes = []
    for product, n in sorted(products.items(), key=lambda kv: -flops(kv[0]) * kv[1]):
        with threads_set(DEFAULT_THREADS):
            one = measure({product: 1}, rounds=3, min_seconds=0.05 if quick else 0.1)
        shapes.append((product, n, one.gflops))
    rounds = 1 if quick else 3
    rows: dict[bool, list[dict[str, float | None]]] = {False: [], True: []}
    for _ in range(rounds):
        for load in (False, True):
            with busy(load):
                with threads_set(DEFAULT_THREADS):
                    row = {"vaelab": vaelab_rate(batch, steps, compile="on"),
                           "eager": vaelab_rate(batch, steps // 2, compile="off"),
                           "seed 1t": seed_loop_rate(batch, steps // 3),
                           "pythae 1t": pythae_rate(batch, steps // 3)}
                with threads_set(cores):  # torch's default: what the seed's code gets
                    row["seed"] = seed_loop_rate(batch, steps // (3 if not load else 30))
            rows[load].append(row)
            log(("busy " if load else "idle ") + ", ".join(
                f"{k} {v:.0f}" for k, v in row.items() if v is not None))

    def med(load: bool, key: str) -> float | None:
        values = [r[key] for r in rows[load] if r[key] is not None]
        return statistics.median(values) if values else None

    def span(load: bool, key: str) -> str:
        values = [r[key] for r in rows[load] if r[key] is not None]
        return ", ".join(f"{v:.0f}" for v in values) if values else "not installed"

    limit = limits[DEFAULT_THREADS]
    idle, loaded = med(False, "vaelab"), med(True, "vaelab")
    load_after = os.getloadavg()[0]
    lines = ["The seed preset at batch 512, as `vaelab train --preset seed` trains it (compiled "
             f"ahead of time, {DEFAULT_THREADS} thread: vaelab's default), against the "
             "fastest its step could run on this machine: its matrix products alone, "
             "recorded from a step and replayed back to back (`benchmarks/blas_limit.py`). "
             f"The step does {limit.flops / 1e6:.1f} MFLOP (2nkm per product):", "",
             "| product (shapes) | per step | MFLOP | GFLOP/s alone, 1 thread |",
             "|---|---|---|---|"]
    for (name, operands), n, rate in shapes:
        dims = " x ".join(str(list(o[0])) for o in operands[-2:])
        lines.append(f"| {name} {dims} | {n:g} | {flops((name, operands)) / 1e6:.2f} | "
                     f"{rate:.0f} |")
    lines += ["", "| threads | the products alone: GFLOP/s | the limit: steps/s |",
              "|---|---|---|"]
    lines += [f"| {t} | {lim.gflops:.0f} | {lim.steps_per_second:.0f} |"
              for t, lim in limits.items()]
    lines += ["", f"From {rounds} interleaved rounds (idle, then with one other process "
              "spinning on a core), steps/s of each loop; `seed loop` is the blog's loop "
              f"logic at torch's default threads ({cores}), `1t` at one thread:", "",
              "| loop | idle | one busy process |", "|---|---|---|"]
    for key, label in (("vaelab", "vaelab (compiled)"), ("eager", "vaelab, `--compile off`"),
                       ("seed", "seed loop"), ("seed 1t", "seed loop, 1t"),
                       ("pythae 1t", "pythae, 1t")):
        lines.append(f"| {label} | {span(False, key)} | {span(True, key)} |")
    assert idle is not None and loaded is not None
    lines += ["", f"Idle, vaelab reaches **{idle / limit.steps_per_second:.0%}** of the "
              f"{DEFAULT_THREADS}-thread limit (median; target 70 %)"
              + (f" and {idle / limits[cores].steps_per_second:.0%} of the {cores}-thread "
                 "one" if cores > 1 else "")
              + f"; it runs **{idle / med(False, 'seed'):.2f}x** the seed's loop "
              f"({idle / med(False, 'seed 1t'):.2f}x its 1-thread run; target 3x)"
              + (f" and {idle / med(False, 'pythae 1t'):.2f}x pythae"
                 if med(False, "pythae 1t") else "")
              + f". With one busy process it keeps **{loaded / idle:.0%}** of its idle rate "
              f"(target 50 %; the eager step {med(True, 'eager') / med(False, 'eager'):.0%}, "
              f"the seed's loop at {cores} threads {med(True, 'seed') / med(False, 'seed'):.0%})."
              f" The machine's 1-minute load average was {load_before:.2f} before these "
              f"measurements and {load_after:.2f} after (idle rounds add about 1)."]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="tiny step counts (a smoke run)")
    ap.add_argument("--write", action="store_true", help="update BENCHMARKS.md")
    ap.add_argument("--limits", default="5,10,15,20,55",
                    help="time limits (s) for time to quality (default 5,10,15,20,55)")
    ap.add_argument("--only", choices=("all", "limit"), default="all",
                    help="'limit': only the BLAS limit and contention section")
    args = ap.parse_args()
    quick = args.quick
    limit_body = limit_section(quick)
    print(limit_body)
    if args.write and not quick:
        update_section("speed_limit", "Speed on this machine: the BLAS limit and contention",
                       "python benchmarks/speed.py --write --only limit",
                       f"Machine: {machine()}.\n\n{limit_body}")
    if args.only == "limit":
        return
    threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
    torch.set_num_threads(DEFAULT_THREADS)  # as vaelab trains by default

    rates: dict[str, dict[int, float | None]] = {}
    def autograd_rate(batch: int, steps: int) -> float:
        return vaelab_rate(batch, steps, gradients="autograd")

    def compiled_rate(batch: int, steps: int) -> float:
        return vaelab_rate(batch, steps, compile="on")

    for batch in BATCHES:
        steps = steps_for(batch, quick)
        for name, fn in (("vaelab", compiled_rate), ("vaelab, eager", vaelab_rate),
                         ("vaelab, autograd", autograd_rate),
                         ("plain PyTorch", plain_rate), ("seed loop", seed_loop_rate),
                         ("pythae", pythae_rate)):
            value = fn(batch, steps if name != "seed loop" or batch < 4096 else steps // 2)
            rates.setdefault(name, {})[batch] = value
            log(f"batch {batch}: {name} "
                + (f"{value:.0f} steps/s" if value is not None else "not installed"))

    # the headline (issue 5: seed preset at batch 512 against the seed's loop), again from
    # interleaved pairs, so that a drift of the machine's speed moves both sides alike
    triples = [(compiled_rate(512, steps_for(512, quick)),
                seed_loop_rate(512, steps_for(512, quick)),
                pythae_rate(512, steps_for(512, quick))) for _ in range(1 if quick else 3)]
    pairs = [(a, b) for a, b, _ in triples]
    log("seed preset, batch 512, vaelab/seed loop/pythae: " + ", ".join(
        f"{a:.0f}/{b:.0f}/{c if c is None else round(c)}" for a, b, c in triples))

    group: dict[tuple[int, int], float] = {}
    for batch in (128, 512):
        for models in (1, 8, 64):
            steps = 40 if quick else max(3000 // models, 60)
            group[(models, batch)] = group_rate(models, batch, steps)
            log(f"group: M = {models}, batch {batch}: {group[(models, batch)]:.0f} "
                "model-steps/s")

    repeats = 1 if quick else 5
    costs = {batch: group_cost(8, batch, repeats, quick) for batch in (128, 512)}
    for batch, ratios in costs.items():
        log(f"group cost, M = 8, batch {batch}: " + ", ".join(f"{r:.2f}x" for r in ratios))
    # the default preset's groups (what `vaelab train --seeds 8` trains): explicit gradients
    # on stacked weights, against vmap + autograd
    default_costs = {g: group_cost(8, 128, 1 if quick or g == "autograd" else 3, quick,
                                   "default", g) for g in ("auto", "autograd")}
    log("default preset group cost, M = 8: " + "; ".join(
        f"{g} " + ", ".join(f"{r:.2f}x" for r in rs) for g, rs in default_costs.items()))
    # and as `vaelab train --seeds 8` trains them: both sides compiled ahead of time
    compiled_costs = group_cost(8, 128, 1 if quick else 3, quick, "default", "auto", "on")
    log("default preset group cost, M = 8, compiled: "
        + ", ".join(f"{r:.2f}x" for r in compiled_costs))

    # the default preset (batch 128, IWAE k = 4, mixture prior), explicit against autograd
    default_steps = 60 if quick else 6000
    preset_rates = {g: vaelab_rate(128, default_steps, "default", g)
                    for g in ("auto", "autograd")}
    log(f"default preset: explicit {preset_rates['auto']:.0f}, "
        f"autograd {preset_rates['autograd']:.0f} steps/s")

    with threads_set(threads):
        all_threads = vaelab_rate(512, steps_for(512, quick))
    log(f"threads: {threads} -> {all_threads:.0f} steps/s")
    eager, compiled, compile_note = compile_rates(512, 300 if quick else 2000)
    log(f"compile (autograd step): eager {eager:.0f}, compiled {compiled} steps/s "
        f"{compile_note}")
    compile_steps = 60 if quick else 3000
    explicit_compiled = {
        (preset, batch): compiled_explicit(preset, batch, compile_steps,
                                           1 if quick else 2)
        for preset, batch in (("seed", 512), ("default", 128))}
    for (preset, batch), rows in explicit_compiled.items():
        log(f"compile (explicit step), {preset} preset, batch {batch}: " + ", ".join(
            f"{r['eager']:.0f} -> {r['compiled']:.0f} steps/s" for r in rows))
    costs_of_compiling = {key: compile_cost(*key) for key in explicit_compiled}
    log("compile seconds (cold, warm): " + str(costs_of_compiling))

    limits = [float(v) for v in args.limits.split(",")]
    if quick:
        limits = [1.0]
    n_test, k_test = (2000, 50) if quick else (10_000, 1000)
    quality = time_to_quality(limits, n=n_test, k=k_test)
    # the same 10 s budget with the eager step, for comparison
    quality_eager = time_to_quality([1.0 if quick else 10.0], n=n_test, k=k_test,
                                    compile="off")

    lines = [f"Machine: {machine()}.", "",
             "Training loop only (no imports, setup or saving), the seed's model and settings; "
             "steps/s (samples/s = steps/s x batch), and vaelab's speed-up over each. `vaelab` "
             "trains as `vaelab train --preset seed` does: explicit gradients (`--gradients "
             "auto`), and its 10,000 steps compiled ahead of time with Adam folded in "
             "(`--compile auto`; `on` for these shorter runs), the package built or loaded "
             "before the clock starts; `vaelab, eager` is `--compile off`; `vaelab, autograd` "
             "backpropagates (`--gradients autograd`, eager).", "",
             "| loop | " + " | ".join(f"batch {b}" for b in BATCHES) + " |",
             "|---" * (len(BATCHES) + 1) + "|"]
    for name, row in rates.items():
        cells = []
        for b in BATCHES:
            v = row[b]
            if v is None:
                cells.append("not installed")
            elif name == "vaelab":
                cells.append(f"{v:.0f} steps/s ({v * b / 1e3:.0f}k samples/s)")
            else:
                cells.append(f"{v:.0f} (vaelab {rates['vaelab'][b] / v:.1f}x)")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    ratios = [a / b for a, b in pairs]
    lines += ["", f"The seed preset at batch 512 from {len(pairs)} interleaved pairs of runs "
              "(vaelab, then the seed's loop, a few seconds each): vaelab "
              + ", ".join(f"{a:.0f}" for a, _ in pairs) + " steps/s, the seed's loop "
              + ", ".join(f"{b:.0f}" for _, b in pairs)
              + f"; vaelab **{statistics.median(ratios):.2f}x** the seed's loop "
              f"(median; {min(ratios):.2f}-{max(ratios):.2f}x; target 3x, "
              "and >= 750 steps/s)."
              + (" pythae's pipeline, run third in each round: " + ", ".join(
                  f"{c:.0f}" for _, _, c in triples) + " steps/s; vaelab **"
                 f"{statistics.median(a / c for a, _, c in triples):.2f}x** pythae (median; "
                 f"{min(a / c for a, _, c in triples):.2f}-"
                 f"{max(a / c for a, _, c in triples):.2f}x; target 6x)."
                 if all(c for _, _, c in triples) else "")]
    lines += ["", f"The default preset (batch 128, IWAE k = 4, mixture prior, learned sigma; "
              f"{default_steps} steps of its schedule): {preset_rates['auto']:.0f} steps/s "
              f"with explicit gradients (`--gradients auto`), {preset_rates['autograd']:.0f} "
              f"with autograd ({preset_rates['auto'] / preset_rates['autograd']:.2f}x).",
              "", f"Threads (vaelab, eager, batch 512, idle): {DEFAULT_THREADS} thread "
              f"{rates['vaelab, eager'][512]:.0f} steps/s, {threads} threads "
              f"{all_threads:.0f} steps/s ({all_threads / rates['vaelab, eager'][512]:.2f}x). "
              f"vaelab trains on {DEFAULT_THREADS} thread unless told otherwise (`--threads`): "
              "under load, more threads than free cores collapse (the section above).", ""]
    lines += ["The compiled explicit step (`--compile on`: network passes, loss, gradients, "
              "Adam's update and the loop's tally exported once and compiled ahead of time by "
              "AOTInductor into a package cached on disk, `vaelab/training/aot.py`; the batch "
              "draw stays eager), "
              "from interleaved pairs of runs (eager, then compiled; "
              f"{compile_steps:,} steps each):", "",
              "| preset, batch | eager steps/s | compiled steps/s | speed-up | building it in a "
              "new process (empty caches) / loading it (cache filled) |",
              "|---|---|---|---|---|"]

    def secs(v: float | None) -> str:
        return "failed" if v is None else f"{v:.1f} s" if v >= 1 else f"{v:.3f} s"

    for (preset, batch), rows in explicit_compiled.items():
        ups = [r["compiled"] / r["eager"] for r in rows]
        cold, warm = costs_of_compiling[(preset, batch)]
        lines.append(f"| {preset}, {batch} | " + ", ".join(f"{r['eager']:.0f}" for r in rows)
                     + " | " + ", ".join(f"{r['compiled']:.0f}" for r in rows)
                     + f" | **{statistics.median(ups):.2f}x** | {secs(cold)} / {secs(warm)} |")
    lines += ["", "Building or loading happens before the training clock starts (`vaelab "
              "train` prints its seconds; summary.json keeps them as `compile_seconds`, and "
              "`compile_cache`: built or loaded). A step is built once per machine and "
              "shapes, then kept in `~/.cache/vaelab/steps` (here empty `VAELAB_CACHE_DIR` and "
              "`TORCHINDUCTOR_CACHE_DIR` folders, then the same ones again). `--compile auto` "
              "compiles both presets' steps (the closed-form seed loss and IWAE bound) on the "
              "CPU for runs of at least 10,000 steps and, if time-limited, 10 s: a first "
              "build costs about as much as one such run saves, and later runs load it in "
              "milliseconds.", ""]
    if compiled is not None:
        verdict = ("helps" if compiled > 1.05 * eager else
                   "does not help" if compiled < 0.95 * eager else "makes no difference")
        lines += [f"`torch.compile` of the autograd step instead (forward + loss + backward "
                  f"+ fused Adam of the seed model, batch 512): eager {eager:.0f} steps/s, "
                  f"compiled {compiled:.0f} steps/s ({compiled / eager:.2f}x): it {verdict} "
                  "here, so vaelab compiles the explicit step.", ""]
    else:
        lines += [f"`torch.compile` of the autograd step: {compile_note}; eager {eager:.0f} "
                  "steps/s.", ""]
    lines += ["Many models at once (seed preset, batched weights, explicit gradients, eager "
              "as these short runs are under `--compile auto`): aggregate model-steps/s; "
              "in brackets, the time of one group step against one step of the eager "
              "single-model loop above (`vaelab, eager`, same batch): the target is <= 3x for "
              "M = 8.", "",
              "| batch | single-model loop, eager | M = 1 (group code) | M = 8 | M = 64 |",
              "|---|---|---|---|---|"]
    for batch in (128, 512):
        single = rates["vaelab, eager"][batch]
        assert single is not None
        cells = [f"{single:.0f}", f"{group[(1, batch)]:.0f}"]
        for models in (8, 64):
            agg = group[(models, batch)]
            cells.append(f"{agg:.0f} (a step costs {models * single / agg:.1f}x one model's)")
        lines.append(f"| {batch} | " + " | ".join(cells) + " |")
    lines += ["", f"The same cost from {repeats} interleaved pairs (a single-model run of "
              "the seed preset, then a group of 8, each a few seconds, so that a drift of the "
              "machine's speed moves both alike): a step of 8 models costs "
              + "; ".join(f"**{statistics.median(r):.2f}x** one model's at batch {b} (median; "
                          f"{min(r):.2f}-{max(r):.2f}x)" for b, r in costs.items()) + "."]
    auto, autograd = default_costs["auto"], default_costs["autograd"]
    lines += ["", "The default preset's groups (`vaelab train --seeds 8`: batch 128, IWAE k = "
              "4, mixture prior), measured the same way: a step of 8 models costs "
              f"**{statistics.median(auto):.2f}x** one model's with explicit gradients on the "
              f"stacked weights (median of {len(auto)} pairs; {min(auto):.2f}-"
              f"{max(auto):.2f}x), against {statistics.median(autograd):.2f}x with vmap + "
              "autograd (`--gradients autograd`); both eager. Compiled ahead of time on both "
              "sides (`--compile on`, as `vaelab train --seeds 8` of the preset trains them "
              "under `auto`: the group's package computes its gradients, its optimizer steps "
              f"eagerly): **{statistics.median(compiled_costs):.2f}x** (median of "
              f"{len(compiled_costs)} pairs; {min(compiled_costs):.2f}-"
              f"{max(compiled_costs):.2f}x)."]
    lines += ["", "Time to quality: the `default` preset trained with `--time-limit T` on the "
              "Swiss roll (seed 0), scored on 10,000 fresh test points "
              f"(target: C2ST accuracy <= {C2ST_THRESHOLD} within 10 s). `--compile auto` "
              "compiles the step of the runs of 10 s and more before their clock starts "
              "(built once, then loaded from the cache: the seconds of the table above); the "
              "eager row is `--compile off`.", "",
              "| time limit | step | steps | C2ST accuracy (floor) | NLL gap (nats) |",
              "|---|---|---|---|---|"]
    for r in quality + quality_eager:
        step_kind = "compiled" if r["compiled"] else "eager"
        lines.append(f"| {r['limit']:g} s | {step_kind} | {r['steps']} | {r['c2st']:.3f} "
                     f"({r['c2st_floor']:.3f}) | {r['gap']:.3f} ± {r['gap_se']:.3f} |")
    met = [r["limit"] for r in quality if r["c2st"] <= C2ST_THRESHOLD]
    tried = ", ".join(f"{r['limit']:g}" for r in quality)
    lines += ["", f"Time to C2ST <= {C2ST_THRESHOLD}: " + (
        f"**{min(met):g} s**, the shortest of the limits tried ({tried} s) that reaches it."
        if met else f"not reached within the limits tried ({tried} s).")]
    body = "\n".join(lines)
    print(body)
    if args.write and not quick:
        update_section("speed", "Training speed", "python benchmarks/speed.py --write", body)


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
