"""Many models of the same shapes trained at once, with batched weights.

M configs that differ only in their seed, learning rate or KL weight (:data:`VARYING`) are
trained in one loop: their weights are stacked along a leading model axis
(``torch.func.stack_module_state``), one ``torch.func.vmap`` of the model's own forward and loss
runs all M (every Linear becomes one batched matrix product), one backward gives every model
its own gradient (the models share nothing, so the gradient of the summed loss is each model's
own), and :class:`StackedAdam` updates them with one learning rate per model. Where explicit
gradients apply (``train.gradients``, :mod:`vaelab.training.explicit`: the seed's loss, and
the IWAE bound with the standard or mixture prior, as the default preset trains), they replace
vmap and backward: the same batched products, with no autograd graph. On CUDA the group's
step is captured once as a CUDA graph and replayed, as a single run's is
(:mod:`vaelab.training.graphs`).

Randomness. Model m's initial weights (and the standardisation of an infinite source) come from
its own seed, exactly as in a single run. Training batches and reparameterisation noise for the
whole group are drawn in one call per step from the streams of the *first* config's seed
(model m takes rows m*B..(m+1)*B), or, for a fixed training set, from each model's own set and
permutation. So a model trained in a group is the same training process as a single run with
its seed, reproducible by the group's seeds, but not a bit-copy of that single run (its batches
differ, and batched kernels round differently).

``train.time_limit`` stops the whole group at once, as it stops a single run. The group is
checkpointed and resumed as one (:mod:`vaelab.training.group_checkpoint`): its models share
their batches and noise, so none of them can continue alone.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import math
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap
from tqdm.auto import tqdm

from vaelab.config import RunConfig
from vaelab.data import DataSource, FixedSetStream
from vaelab.errors import ConfigError, TrainingDiverged, TrainingInterrupted
from vaelab.models import BaseVAE
from vaelab.objectives import LossTerms
from vaelab.training import schedules
from vaelab.training.checkpoint import set_generator_states
from vaelab.training.compiled import prepare_step, to_stderr
from vaelab.training.devices import derive_seeds, make_generator, resolve_device
from vaelab.training.explicit import ExplicitStep, check_explicit, split_parameters
from vaelab.training.frames import Frame
from vaelab.training.graphs import GraphedStep, uses_cuda_graph
from vaelab.training.group_checkpoint import (
    AdamState,
    GroupCheckpoint,
    GroupLoopState,
    check_group_checkpoint,
    save_group_checkpoint,
)
from vaelab.training.loop import (
    METRIC_FIELDS,
    STANDARDIZE_POINTS,
    StopOnSignal,
    TrainResult,
    fit_standardization,
    init_model,
    prepare,
    training_points,
    uses_compile,
    uses_explicit,
)
from vaelab.training.tally import Tally

#: the settings that may differ between the models of a group (dotted config paths)
VARYING = ("train.seed", "optim.lr", "loss.kld_weight")
#: their short names, as ``--sweep`` and :func:`sweep_group` take them
SWEEP_KEYS = {"lr": "optim.lr", "kld_weight": "loss.kld_weight", "seed": "train.seed"}


def check_group(configs: list[RunConfig]) -> None:
    """Refuse a group whose configs differ in anything but :data:`VARYING`."""
    if not configs:
        raise ConfigError("a group needs at least one config")
    first = _without_varying(configs[0])
    for i, cfg in enumerate(configs[1:], start=1):
        other = _without_varying(cfg)
        if other != first:
            key = _first_difference(first, other)
            raise ConfigError(f"the models of a group may differ only in "
                              f"{', '.join(VARYING)}; config {i} differs in {key}")
    check_explicit(configs[0], group=True)


def _without_varying(cfg: RunConfig) -> dict[str, Any]:
    d = cfg.to_dict()
    for path in VARYING:
        section, key = path.split(".")
        d[section].pop(key)
    d.pop("preset", None)
    return d


def _first_difference(a: dict[str, Any], b: dict[str, Any], prefix: str = "") -> str:
    for key in a:
        if a[key] != b.get(key):
            if isinstance(a[key], dict) and isinstance(b.get(key), dict):
                return _first_difference(a[key], b[key], f"{prefix}{key}.")
            return f"{prefix}{key}"
    return prefix.rstrip(".") or "?"


class StackedAdam:
    """Adam for parameters stacked along a leading model axis, one learning rate per model.

    The update is torch.optim.Adam's (betas 0.9, 0.999; eps 1e-8; no weight decay), applied
    to all parameters with a handful of ``torch._foreach`` kernels per step.
    """

    def __init__(self, params: list[torch.Tensor], lrs: torch.Tensor,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> None:
        self.params = params
        self.lrs = lrs
        self.betas, self.eps = betas, eps
        self.exp_avg = [torch.zeros_like(p) for p in params]
        self.exp_avg_sq = [torch.zeros_like(p) for p in params]
        self.steps = 0
        self.factor = 1.0
        self._shapes = [(p.shape[0],) + (1,) * (p.ndim - 1) for p in params]
        # for a CUDA graph: the step count and the rate factor as device tensors (None: eager)
        self._step_t: torch.Tensor | None = None
        self._factor_t: torch.Tensor | None = None

    def use_device_scalars(self) -> None:
        """Keep the step count and the rate factor on the device, so that a step replayed as
        a CUDA graph reads them there instead of the numbers its capture saw."""
        device = self.lrs.device
        self._step_t = torch.full((), float(self.steps), device=device)
        self._factor_t = torch.full((), self.factor, device=device)

    def set_factor(self, factor: float) -> None:
        """The next steps' learning rates are ``lrs * factor``."""
        if self._factor_t is not None and factor != self.factor:
            self._factor_t.fill_(factor)
        self.factor = factor

    @torch.no_grad()
    def step(self) -> None:
        """One update with learning rates ``lrs * factor`` (``lrs``: one per model, ``[M]``)."""
        b1, b2 = self.betas
        grads = [p.grad for p in self.params]
        torch._foreach_lerp_(self.exp_avg, grads, 1.0 - b1)
        torch._foreach_mul_(self.exp_avg_sq, b2)
        torch._foreach_addcmul_(self.exp_avg_sq, grads, grads, 1.0 - b2)
        denom = torch._foreach_sqrt(self.exp_avg_sq)
        if self._step_t is None:
            self.steps += 1
            torch._foreach_div_(denom, math.sqrt(1.0 - b2 ** self.steps))
            step_size = self.lrs * (self.factor / (1.0 - b1 ** self.steps))
        else:  # the same bias corrections, computed on the device
            t = self._step_t.add_(1)
            torch._foreach_div_(denom, torch.sqrt(1.0 - torch.pow(b2, t)))
            step_size = self.lrs * (self._factor_t / (1.0 - torch.pow(b1, t)))
        torch._foreach_add_(denom, self.eps)
        update = torch._foreach_div(self.exp_avg, denom)
        torch._foreach_mul_(update, [step_size.view(shape) for shape in self._shapes])
        torch._foreach_sub_(self.params, update)

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    def export_state(self) -> AdamState:
        steps = self.steps if self._step_t is None else round(float(self._step_t))
        return AdamState(steps, self.exp_avg, self.exp_avg_sq)

    @torch.no_grad()
    def import_state(self, state: AdamState) -> None:
        for live, saved in zip(self.exp_avg + self.exp_avg_sq, state.exp_avg + state.exp_avg_sq,
                               strict=True):
            live.copy_(saved)
        self.steps = state.step
        if self._step_t is not None:
            self._step_t.fill_(float(state.step))


class _SharedRateAdam:
    """torch's fused Adam over the stacked parameters, for groups whose models share one
    learning rate (then Adam, being elementwise, is each model's own Adam): one kernel per
    step instead of StackedAdam's handful."""

    def __init__(self, params: list[torch.Tensor], lr: float, device: torch.device) -> None:
        from vaelab.config import OptimConfig
        from vaelab.training.optim import LeanAdam, build_optimizer

        self.lr = lr
        self.adam = LeanAdam(build_optimizer(params, OptimConfig(lr=lr), device))

    def use_device_scalars(self) -> None:
        self.adam.use_device_lr()

    def set_factor(self, factor: float) -> None:
        self.adam.set_lr(self.lr * factor)

    def step(self) -> None:
        self.adam.step()

    def zero_grad(self) -> None:
        self.adam.zero_grad(set_to_none=True)

    def export_state(self) -> AdamState:
        state = self.adam.state_dict()["state"]
        params = self.adam.params
        if not state:  # a non-fused Adam before its first step
            zeros = [torch.zeros_like(p) for p in params]
            return AdamState(0, zeros, [z.clone() for z in zeros])
        return AdamState(int(state[0]["step"]), [state[i]["exp_avg"] for i in range(len(params))],
                         [state[i]["exp_avg_sq"] for i in range(len(params))])

    def import_state(self, state: AdamState) -> None:
        entries = {i: {"step": torch.tensor(float(state.step)), "exp_avg": m.clone(),
                       "exp_avg_sq": v.clone()}
                   for i, (m, v) in enumerate(zip(state.exp_avg, state.exp_avg_sq, strict=True))}
        self.adam.load_state_dict({"state": entries,
                                   "param_groups": self.adam.state_dict()["param_groups"]})


class _LossOf(nn.Module):
    """forward(x, eps, kld_weight) -> (the loss terms stacked, z): what vmap maps over."""

    def __init__(self, model: BaseVAE) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor, eps: torch.Tensor,
                kld_weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.model(x, eps=eps, samples=self.model.training_samples())
        return torch.stack(tuple(self.model.loss(out, kld_weight=kld_weight))), out.z


def fit_group(configs: list[RunConfig], *, progress: bool = True,
              source: DataSource | None = None, checkpoint_path: Path | None = None,
              resume: GroupCheckpoint | None = None,
              on_log: Callable[[int, dict[str, float]], None] | None = None
              ) -> list[TrainResult]:
    """Train every config of ``configs`` at once (see the module docstring); one
    :class:`TrainResult` per config, in order, each as a single run would give it.
    ``on_log(m, row)`` receives model m's metrics rows as they are made.

    ``checkpoint_path``: write the group's checkpoint there every ``train.checkpoint_every``
    steps, at the end, and on SIGINT/SIGTERM (then :class:`TrainingInterrupted` is raised).
    ``resume``: a checkpoint of this group to continue from; on the CPU a step-limited group
    ends bit for bit as an uninterrupted one.
    """
    if source is None:  # else: configs are resolved already, and source is their data
        resolved = [prepare(cfg) for cfg in configs]
        configs, source = [r for r, _ in resolved], resolved[0][1]
    check_group(configs)
    assert source is not None
    first = configs[0]
    tc = first.train
    device = resolve_device(tc.device)
    m_count = len(configs)
    seeds = [derive_seeds(c.train.seed) for c in configs]

    models = [init_model(c, s.init).to(device) for c, s in zip(configs, seeds, strict=True)]
    # a fixed training set (n_train, or a file's split) is each model's own, as is its
    # permutation stream; a fresh source is drawn for all models at once
    gens = [make_generator(s.data, device) for s in seeds]
    fixed = [training_points(c, source, g, device)
             for c, g in zip(configs, gens, strict=True)]
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

    template = copy.deepcopy(models[0])
    step_module = _LossOf(template)
    stacked_params, stacked_buffers = stack_module_state(models)
    params = {f"model.{k}": v for k, v in stacked_params.items()}
    buffers = {f"model.{k}": v for k, v in stacked_buffers.items()}
    param_list = list(params.values())
    lrs = [c.optim.lr for c in configs]
    optimizer: StackedAdam | _SharedRateAdam = (
        _SharedRateAdam(param_list, lrs[0], device) if len(set(lrs)) == 1
        else StackedAdam(param_list, torch.tensor(lrs, device=device)))
    configs_json = [c.to_json() for c in configs]
    n_terms = len(LossTerms._fields)
    state = GroupLoopState(0, 0.0, torch.zeros(m_count, n_terms), 0,
                           torch.zeros(m_count, dtype=torch.long), [[] for _ in configs],
                           [[] for _ in configs])
    if resume is not None:
        state = _restore(resume, configs_json, stacked_params, stacked_buffers, optimizer,
                         generators, streams)

    def losses(p: dict, b: dict, x: torch.Tensor, eps: torch.Tensor,
               w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return functional_call(step_module, (p, b), (x, eps, w))

    batched = vmap(losses)
    explicit = None
    if uses_explicit(first, device, group=True):  # the same gradients, with no autograd graph
        std = template.standardized
        net, extras = split_parameters(template, stacked_params, stacked_buffers)
        explicit = ExplicitStep(template, net,
                                stacked_buffers["data_shift"] if std else None,
                                stacked_buffers["data_scale"] if std else None, extras=extras)
    warm = any(c.loss.kl_warmup > 0 for c in configs)
    kl_now = torch.tensor([c.loss.kld_weight for c in configs], device=device)
    samples = template.training_samples()
    batch = streams[0].batch_size if streams is not None else tc.batch_size
    eps_shape = ((m_count,) + ((samples,) if samples is not None else ())
                 + (batch, template.latent_dim))
    dim = source.dim

    def sync_models() -> None:
        with torch.no_grad():
            for i, model in enumerate(models):
                for name, t in model.named_parameters():
                    t.copy_(params[f"model.{name}"][i])
                for name, t in model.named_buffers():
                    t.copy_(buffers[f"model.{name}"][i])

    def capture(i: int, step: int, x: torch.Tensor, z: torch.Tensor) -> Frame:
        model = models[i]
        with torch.no_grad():
            display_z = model.sample_prior(configs[i].display.points,
                                           make_generator(seeds[i].display, device), device)
            gen = model.decode(display_z)
        return Frame(step, x.detach().cpu(), z.detach().cpu(), gen.cpu())

    # each model's loss terms summed on the device, the step count (on the device, so that a
    # graph's replay advances it) and each model's first non-finite step (tally.py)
    tally = Tally.start(state.sums, state.step, state.bad_step, device)
    sums, bad_step = tally.sums, tally.bad_step
    count = state.count
    graphed = uses_cuda_graph(first, device, streams is not None, False)
    # what changes between steps as device tensors on CUDA, which a graph's replay reads
    # (graphs.py), graphed or not, so that both compute the same bits (as in fit)
    device_scalars = device.type == "cuda"
    kl_base = kl_now.clone()
    if device_scalars:
        optimizer.use_device_scalars()

    # the explicit step, compiled before the training clock starts where it is to be (as in
    # fit; a group's autograd step is not compiled)
    compiled = explicit is not None and uses_compile(first, device, group=True)
    prepared = prepare_step(explicit, compiled, device,
                            torch.zeros(m_count, batch, dim, device=device),
                            torch.zeros(eps_shape, device=device), kl_now, tc.compile == "on",
                            to_stderr if progress else None)
    step_fn = prepared.step

    def device_step() -> tuple[torch.Tensor, torch.Tensor]:
        """One group step's device work: draw, gradients, Adam, tally. Returns (x, z)."""
        if streams is None:
            x = source.sample(m_count * tc.batch_size, data_gen, device).view(
                m_count, tc.batch_size, dim)
        else:
            x = torch.stack([s.next() for s in streams])
        eps = torch.randn(eps_shape, generator=noise_gen, device=device)
        if step_fn is not None:  # loss terms [M, 4], and the gradients in .grad
            terms, z = step_fn(x, eps, kl_now)
        else:
            terms, z = batched(params, buffers, x, eps, kl_now)
            optimizer.zero_grad()
            terms[:, 0].sum().backward()
        optimizer.step()
        with torch.no_grad():
            tally.add(terms.detach())
        return x, z

    run_step = GraphedStep(device_step, device, [data_gen, noise_gen], graphed)
    metrics, frames = state.metrics, state.frames
    frame_every = first.display.frame_every
    max_steps, limit = tc.steps, tc.time_limit
    last_saved = state.step if resume is not None else None

    def check_finite() -> None:
        bad = bad_step.tolist()
        if any(bad):
            i = next(j for j, b in enumerate(bad) if b)
            kept = (f"; the last good checkpoint (step {last_saved}) is kept in "
                    f"{checkpoint_path}" if checkpoint_path is not None and last_saved is not None
                    else "")
            raise TrainingDiverged(
                f"model {i} (seed {configs[i].train.seed}, lr {configs[i].optim.lr:g}) "
                f"diverged at step {bad[i]}: its loss or gradient became NaN or infinite. "
                f"Likely cause: a learning rate too high for this model and data{kept}")

    def save(finished: bool = False) -> None:
        nonlocal last_saved
        if checkpoint_path is None:
            return
        check_finite()
        loop_state = GroupLoopState(step, time.perf_counter() - t0, sums, count, bad_step,
                                    metrics, frames, finished)
        save_group_checkpoint(checkpoint_path, configs_json=configs_json,
                              params=stacked_params, buffers=stacked_buffers,
                              adam=optimizer.export_state(), generators=generators,
                              streams=streams, loop=loop_state, metric_fields=METRIC_FIELDS)
        last_saved = step

    step = state.step
    bar = tqdm(total=max_steps if max_steps is not None else round(limit or 0),
               disable=not progress, unit="step" if max_steps is not None else "s",
               dynamic_ncols=True, mininterval=0.5,
               initial=step if max_steps is not None else round(state.elapsed_s))
    for model in models:
        model.train()
    t0 = time.perf_counter() - state.elapsed_s
    started = step
    try:
        with StopOnSignal(enabled=checkpoint_path is not None) as stop:
            # as in the single-model loop: the step that reaches max_steps, or that ends after
            # the time limit is spent, is the last (logged, framed); the schedules follow the
            # larger of the step and the time fractions
            while True:
                elapsed = time.perf_counter() - t0
                if (state.finished or step == max_steps
                        or (limit is not None and elapsed >= limit and step > started)):
                    break  # (normally the `last` step below ends the loop)
                if stop.signum is not None:
                    save()
                    raise TrainingInterrupted(
                        f"{stop.name} at step {step}: checkpoint of the group saved in "
                        f"{checkpoint_path}; continue with: vaelab train --resume "
                        f"{checkpoint_path.parent}", stop.signum)
                prog = schedules.progress(step, max_steps, elapsed, limit)
                step += 1
                factor = schedules.lr_factor(first.optim, step - 1, prog)
                optimizer.set_factor(factor)
                if warm and device_scalars:  # the schedule's ramp, shared (not VARYING)
                    ramp = schedules.kl_weight(dataclasses.replace(first.loss, kld_weight=1.0),
                                               prog)
                    torch.mul(kl_base, ramp, out=kl_now)
                elif warm:
                    kl_now.copy_(torch.tensor([schedules.kl_weight(c.loss, prog)
                                               for c in configs]))
                x, z = run_step()
                count += 1

                last = step == max_steps or (limit is not None and
                                             time.perf_counter() - t0 >= limit)
                if frame_every and (step == 1 or step % frame_every == 0) or last:
                    sync_models()
                    zz = z if samples is None else z[:, 0]
                    for i in range(m_count):
                        frames[i].append(capture(i, step, x[i], zz[i]))
                if step % tc.log_every == 0 or last:
                    check_finite()
                    means = (sums / count).tolist()
                    elapsed = time.perf_counter() - t0
                    for i in range(m_count):
                        row = {"step": step, "lr": lrs[i] * factor,
                               **dict(zip(LossTerms._fields, means[i], strict=True)),
                               "elapsed_s": elapsed}
                        metrics[i].append(row)
                        if on_log is not None:
                            on_log(i, row)
                    bar.update((step if max_steps is not None else round(elapsed)) - bar.n)
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
    sync_models()
    results = []
    for i, (cfg, model) in enumerate(zip(configs, models, strict=True)):
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
            "final": metrics[i][-1],
            "torch_version": torch.__version__,
            "group": {"models": m_count, "index": i,
                      "model_steps_per_second": (round(m_count * step / seconds, 1)
                                                 if seconds > 0 else None)},
        }
        if resume is not None:
            summary["resumed_from_step"] = resume.loop.step
        results.append(TrainResult(cfg, model, metrics[i], frames[i], summary))
    return results


def _restore(ckpt: GroupCheckpoint, configs_json: list[str], params: dict[str, torch.Tensor],
             buffers: dict[str, torch.Tensor], optimizer: StackedAdam | _SharedRateAdam,
             generators: dict[str, torch.Generator],
             streams: list[FixedSetStream] | None) -> GroupLoopState:
    """Check ``ckpt`` against the live group, then copy it in; returns its loop state."""
    check_group_checkpoint(ckpt, configs_json=configs_json, params=params, buffers=buffers,
                           generators=generators, streams=streams)
    set_generator_states(ckpt.path, generators, ckpt.rng)
    with torch.no_grad():
        for live, saved in ((params, ckpt.params), (buffers, ckpt.buffers)):
            for name, t in live.items():
                t.copy_(saved[name])
    optimizer.import_state(ckpt.adam)
    for m, stream in enumerate(streams or []):
        stream._perm = ckpt.perms[m].to(stream.points.device)
        stream._pos = ckpt.stream_pos[m]
    return ckpt.loop


def seed_group(config: RunConfig, count: int) -> list[RunConfig]:
    """``count`` copies of ``config`` with seeds ``seed, seed + 1, ...``."""
    if count < 1:
        raise ConfigError(f"the number of seeds must be >= 1, got {count}")
    return [dataclasses.replace(config, train=dataclasses.replace(
        config.train, seed=config.train.seed + i)) for i in range(count)]


def sweep_group(config: RunConfig, sweep: Mapping[str, Sequence[float]],
                seeds: int | None = None) -> list[RunConfig]:
    """Every combination of ``sweep``'s values over ``config``, the first key varying slowest.

    ``sweep`` maps a short name of :data:`SWEEP_KEYS` (or its dotted path) to the values to
    try, e.g. ``{"lr": [1e-3, 1e-2], "kld_weight": [0.5, 1.0]}``: four models. With ``seeds``,
    each combination is trained with seeds ``seed ... seed + seeds - 1`` (then ``seed`` may
    not be swept too). Every value is validated as a config field; a bad key or value is a
    ConfigError naming it.
    """
    paths: list[tuple[str, str]] = []
    for key, values in sweep.items():
        path = SWEEP_KEYS.get(key, key)
        if path not in VARYING:
            raise ConfigError(f"cannot sweep {key!r}: the models of a group may differ only in "
                              f"{', '.join(SWEEP_KEYS)}")
        if path in (p for _, p in paths):
            raise ConfigError(f"{key!r} is swept twice")
        if isinstance(values, str | bytes) or not values:
            raise ConfigError(f"the sweep of {key!r} needs a list of values, got {values!r}")
        paths.append((key, path))
    if seeds is not None and "train.seed" in (p for _, p in paths):
        raise ConfigError("give the seeds either as a count of seeds or as swept values, "
                          "not both")
    configs = []
    for combo in itertools.product(*(sweep[key] for key, _ in paths)):
        cfg = config.replace({path: value for (_, path), value in zip(paths, combo,
                                                                        strict=True)})
        configs += seed_group(cfg, seeds) if seeds is not None else [cfg]
    return configs


def group_labels(configs: list[RunConfig]) -> list[str]:
    """A name for each model of a group, from the settings that differ between its models
    (``seed-3``, ``lr-0.01_seed-0``): the directory each is written to. ``model-i`` when two
    models share every setting."""
    varying = [(name, path) for name, path in SWEEP_KEYS.items()
               if len({_get(c, path) for c in configs}) > 1]
    varying.sort(key=lambda item: item[0] == "seed")  # the seed last
    labels = ["_".join(f"{name}-{_get(c, path):g}" for name, path in varying)
              for c in configs]
    if not varying or len(set(labels)) < len(labels):
        return [f"model-{i}" for i in range(len(configs))]
    return labels


def _get(config: RunConfig, path: str) -> Any:
    section, key = path.split(".")
    return getattr(getattr(config, section), key)
