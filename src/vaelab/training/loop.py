"""The training loop: M >= 1 models, one loop, seeded, and silent on the host between rows.

Per step: set the learning rate and KL weight from the schedules, draw a batch on the device,
take the step the plan chose (:mod:`vaelab.training.plan`, built by
:mod:`vaelab.training.step`: loss terms and gradients), Adam's update, and add the loss terms
to the tally on the device (:mod:`vaelab.training.tally`). The host reads the tally (one
synchronisation) only at metrics rows and checkpoints. On CUDA the step's device work can be
captured once as a CUDA graph and replayed (:mod:`vaelab.training.graphs`). With
``train.time_limit`` the loop also stops when the training clock passes the limit, and the
schedules follow the elapsed fraction of it.

One model is trained as itself; M models (a group: configs that differ only in seed, learning
rate or KL weight) are trained stacked (:mod:`vaelab.training.stack`). Randomness: model m's
initial weights (and the standardisation of an infinite source) come from its own seed, as in
a single run; a fresh batch and the noise for all models are drawn in one call per step from
the streams of the *first* config's seed (model m takes rows m*B..(m+1)*B), and a fixed
training set is each model's own, with its own permutation stream. A group checkpoints and
resumes as one (:mod:`vaelab.training.checkpoint`).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import NamedTuple

import torch
from tqdm.auto import tqdm

from vaelab.config import RunConfig
from vaelab.data import DataSource, FixedSetStream, FreshStream
from vaelab.data.pipeline import training_points
from vaelab.devices import Seeds, derive_seeds, make_generator, resolve_device
from vaelab.errors import TrainingDiverged, TrainingInterrupted
from vaelab.frames import Frame
from vaelab.groups import check_group
from vaelab.models import BaseVAE, build_model
from vaelab.objectives import LossTerms
from vaelab.resolve import prepare, resolve_config
from vaelab.signals import StopOnSignal
from vaelab.training import schedules
from vaelab.training.background import BackgroundBuild, build_spec, is_cached, step_key
from vaelab.training.checkpoint import (
    Checkpoint,
    LoopState,
    check_checkpoint,
    save_checkpoint,
    set_generator_states,
)
from vaelab.training.graphs import GraphedStep
from vaelab.training.optim import Adam, AdamState
from vaelab.training.pace import Pace
from vaelab.training.plan import EAGER, plan_for
from vaelab.training.restarts import (
    candidate_seed,
    choose,
    probe_score,
    probe_steps,
    restart_summary,
)
from vaelab.training.stack import ModelStack
from vaelab.training.step import Prepared, build_step, to_stderr
from vaelab.training.tally import Tally
from vaelab.training.validation import BestWeights, check_every, split_validation

#: columns of the metrics file, in order
METRIC_FIELDS = ("step", "lr", "loss", "reconstruction", "kld", "neg_elbo", "elapsed_s")
#: points drawn from an infinite source to fit the standardisation
STANDARDIZE_POINTS = 100_000


#: what :func:`watch_rows` asked to be called after each metrics row, in this context
_ROW_WATCHER: ContextVar[Callable[[int, list[BaseVAE]], None] | None] = ContextVar(
    "vaelab_row_watcher", default=None)


@contextmanager
def watch_rows(callback: Callable[[int, list[BaseVAE]], None]) -> Iterator[None]:
    """Within this block, every training loop calls ``callback(step, models)`` after each
    metrics row but the last, with the models' current weights (in training mode; a callback
    that evaluates them must leave their weights, modes and the loop's generators alone).
    ``vaelab sweep`` scores a held-out estimate there for early stopping, without a
    parameter threaded through every train function; a loop outside it is unchanged."""
    token = _ROW_WATCHER.set(callback)
    try:
        yield
    finally:
        _ROW_WATCHER.reset(token)


class TrainResult(NamedTuple):
    config: RunConfig  # resolved (model.in_channels filled in)
    model: BaseVAE
    metrics: list[dict[str, float]]
    frames: list[Frame]
    summary: dict[str, object]


def init_model(config: RunConfig, seed: int) -> BaseVAE:
    """Build the model with its weights drawn from ``seed``, leaving the global RNG as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build_model(config)


def fit_standardization(model: BaseVAE, points: torch.Tensor) -> None:
    """shift = mean, scale = standard deviation of the training points (per dimension); where
    the model decorrelates, per principal axis of them instead (PCA whitening, below)."""
    p = points.double()
    if model.data_rotation is not None:
        shift, rotation, scale = principal_axes(p)
        model.set_standardization(shift.float(), scale.float(), rotation.float())
        return
    scale = p.std(dim=0) if p.shape[0] > 1 else torch.ones(p.shape[1], dtype=p.dtype)
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))  # a constant column stays put
    model.set_standardization(p.mean(dim=0).float(), scale.float())


def principal_axes(points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(mean, R, scale) of ``points`` ``[N, D]`` (float64): R's columns are the covariance's
    eigenvectors, by decreasing variance, each signed so that its largest entry is positive
    (one answer for one data set), and scale the standard deviation along each (1 for a
    direction without spread, which stays put). (x - mean) @ R / scale is uncorrelated."""
    mean = points.mean(dim=0)
    centred = points - mean
    cov = centred.T @ centred / max(points.shape[0] - 1, 1)
    variances, vectors = torch.linalg.eigh(cov)  # ascending
    variances, vectors = variances.flip(0), vectors.flip(1)
    biggest = vectors.gather(0, vectors.abs().argmax(dim=0, keepdim=True))
    vectors = vectors * torch.where(biggest < 0, -1.0, 1.0)
    scale = variances.clamp(min=0).sqrt()
    floor = 1e-12 * float(scale.max()) if scale.numel() else 0.0
    scale = torch.where(scale > floor, scale, torch.ones_like(scale))
    return mean, vectors, scale


class KLWeights:
    """The KL weight of each step: a float for one model on the CPU; on CUDA, or for a group
    (one weight per model), a device tensor set before each step, which a graph's replay
    reads, so that the eager and the graphed step compute the same bits."""

    def __init__(self, configs: list[RunConfig], stacked: bool, device: torch.device) -> None:
        self.configs, self.stacked = configs, stacked
        self.warm = any(c.loss.kl_warmup > 0 for c in configs)
        self.cuda = device.type == "cuda"
        first = configs[0].loss.kld_weight
        self.set = first
        self.value: float | torch.Tensor = first
        if stacked:
            self.value = torch.tensor([c.loss.kld_weight for c in configs], device=device)
            self.base = self.value.clone()
        elif self.cuda:
            self.value = torch.full((), first, device=device)

    def update(self, prog: float) -> float | torch.Tensor:
        if not self.warm:
            return self.value
        first = self.configs[0].loss
        if self.stacked and self.cuda:  # the schedule's ramp, shared (not VARYING)
            ramp = schedules.kl_weight(dataclasses.replace(first, kld_weight=1.0), prog)
            torch.mul(self.base, ramp, out=self.value)
        elif self.stacked:
            self.value.copy_(torch.tensor([schedules.kl_weight(c.loss, prog)
                                           for c in self.configs]))
        elif self.cuda:
            now = schedules.kl_weight(first, prog)
            if now != self.set:
                self.value.fill_(now)
                self.set = now
        else:
            self.value = schedules.kl_weight(first, prog)
        return self.value


def fit(config: RunConfig, *, progress: bool = True,
        on_log: Callable[[dict[str, float]], None] | None = None,
        source: DataSource | None = None, checkpoint_path: Path | None = None,
        resume: Checkpoint | None = None) -> TrainResult:
    """Train one model as ``config`` says; ``on_log`` receives each metrics row as it is
    made. See :func:`fit_models` for the rest."""
    log = None if on_log is None else (lambda i, row: on_log(row))
    return fit_models([config], progress=progress, on_log=log, source=source,
                      checkpoint_path=checkpoint_path, resume=resume)[0]


def fit_models(configs: list[RunConfig], *, progress: bool = True,
               on_log: Callable[[int, dict[str, float]], None] | None = None,
               source: DataSource | None = None, checkpoint_path: Path | None = None,
               resume: Checkpoint | None = None, group: bool = False,
               inits: list[int] | None = None,
               stop_after: int | None = None) -> list[TrainResult]:
    """Train every config of ``configs`` (one, or a group: see the module docstring) in one
    loop; one :class:`TrainResult` per config, in order. ``on_log(m, row)`` receives model
    m's metrics rows as they are made.

    A config with ``train.restarts`` above 1 first chooses its initial weights by a probe
    (:mod:`vaelab.training.restarts`); ``inits`` gives each model's initialisation seed
    instead (the probe's candidates), and ``stop_after`` ends the loop after that many steps
    of the run's schedule (the probe's length).

    ``source``: the data source :func:`prepare` built (then ``configs`` must be the resolved
    configs); without it, both are made here. ``checkpoint_path``: write a checkpoint there
    every ``train.checkpoint_every`` steps, at the end, and on SIGINT/SIGTERM (then
    :class:`TrainingInterrupted` is raised). ``resume``: a checkpoint of these configs to
    continue from; on the CPU a step-limited run ends bit for bit as an uninterrupted one.
    ``group``: report the models as a group in their summaries (also for one model).

    A NaN or infinite loss or gradient raises :class:`TrainingDiverged` at the next metrics
    row or checkpoint, naming the step; a checkpoint is never written after it.
    """
    if source is None:
        resolved = [prepare(cfg) for cfg in configs]
        configs, source = [r for r, _ in resolved], resolved[0][1]
    first = configs[0]
    tc = first.train
    watcher = _ROW_WATCHER.get()
    device = resolve_device(tc.device)
    plan = plan_for(configs, source, device)
    m_count = len(configs)
    seeds = [derive_seeds(c.train.seed) for c in configs]
    # the initial weights: the run's own, or those its probe chose (train.restarts); a
    # resumed run reads its weights from the checkpoint, and the choice for its summary
    if resume is not None:
        restarts = resume.loop.restarts or [None] * m_count
    elif inits is None:
        restarts = _probe(configs, source, seeds, progress)
    else:
        restarts = [None] * m_count
    if inits is None:
        inits = [candidate_seed(s.init, r["chosen"]) if r else s.init
                 for s, r in zip(seeds, restarts, strict=True)]

    models = [init_model(c, i).to(device) for c, i in zip(configs, inits, strict=True)]
    # a fixed training set (n_train, or a file's split) is each model's own, as is its
    # permutation stream; a fresh source is drawn for all models at once
    gens = [make_generator(s.data, device) for s in seeds]
    fixed = [training_points(c, source, g, device) for c, g in zip(configs, gens, strict=True)]
    # rows set aside from a fixed training set to choose the weights by (train.validation)
    held: list[torch.Tensor | None] = [None] * m_count
    for i, (c, s) in enumerate(zip(configs, seeds, strict=True)):
        if fixed[i] is not None and c.train.validation:
            fixed[i], held[i] = split_validation(fixed[i], c.train.validation, s.validation)
    if first.data.standardize:
        for model, points, s in zip(models, fixed, seeds, strict=True):
            fit_standardization(model, points if points is not None else source.sample(
                STANDARDIZE_POINTS, make_generator(s.standardize, device), device))
    data_gen = make_generator(seeds[0].data, device)
    noise_gen = make_generator(seeds[0].noise, device)
    generators = {"data": data_gen, "noise": noise_gen,
                  **{f"model/{m}": g for m, g in enumerate(gens)}}
    streams = None
    if fixed[0] is not None:
        streams = [FixedSetStream(p, tc.batch_size, g) for p, g in zip(fixed, gens, strict=True)]
    fresh = FreshStream(source, m_count * tc.batch_size, data_gen, device)  # all models' rows

    stack = ModelStack(models)
    optimizer = Adam(list(stack.params.values()), [c.optim.lr for c in configs])
    configs_json = [c.to_json() for c in configs]
    best = BestWeights(held, stack.state(), check_every(tc.steps, tc.log_every),
                       seeds[0].validation)
    best_state = best.state() if best.active else None
    state = LoopState(0, 0.0, torch.zeros(m_count, len(LossTerms._fields)), 0,
                      torch.zeros(m_count, dtype=torch.long), [[] for _ in configs],
                      [[] for _ in configs])

    def adam_view() -> AdamState:  # Adam's state with a model axis, as the checkpoint has it
        saved = optimizer.export_state()
        return AdamState(saved.step, [stack.per_model(t) for t in saved.exp_avg],
                         [stack.per_model(t) for t in saved.exp_avg_sq])

    if resume is not None:
        check_checkpoint(resume, configs_json=configs_json, weights=stack.state(),
                         adam=adam_view(), generators=generators, streams=streams,
                         best=best_state)
        set_generator_states(resume.path, generators, resume.rng)
        stack.load_state(resume.weights)
        if best_state is not None:
            best.load(resume.loop.best)
        optimizer.import_state(resume.adam)
        for m, stream in enumerate(streams or []):
            stream._perm = resume.perms[m].to(stream.points.device)
            stream._pos = resume.stream_pos[m]
        state = resume.loop

    batch = streams[0].batch_size if streams is not None else tc.batch_size
    eps_shape = stack.eps_shape(batch)
    dim = source.dim
    x_shape = ((m_count,) if stack.stacked else ()) + (batch, dim)
    tally = Tally.start(state.sums, state.step, state.bad_step, device)
    sums, bad_step = tally.sums, tally.bad_step
    kl = KLWeights(configs, stack.stacked, device)
    if device.type == "cuda":
        optimizer.use_device_scalars()
    # the step, compiled here (before the training clock starts) where the plan says so; a
    # plan with a hand-off trains eagerly first (a resumed run past it compiles at once)
    x0, eps0 = torch.zeros(x_shape, device=device), torch.zeros(eps_shape, device=device)
    announce = to_stderr if progress else None
    handoff = plan.handoff if plan.handoff > state.step and not state.finished else 0
    first_plan = (dataclasses.replace(plan, compile=EAGER, adam_folded=False,
                                      tally_folded=False) if handoff else plan)
    prepared = build_step(first_plan, stack, optimizer, tally, x0, eps0, kl.value,
                          tc.compile == "on", announce)
    background: BackgroundBuild | None = None
    handoff_note: dict[str, object] = {}
    if handoff:
        key = step_key(stack, optimizer, tally, x0, eps0, kl.value, plan.adam_folded,
                       plan.tally_folded)
        if not is_cached(key):
            try:
                background = BackgroundBuild(build_spec(
                    configs, key, x_shape, eps_shape,
                    tuple(kl.value.shape) if isinstance(kl.value, torch.Tensor) else None,
                    plan.adam_folded, plan.tally_folded, tuple(tally.sums.shape)))
            except OSError as exc:  # no second process: the hand-off builds it instead
                handoff_note["compile_background"] = f"failed: {exc}"
    step_fn = prepared.step

    def device_step() -> tuple[torch.Tensor, torch.Tensor]:
        """One step's device work: draw, gradients, Adam, tally. Returns (x, z)."""
        if streams is None:
            x = fresh.next()
            if stack.stacked:
                x = x.view(m_count, tc.batch_size, dim)
        else:
            x = (torch.stack([s.next() for s in streams]) if stack.stacked
                 else streams[0].next())
        # the reparameterisation noise, drawn here as the model would draw it
        eps = torch.randn(eps_shape, generator=noise_gen, device=device)
        terms, z = step_fn(x, eps, kl_now)
        if not prepared.updates:  # (a step with Adam folded in has updated the weights)
            optimizer.step()
        if not prepared.tallies:
            with torch.no_grad():
                tally.add(terms)
        return x, z

    def capture(i: int, step: int, x: torch.Tensor, z: torch.Tensor) -> Frame:
        # the same draw from the display stream at every frame (a learned prior moves it)
        model = models[i]
        with torch.no_grad():
            display_z = model.sample_prior(configs[i].display.points,
                                           make_generator(seeds[i].display, device), device)
            gen = model.decode(display_z)
        return Frame(step, x.detach().cpu(), z.detach().cpu(), gen.cpu())

    def check_finite() -> None:
        """Raise TrainingDiverged if a loss since the last check, or a weight, is not finite.
        A non-finite gradient makes Adam's update, and so the weights and the next loss,
        non-finite: the weights are checked too, so it is caught even on the last step."""
        bad = bad_step.tolist()
        weights_ok = bool(torch.isfinite(torch.stack(torch._foreach_norm(optimizer.params))).all())
        if not any(bad) and weights_ok:
            return
        kept = (f"the last good checkpoint (step {last_saved}) is kept in {checkpoint_path}"
                if checkpoint_path is not None and last_saved is not None
                else "no checkpoint was written")
        i = next((j for j, b in enumerate(bad) if b), 0)
        where = f"at step {bad[i]}" if bad[i] else f"by step {step}"
        who = (f"model {i} (seed {configs[i].train.seed}, lr {configs[i].optim.lr:g}) "
               if m_count > 1 else "")
        raise TrainingDiverged(
            f"training {who}diverged {where}: the loss or its gradient became NaN or "
            f"infinite. Likely cause: a learning rate too high for this model and data "
            f"(optim.lr = {configs[i].optim.lr:g}; try a smaller --lr or an --lr-warmup), or "
            f"data with extreme values; {kept}")

    def save(finished: bool = False) -> None:
        nonlocal last_saved
        if checkpoint_path is None:
            return
        check_finite()
        loop_state = LoopState(step, time.perf_counter() - t0, sums, count, bad_step, metrics,
                               frames, finished, best.state() if best.active else None,
                               restarts if any(restarts) else None)
        save_checkpoint(checkpoint_path, configs_json=configs_json, weights=stack.state(),
                        adam=adam_view(), generators=generators, streams=streams,
                        loop=loop_state, metric_fields=METRIC_FIELDS)
        last_saved = step

    run_step = GraphedStep(device_step, device, [data_gen, noise_gen], plan.cuda_graph)
    metrics, frames = state.metrics, state.frames
    count, step = state.count, state.step
    frame_every = first.display.frame_every
    max_steps, limit = tc.steps, tc.time_limit
    last_saved = step if resume is not None else None
    bar = tqdm(total=max_steps if max_steps is not None else round(limit or 0),
               disable=not progress, unit="step" if max_steps is not None else "s",
               dynamic_ncols=True, mininterval=0.5, leave=True,
               initial=step if max_steps is not None else round(state.elapsed_s))
    for model in models:
        model.train()
    lrs = optimizer.lrs
    t0 = time.perf_counter() - state.elapsed_s
    pace = Pace(step, state.elapsed_s)
    def hand_off() -> Prepared:
        """The compiled step, from the cache once the background build (if any) is done;
        the wait and the load are kept off the training clock by the caller."""
        nonlocal background
        if background is not None:
            if not background.done() and announce is not None:
                announce("waiting for the compiled training step, built in the background")
            built = background.wait(should_stop=lambda: stop.signum is not None)
            if stop.signum is not None:
                return prepared  # the loop saves and stops at once
            handoff_note["compile_background"] = ("built" if built else
                                                  f"failed: {background.failure()}")
            background.stop()
            background = None
        return build_step(plan, stack, optimizer, tally, x0, eps0, kl.value, False, announce)

    try:
        hint = ("" if checkpoint_path is None else "continue from the last checkpoint with: "
                f"vaelab train --resume {checkpoint_path.parent}")
        with StopOnSignal(enabled=checkpoint_path is not None, hint=hint) as stop:
            while True:
                if handoff and step == handoff and not state.finished:
                    started = time.perf_counter()
                    prepared = hand_off()
                    step_fn = prepared.step
                    waited = time.perf_counter() - started
                    t0 += waited  # off the training clock, as a build before it would be
                    handoff_note["compile_handoff"] = handoff
                    handoff_note["compile_wait_seconds"] = round(waited, 3)
                    handoff = 0 if stop.signum is None else handoff
                elapsed = time.perf_counter() - t0
                if state.finished or step == max_steps:
                    break  # (a finished run resumed; else the `last` step below ends it)
                if stop.signum is not None:
                    save()
                    what = "checkpoint of the group" if m_count > 1 else "checkpoint"
                    raise TrainingInterrupted(
                        f"{stop.name} at step {step}: {what} saved in {checkpoint_path}; "
                        f"continue with: vaelab train --resume {checkpoint_path.parent}",
                        stop.signum)
                # the schedules follow the larger of the step and the time fractions
                prog = schedules.progress(step, max_steps, elapsed, limit)
                factor = schedules.lr_factor(first.optim, step, prog)
                optimizer.set_factor(factor)
                kl_now = kl.update(prog)
                step += 1
                x, z = run_step()
                count += 1

                # the step that reaches max_steps, or that ends after the time limit is
                # spent, is the last (logged, framed)
                last = step == max_steps or step == stop_after or (
                    limit is not None and time.perf_counter() - t0 >= limit)
                if frame_every and (step == 1 or step % frame_every == 0) or last:
                    check_finite()  # (a frame decodes draws of the prior: finite weights only)
                    stack.sync()
                    xs, zs = stack.per_model(x), stack.per_model(z)
                    zs = zs if stack.samples is None else zs[:, 0]
                    for i in range(m_count):
                        frames[i].append(capture(i, step, xs[i], zs[i]))
                if step % tc.log_every == 0 or last:
                    check_finite()
                    means = (sums / count).tolist()  # the one host synchronisation per row
                    elapsed = time.perf_counter() - t0
                    pace.row(step, elapsed)
                    for i in range(m_count):
                        row = {"step": step, "lr": lrs[i] * factor,
                               **dict(zip(LossTerms._fields, means[i], strict=True)),
                               "elapsed_s": elapsed}
                        metrics[i].append(row)
                        if on_log is not None:
                            on_log(i, row)
                    bar.update((step if max_steps is not None else round(elapsed)) - bar.n)
                    if m_count == 1:
                        bar.set_postfix(lr=f"{row['lr']:.2e}", loss=f"{row['loss']:.4f}",
                                        rec=f"{row['reconstruction']:.4f}",
                                        kld=f"{row['kld']:.4f}", refresh=False)
                    sums.zero_()
                    count = 0
                    checking = best.due(step, last)  # (on the training clock: the run's work)
                    watching = watcher is not None and not last
                    if checking or watching:
                        stack.sync()  # (the modules, which both read, from the stacked weights)
                    if checking:
                        best.check(step, models, stack.state())
                    if watching:
                        watcher(step, models)
                if last:
                    break
                if tc.checkpoint_every and step % tc.checkpoint_every == 0:
                    save()
            seconds = time.perf_counter() - t0
            save(finished=True)
    finally:
        bar.close()
        if background is not None:
            background.stop()
    check_finite()
    stack.sync()
    kept = best.restore(stack, step) if best.active else [False] * m_count
    by_time = step not in (max_steps, stop_after)
    paced = pace.finish(step, limit, by_time)
    results = []
    for i, (cfg, model) in enumerate(zip(configs, models, strict=True)):
        model.eval()
        summary = {
            "steps": step,
            "stopped_by": "time_limit" if by_time else "steps",
            "train_seconds": round(seconds, 3),
            "steps_per_second": round(step / seconds, 1) if seconds > 0 else None,
            "device": str(device),
            "threads": torch.get_num_threads(),  # CPU threads (devices.choose_threads)
            "gradients": plan.gradients,
            "cuda_graph": plan.cuda_graph,
            **prepared.summary(),
            **handoff_note,
            "plan": plan.to_dict(),
            "pace": paced,
            "final": metrics[i][-1],
            "torch_version": torch.__version__,
        }
        if restarts[i] is not None:
            summary["restarts"] = restarts[i]
        chosen = best.summary(i)
        if chosen is not None:
            summary["validation"] = {**chosen, "restored": kept[i]}
        if group or m_count > 1:
            summary["group"] = {"models": m_count, "index": i,
                                "model_steps_per_second": (round(m_count * step / seconds, 1)
                                                           if seconds > 0 else None)}
        if resume is not None:
            summary["resumed_from_step"] = resume.loop.step
        results.append(TrainResult(cfg, model, metrics[i], frames[i], summary))
    return results


def _probe(configs: list[RunConfig], source: DataSource, seeds: list[Seeds],
           progress: bool) -> list[dict[str, object] | None]:
    """Each model's choice of initial weights (:mod:`vaelab.training.restarts`): its
    ``train.restarts`` candidates trained at once, eagerly, for the probe's steps of its own
    schedule on its own data; None for a model with one. A probe that diverges keeps the
    run's own weights, whose run then reports its own failure."""
    out: list[dict[str, object] | None] = [None] * len(configs)
    for i, c in enumerate(configs):
        count = c.train.restarts  # (above 1 only with train.steps: RunConfig.validate)
        if count < 2:
            continue
        probe = probe_steps(c.train.steps)
        quiet = dataclasses.replace(
            c, train=dataclasses.replace(c.train, restarts=1, compile="off", handoff=0,
                                         checkpoint_every=0),
            display=dataclasses.replace(c.display, frame_every=0))
        if progress:
            to_stderr(f"trying {count} initial weights for {probe:,} steps"
                      + (f" (model {i})" if len(configs) > 1 else ""))
        started = time.perf_counter()
        token = _ROW_WATCHER.set(None)  # (a sweep's watcher sees the run, not its probe)
        try:
            results = fit_models([quiet] * count, progress=False, source=source,
                                 inits=[candidate_seed(seeds[i].init, j) for j in range(count)],
                                 stop_after=probe)
            scores = [probe_score(r.metrics, probe) for r in results]
        except TrainingDiverged:
            scores = [float("inf")] * count
        finally:
            _ROW_WATCHER.reset(token)
        out[i] = restart_summary(scores, choose(scores), probe, time.perf_counter() - started)
    return out


def fit_group(configs: list[RunConfig], *, progress: bool = True,
              source: DataSource | None = None, checkpoint_path: Path | None = None,
              resume: Checkpoint | None = None,
              on_log: Callable[[int, dict[str, float]], None] | None = None
              ) -> list[TrainResult]:
    """Train every config of ``configs`` at once, checked as a group (see
    :func:`vaelab.training.loop.fit_models`); one :class:`TrainResult` per config, in order."""
    if source is None:  # else: configs are resolved already, and source is their data
        resolved = [prepare(cfg) for cfg in configs]
        configs, source = [r for r, _ in resolved], resolved[0][1]
    check_group(configs)
    return fit_models(configs, progress=progress, source=source,
                      checkpoint_path=checkpoint_path, resume=resume, on_log=on_log,
                      group=True)


__all__ = ["METRIC_FIELDS", "TrainResult", "fit", "fit_group", "fit_models", "prepare",
           "resolve_config", "watch_rows"]
