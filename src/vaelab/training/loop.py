"""The training loop: lean, seeded, and silent on the host except every ``log_every`` steps.

Per step: set the learning rate and KL weight from the schedules, draw a batch on the device,
forward, loss, backward (or the explicit gradients of :mod:`vaelab.training.explicit`), fused
Adam. Loss terms are summed on the device and read back (one
synchronisation) only at logging steps. On CUDA that step's device work is captured once as a
CUDA graph and replayed (:mod:`vaelab.training.graphs`). With ``train.time_limit`` the loop
also stops when the training clock passes the limit, and the schedules follow the elapsed
fraction of it.
"""

from __future__ import annotations

import dataclasses
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import torch
from tqdm.auto import tqdm

from vaelab.config import RunConfig, TrainConfig
from vaelab.data import DataSource, FixedSetStream, FreshStream, build_source
from vaelab.data.files import FileSource, split_points
from vaelab.errors import ConfigError, RunError, TrainingDiverged, TrainingInterrupted
from vaelab.models import BaseVAE, build_model, check_model_name
from vaelab.objectives import LossTerms
from vaelab.training import schedules
from vaelab.training.checkpoint import Checkpoint, LoopState, restore_checkpoint, save_checkpoint
from vaelab.training.compiled import prepare_step, to_stderr
from vaelab.training.devices import derive_seeds, make_generator, resolve_device
from vaelab.training.explicit import (
    ExplicitStep,
    check_explicit,
    closed_form,
    iwae_closed_form,
    unsupported_reason,
)
from vaelab.training.frames import Frame
from vaelab.training.graphs import GraphedStep, graph_blocker, uses_cuda_graph
from vaelab.training.optim import LeanAdam, build_optimizer
from vaelab.training.tally import Tally

#: columns of the metrics file, in order
METRIC_FIELDS = ("step", "lr", "loss", "reconstruction", "kld", "neg_elbo", "elapsed_s")
#: points drawn from an infinite source to fit the standardisation
STANDARDIZE_POINTS = 100_000


class TrainResult(NamedTuple):
    config: RunConfig  # resolved (model.in_channels filled in)
    model: BaseVAE
    metrics: list[dict[str, float]]
    frames: list[Frame]
    summary: dict[str, object]


def resolve_config(config: RunConfig) -> RunConfig:
    """Fill in what the data decides (``model.in_channels``, ``data.noise``,
    ``data.standardize``) and check every name and the device, so that nothing is written for
    a run that cannot start."""
    return prepare(config)[0]


def prepare(config: RunConfig) -> tuple[RunConfig, DataSource]:
    """:func:`resolve_config`, also returning the data source it had to build (a data file is
    read once, not again by :func:`fit`)."""
    config.validate()
    device = resolve_device(config.train.device)
    source = build_source(config.data)
    if config.model.in_channels not in (None, source.dim):
        raise ConfigError(f"model.in_channels = {config.model.in_channels} but the data "
                          f"{config.data.name!r} has {source.dim} dimensions")
    is_file = isinstance(source, FileSource)
    if is_file and config.data.n_train is not None:
        raise ConfigError("data.n_train cannot be set for a data file: its training set is its "
                          "points minus the held-out data.test_fraction")
    data_cfg = dataclasses.replace(
        config.data,
        name=str(Path(config.data.name).resolve()) if is_file else config.data.name,
        noise=getattr(source, "noise", config.data.noise),
        standardize=is_file if config.data.standardize is None else config.data.standardize,
    )
    model_cfg = dataclasses.replace(config.model, in_channels=source.dim)
    resolved = dataclasses.replace(config, data=data_cfg, model=model_cfg)
    check_model_name(resolved.model.name)
    check_explicit(resolved)
    tc = resolved.train
    if device.type == "cuda" and tc.compile == "on" and tc.gradients == "explicit":
        raise ConfigError("train.gradients = 'explicit' cannot be combined with train.compile "
                          "= 'on' on CUDA (the compiled explicit step is built for the CPU; "
                          "on CUDA --cuda-graph replays the explicit step instead)")
    if resolved.train.cuda_graph == "on":
        fixed_set = is_file or resolved.data.n_train is not None
        reason = graph_blocker(resolved, device, fixed_set, uses_compile(resolved, device))
        if reason is not None:
            raise ConfigError(f"train.cuda_graph = 'on' cannot apply to this run: {reason}")
    return resolved, source


#: the shortest run (in steps, and in seconds when time-limited) that ``train.compile =
#: 'auto'`` compiles. On 2 CPU cores building the compiled step takes 12-24 s once per machine
#: and shapes (vaelab.training.aot); later runs load it in milliseconds. The compiled step
#: saves about 0.5 ms per step for the seed preset and 1.2 ms for the default preset
#: (benchmarks/speed.py): 10,000 steps save 5-12 s, so from the second such run on a machine
#: compiling is ahead, and a 10 s time limit gets about 1.6x as many steps into its clock
COMPILE_MIN_STEPS = 10_000
COMPILE_MIN_SECONDS = 10.0


def long_run(tc: TrainConfig) -> bool:
    """Whether a run is long enough for ``train.compile = 'auto'`` to compile it."""
    steps_ok = tc.steps is None or tc.steps >= COMPILE_MIN_STEPS
    time_ok = tc.time_limit is None or tc.time_limit >= COMPILE_MIN_SECONDS
    return steps_ok and time_ok


def uses_compile(config: RunConfig, device: torch.device, group: bool = False) -> bool:
    """Whether the step runs compiled.

    ``on``: always: on the CPU the explicit step (ahead of time, vaelab.training.aot, where
    the loss is in closed form; else under torch.compile, vaelab.training.compiled), else the
    forward pass and loss under torch.compile. ``auto``: the explicit step of a closed-form
    loss (the seed's, or the IWAE bound with the standard or mixture prior: both presets) on
    the CPU, for runs long enough to repay a first build (:func:`long_run`): the seed preset
    trains about 1.6x faster, the default preset 1.8x. The decision depends on the
    config only, never on what the cache holds, so a command's result does not depend on
    which runs came before it. Elsewhere ``auto`` is off: the compiled autograd step was
    slower than eager on the CPU (0.64-0.74x, benchmarks/speed.py); and on an H100 its
    reduce-overhead step (590-714 steps/s for the seed preset) was about 5x slower than
    explicit gradients replayed as one CUDA graph (3,373; benchmarks/gpu_speed.py)."""
    mode = config.train.compile
    if mode != "auto":
        return mode == "on"
    return (device.type == "cpu" and (closed_form(config) or iwae_closed_form(config))
            and uses_explicit(config, device, group) and long_run(config.train))


def uses_explicit(config: RunConfig, device: torch.device, group: bool = False) -> bool:
    """Whether the step's gradients are the explicit ones. ``auto`` takes them where the
    whole loss is in closed form too (the seed's loss: 1.2-1.4x faster on the CPU; the IWAE
    bound with the standard or mixture prior: about 1.15x, benchmarks/speed.py), compiled or
    not, except under ``train.compile = 'on'`` on CUDA, which compiles the autograd step
    (the compiled explicit step is built for the CPU). With the loss through autograd they
    gain only about 5%, so autograd stays the default there."""
    tc = config.train
    if tc.gradients == "autograd" or unsupported_reason(config, group) is not None:
        return False
    if tc.gradients == "explicit":
        return True
    return ((closed_form(config) or iwae_closed_form(config))
            and not (device.type == "cuda" and tc.compile == "on"))


def init_model(config: RunConfig, seed: int) -> BaseVAE:
    """Build the model with its weights drawn from ``seed``, leaving the global RNG as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build_model(config)


def training_points(config: RunConfig, source: DataSource, generator: torch.Generator,
                    device: torch.device) -> torch.Tensor | None:
    """The fixed training set, if there is one: a file's train split, or ``n_train`` draws."""
    if isinstance(source, FileSource):
        train, _ = split_points(source.points, config.data.test_fraction, seed=config.train.seed)
        return torch.as_tensor(train, dtype=torch.float32).to(device)
    if config.data.n_train is not None:
        return source.sample(config.data.n_train, generator, device)
    return None


def fit_standardization(model: BaseVAE, points: torch.Tensor) -> None:
    """shift = mean, scale = standard deviation of the training points (per dimension)."""
    p = points.double()
    scale = p.std(dim=0) if p.shape[0] > 1 else torch.ones(p.shape[1], dtype=p.dtype)
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))  # a constant column stays put
    model.set_standardization(p.mean(dim=0).float(), scale.float())


def fit(config: RunConfig, *, progress: bool = True,
        on_log: Callable[[dict[str, float]], None] | None = None,
        source: DataSource | None = None, checkpoint_path: Path | None = None,
        resume: Checkpoint | None = None) -> TrainResult:
    """Train a model as ``config`` says; ``on_log`` receives each metrics row as it is made.

    ``source``: the data source :func:`prepare` built with ``config`` (then ``config`` must be
    the resolved config it returned); without it, both are made here.
    ``checkpoint_path``: write a checkpoint there every ``train.checkpoint_every`` steps, at
    the end, and on SIGINT/SIGTERM (then :class:`TrainingInterrupted` is raised).
    ``resume``: a checkpoint of this config to continue from; the result is bit for bit the
    one an uninterrupted run gives (on the CPU, for a run stopped by its step count).

    A NaN or infinite loss or gradient raises :class:`TrainingDiverged` at the next metrics
    row or checkpoint, naming the step; a checkpoint is never written after it.
    """
    if source is None:
        config, source = prepare(config)
    tc, dc = config.train, config.data
    device = resolve_device(tc.device)
    seeds = derive_seeds(tc.seed)

    model = init_model(config, seeds.init).to(device)
    data_gen = make_generator(seeds.data, device)
    noise_gen = make_generator(seeds.noise, device)
    fixed = training_points(config, source, data_gen, device)
    stream = (FixedSetStream(fixed, tc.batch_size, data_gen) if fixed is not None
              else FreshStream(source, tc.batch_size, data_gen, device))
    if dc.standardize:
        fit_standardization(model, fixed if fixed is not None else source.sample(
            STANDARDIZE_POINTS, make_generator(seeds.standardize, device), device))
    optimizer = LeanAdam(build_optimizer(model.parameters(), config.optim, device))
    generators = {"data": data_gen, "noise": noise_gen}
    state = LoopState(0, 0.0, torch.zeros(len(LossTerms._fields)), 0, [], [])
    if resume is not None:
        if not config.matches_json(resume.config_json):
            raise RunError(f"{resume.path} was written for another config than this run's "
                           "config.json; it cannot be resumed")
        state = restore_checkpoint(resume, model=model, optimizer=optimizer,
                                   generators=generators, stream=stream)

    frame_every = config.display.frame_every

    def capture(step: int, x: torch.Tensor, z: torch.Tensor) -> Frame:
        # the same draw from the display stream at every frame (a learned prior moves it)
        with torch.no_grad():
            display_z = model.sample_prior(config.display.points,
                                           make_generator(seeds.display, device), device)
            gen = model.decode(display_z)
        return Frame(step, x.detach().cpu(), z.detach().cpu(), gen.cpu())

    metrics: list[dict[str, float]] = state.metrics
    frames: list[Frame] = state.frames
    count = state.count
    step = state.step
    # the loss terms summed since the last metrics row, and the first step whose loss was
    # not finite, on the device: no host synchronisation per step (read at metrics rows and
    # checkpoints; a checkpoint is written only when every loss so far was finite)
    tally = Tally.start(state.sums, step, device=device)
    sums = tally.sums
    params = list(model.parameters())
    samples = model.training_samples()
    compiled = uses_compile(config, device)
    explicit = ExplicitStep.for_model(model) if uses_explicit(config, device) else None
    loss_fn = _loss_function(model, samples, compiled and explicit is None, device)
    batch = stream.batch_size if isinstance(stream, FixedSetStream) else tc.batch_size
    eps_shape = ((samples,) if samples is not None else ()) + (batch, model.latent_dim)
    graphed = uses_cuda_graph(config, device, fixed is not None, compiled)
    # what changes between steps (learning rate, KL weight): Python numbers on the CPU; on
    # CUDA device tensors, set before each step, which a graph's replay reads (graphs.py),
    # graphed or not, so that the eager and the graphed step compute the same bits
    device_scalars = device.type == "cuda"
    kl_weight: float | torch.Tensor = config.loss.kld_weight
    if device_scalars:
        optimizer.use_device_lr()
        kl_weight = torch.full((), kl_weight, device=device)

    # the explicit step, compiled here (before the training clock starts) where it is to be
    prepared = prepare_step(explicit, compiled, device,
                            torch.zeros(batch, source.dim, device=device),
                            torch.zeros(eps_shape, device=device), kl_weight,
                            tc.compile == "on", to_stderr if progress else None, optimizer,
                            tally)
    step_fn, updates, tallies = prepared.step, prepared.updates, prepared.tallies

    def device_step() -> tuple[torch.Tensor, torch.Tensor]:
        """One step's device work: draw, gradients, Adam, tally. Returns (x, z)."""
        x = stream.next()
        # the reparameterisation noise, drawn here as the model would draw it
        eps = torch.randn(eps_shape, generator=noise_gen, device=device)
        if step_fn is not None:  # loss terms, and the gradients in .grad
            stacked, z = step_fn(x, eps, kl_weight)
        else:
            terms, z = loss_fn(x, eps, kl_weight)
            optimizer.zero_grad(set_to_none=True)
            terms.loss.backward()
            stacked = torch.stack(terms).detach()
        if not updates:  # (a compiled step with Adam folded in has updated the weights)
            optimizer.step()
        if not tallies:  # (nor does it need this)
            with torch.no_grad():
                tally.add(stacked)
        return x, z

    run_step = GraphedStep(device_step, device, [data_gen, noise_gen], graphed)
    max_steps, limit = tc.steps, tc.time_limit
    bar = tqdm(total=max_steps if max_steps is not None else round(limit), disable=not progress,
               unit="step" if max_steps is not None else "s", dynamic_ncols=True,
               mininterval=0.5, leave=True,
               initial=step if max_steps is not None else round(state.elapsed_s))
    last_saved = step if resume is not None else None

    def check_finite() -> None:
        """Raise TrainingDiverged if a loss since the last check, or a weight, is not finite.

        A non-finite gradient makes Adam's update, and so the weights and the next loss,
        non-finite: the weights are checked too, so it is caught even on the last step."""
        bad = int(tally.bad_step)
        weights_ok = bool(torch.isfinite(torch.stack(torch._foreach_norm(params))).all())
        if not bad and weights_ok:
            return
        where = f"at step {bad}" if bad else f"by step {step}"
        kept = (f"the last good checkpoint (step {last_saved}) is kept in {checkpoint_path}"
                if checkpoint_path is not None and last_saved is not None
                else "no checkpoint was written")
        raise TrainingDiverged(
            f"training diverged {where}: the loss or its gradient became NaN or infinite. "
            f"Likely cause: a learning rate too high for this model and data (optim.lr = "
            f"{config.optim.lr:g}; try a smaller --lr or an --lr-warmup), or data with "
            f"extreme values; {kept}")

    def save(finished: bool = False) -> None:
        nonlocal last_saved
        if checkpoint_path is None:
            return
        check_finite()
        loop_state = LoopState(step, time.perf_counter() - t0, sums, count, metrics, frames,
                               finished)
        save_checkpoint(checkpoint_path, config_json=config.to_json(), model=model,
                        optimizer=optimizer, generators=generators, stream=stream,
                        loop=loop_state, metric_fields=METRIC_FIELDS)
        last_saved = step

    model.train()
    kl_set = config.loss.kld_weight  # the value kl_weight holds on CUDA
    t0 = time.perf_counter() - state.elapsed_s
    started = step
    try:
        with StopOnSignal(enabled=checkpoint_path is not None) as stop:
            while True:
                elapsed = time.perf_counter() - t0
                prog = schedules.progress(step, max_steps, elapsed, limit)
                if (state.finished or step == max_steps
                        or (limit is not None and elapsed >= limit and step > started)):
                    break  # (normally the `last` step below ends the loop)
                if stop.signum is not None:
                    save()
                    raise TrainingInterrupted(
                        f"{stop.name} at step {step}: checkpoint saved in {checkpoint_path}; "
                        f"continue with: vaelab train --resume {checkpoint_path.parent}",
                        stop.signum)
                lr_now = config.optim.lr * schedules.lr_factor(config.optim, step, prog)
                optimizer.set_lr(lr_now)
                kl_now = schedules.kl_weight(config.loss, prog)
                if not device_scalars:
                    kl_weight = kl_now
                elif kl_now != kl_set:
                    kl_weight.fill_(kl_now)
                    kl_set = kl_now
                step += 1
                x, z = run_step()
                count += 1

                last = step == max_steps or (limit is not None and
                                             time.perf_counter() - t0 >= limit)
                if frame_every and (step == 1 or step % frame_every == 0) or last:
                    frames.append(capture(step, x, z if samples is None else z[0]))
                if step % tc.log_every == 0 or last:
                    check_finite()
                    means = (sums / count).tolist()  # the one host synchronisation per interval
                    row = {"step": step, "lr": lr_now,
                           **dict(zip(LossTerms._fields, means, strict=True)),
                           "elapsed_s": time.perf_counter() - t0}
                    metrics.append(row)
                    if on_log is not None:
                        on_log(row)
                    bar.update((step if max_steps is not None else round(row["elapsed_s"]))
                               - bar.n)
                    bar.set_postfix(lr=f"{lr_now:.2e}", loss=f"{row['loss']:.4f}",
                                    rec=f"{row['reconstruction']:.4f}", kld=f"{row['kld']:.4f}",
                                    refresh=False)
                    sums.zero_()
                    count = 0
                if last:
                    break
                if tc.checkpoint_every and step % tc.checkpoint_every == 0:
                    save()
            seconds = time.perf_counter() - t0
            save(finished=True)
    finally:
        bar.close()
    check_finite()
    model.eval()
    summary = {
        "steps": step,
        "stopped_by": "steps" if step == max_steps else "time_limit",
        "train_seconds": round(seconds, 3),
        "steps_per_second": round(step / seconds, 1) if seconds > 0 else None,
        "device": str(device),
        "gradients": "explicit" if explicit is not None else "autograd",
        "cuda_graph": graphed,
        **prepared.summary(compiled),
        "final": metrics[-1],
        "torch_version": torch.__version__,
    }
    if resume is not None:
        summary["resumed_from_step"] = resume.loop.step
    return TrainResult(config, model, metrics, frames, summary)


def _loss_function(model: BaseVAE, samples: int | None, compiled: bool,
                   device: torch.device) -> Callable[..., tuple[LossTerms, torch.Tensor]]:
    """(x, eps, kl_weight) -> (loss terms, z): the model's forward pass and loss.

    Eager, it is the model's own code, bit for bit what ``model(x, generator)`` computes
    when ``eps`` is the draw that generator would make. Compiled, the KL weight enters as a
    tensor (a Python float would be baked in and recompiled at every new value), and on CUDA
    ``mode="reduce-overhead"`` replays the captured kernels as CUDA graphs.
    """
    def eager(x: torch.Tensor, eps: torch.Tensor,
              kl_weight: float | torch.Tensor) -> tuple[LossTerms, torch.Tensor]:
        out = model(x, eps=eps, samples=samples)
        return model.loss(out, kld_weight=kl_weight), out.z

    if not compiled:
        return eager
    mode = "reduce-overhead" if device.type == "cuda" else "default"
    fn = torch.compile(eager, mode=mode, dynamic=False)
    weight = torch.zeros((), device=device)

    def call(x: torch.Tensor, eps: torch.Tensor,
             kl_weight: float) -> tuple[LossTerms, torch.Tensor]:
        weight.fill_(kl_weight)
        terms, z = fn(x, eps, weight)
        return LossTerms(*terms), z

    return call


class StopOnSignal:
    """While active, SIGINT and SIGTERM only set ``signum``; the loop saves and stops.

    A second signal while one is pending interrupts at once (KeyboardInterrupt). Signal
    handlers can be set only in the main thread; elsewhere (or ``enabled=False``) this does
    nothing and the signals keep their usual effect.
    """

    NAMES = {signal.SIGINT: "interrupted (SIGINT)", signal.SIGTERM: "terminated (SIGTERM)"}

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled and threading.current_thread() is threading.main_thread()
        self.signum: int | None = None
        self._old: dict[int, object] = {}

    @property
    def name(self) -> str:
        return self.NAMES.get(self.signum, "stopped")  # type: ignore[arg-type]

    def _handle(self, signum: int, frame: object) -> None:
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum

    def __enter__(self) -> StopOnSignal:
        if self.enabled:
            for sig in self.NAMES:
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._old.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]
