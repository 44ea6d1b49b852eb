"""The explicit step compiled ahead of time (AOTInductor), cached on disk, loaded in ms.

:class:`~vaelab.training.compiled.CompiledStep` runs the step under ``torch.compile``, which
traces it again in every process (about 3 s with a warm cache) and checks its guards on every
call: for the seed preset at batch 512 those checks and wrappers cost about 170 us of a 1 ms
step. A step whose loss is in closed form (the seed's loss, the IWAE bound) is a pure function
of the batch, the noise, the KL weight and the model's tensors, so here it is exported once
(``torch.export``), compiled by AOTInductor into a shared library, and kept in a package file
under the cache folder (:func:`cache_dir`). A later process finds the package by its key and
loads it in milliseconds; each call then goes straight to the generated C++.

The key is a hash of everything the generated code depends on: the versions of vaelab, torch
and Python, the CPU (architecture, torch's vector ISA) and torch's thread count (baked into
the generated loops), the step's kind and settings, every input's name, shape and dtype, and
the source text of the modules the traced step runs. A package whose checksum (kept beside it)
does not match is built again, with a warning. Packages are written to a temporary file and
renamed, so a cache never holds half a package.

The package holds generated C++ and the library built from it (no pickle, no weights: the
tensors are inputs). Loading it runs that library, as torch.compile runs the ones it caches;
the folder should be writable by its user only, as any cache of compiled code.

For a single model the package also takes Adam's state and learning rate and applies the
update in place (:func:`adam_update`, torch's fused Adam formula), and the loop's tally
(:mod:`vaelab.training.tally`): the loop then calls no optimizer and adds nothing up, and no
gradient is stored. A group (stacked weights) gets the gradients, and its own optimizer steps.

Numerically the package computes the eager step's formulas (and Adam's), fused and rounded in
another order, as ``torch.compile`` would; a compiled run is not bit-identical to an eager
one. Runs with the same package are reproducible bit for bit, and resume bit for bit; a package
built again from the same code computes the same bits.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import json
import os
import platform
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import torch

import vaelab
from vaelab.errors import RunError
from vaelab.training import explicit as explicit_module
from vaelab.training import tally as tally_module
from vaelab.training.explicit import ExplicitStep
from vaelab.training.optim import LeanAdam
from vaelab.training.tally import Tally, tally_update

#: bump when the package layout or the key's fields change
FORMAT = 2
#: the environment variable naming the cache folder
CACHE_ENV = "VAELAB_CACHE_DIR"
#: packages kept in the cache (about 2 MB each), the most recently used ones
KEEP = 32


def cache_dir() -> Path:
    """Where compiled steps are kept: ``$VAELAB_CACHE_DIR``, else ``$XDG_CACHE_HOME/vaelab``,
    else ``~/.cache/vaelab``; packages go in its ``steps`` folder."""
    if os.environ.get(CACHE_ENV):
        root = Path(os.environ[CACHE_ENV])
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        root = (Path(xdg) if xdg else Path.home() / ".cache") / "vaelab"
    return root / "steps"


def _source_digest() -> str:
    """sha256 of the source of the modules the exported step runs (an edited step, in a
    development install with an unchanged version, gets a new key)."""
    from vaelab.models import priors
    from vaelab.objectives import iwae, seed_loss

    h = hashlib.sha256()
    for module in (explicit_module, iwae, seed_loss, priors, tally_module,
                   sys.modules[__name__]):
        h.update(Path(inspect.getsourcefile(module)).read_bytes())
    return h.hexdigest()


def describe(step: ExplicitStep, args: tuple[torch.Tensor, ...],
             adam: AdamState | None = None, tally: Tally | None = None) -> dict[str, Any]:
    """What the compiled code depends on (the key is its hash); ``args``: (x, eps, KL weight
    as a tensor); ``adam``: the optimizer whose update the step folds in, if any; ``tally``:
    the loop's tally the step keeps, if any."""
    template = step.template
    inputs = {"x": args[0], "eps": args[1], "kl_weight": args[2], **step.inputs()}
    if adam is not None:
        inputs.update({f"adam.{i}": t for i, t in enumerate(adam.tensors())})
    if tally is not None:
        inputs.update({f"tally.{name}": t for name, t in zip(
            Tally._fields, tally.tensors(), strict=True)})
    return {
        "format": FORMAT,
        "vaelab": vaelab.__version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "threads": torch.get_num_threads(),
        "device": str(args[0].device.type),
        "kind": step.kind,
        "slope": step.slope,
        "learn_std": bool(template.learn_std),
        "min_std": float(template.min_std),
        "prior": step.prior_kind.__name__,
        "grads": step.grad_names,
        "inputs": [[name, list(t.shape), str(t.dtype)] for name, t in inputs.items()],
        "adam": [*adam.betas, adam.eps] if adam is not None else None,
        "source": _source_digest(),
    }


def key_of(description: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(description, sort_keys=True).encode()).hexdigest()[:32]


class WeightTensor:
    """A KL weight given as a float, kept in one 0-d device tensor (refilled only when it
    changes), for a compiled step that takes it as an input: a Python float would be baked
    into the compiled code. A tensor weight (a group's, ``[M]``) passes through."""

    def __init__(self, device: torch.device) -> None:
        self.tensor = torch.zeros((), device=device)
        self.value: float | None = None

    def __call__(self, kl_weight: float | torch.Tensor) -> torch.Tensor:
        if isinstance(kl_weight, torch.Tensor):
            return kl_weight
        if kl_weight != self.value:
            self.tensor.fill_(kl_weight)
            self.value = kl_weight
        return self.tensor


class AdamState(NamedTuple):
    """A fused Adam's hyper-parameters and tensors, for a compiled step that also updates
    the weights (:func:`adam_state`); the tensors in the step's ``grad_names`` order."""

    betas: tuple[float, float]
    eps: float
    lr: torch.Tensor  # 0-d, filled by the optimizer's set_lr
    steps: torch.Tensor  # [n] each parameter's step count (LeanAdam keeps them in one tensor)
    exp_avgs: list[torch.Tensor]
    exp_avg_sqs: list[torch.Tensor]

    def tensors(self) -> list[torch.Tensor]:
        return [self.lr, self.steps, *self.exp_avgs, *self.exp_avg_sqs]


def adam_state(step: ExplicitStep, optimizer: LeanAdam | None) -> AdamState | None:
    """``optimizer``'s state for a step that folds its update in, or None where it cannot:
    no optimizer, not the direct fused Adam (no weight decay, amsgrad or maximize), or
    parameters other than exactly those the step computes gradients for."""
    if optimizer is None or not optimizer.direct:
        return None
    targets = [step.named[name] for name in step.grad_names]
    index = {id(p): i for i, p in enumerate(optimizer.params)}
    if len(targets) != len(index) or any(id(t) not in index for t in targets):
        return None
    order = [index[id(t)] for t in targets]
    if optimizer.lr_tensor is None:
        optimizer.use_device_lr()
    group = optimizer.param_groups[0]
    steps, exp_avgs, exp_avg_sqs = optimizer.fused_state()
    return AdamState(tuple(group["betas"]), float(group["eps"]), optimizer.lr_tensor, steps,
                     [exp_avgs[i] for i in order], [exp_avg_sqs[i] for i in order])


def adam_update(params: list[torch.Tensor], grads: list[torch.Tensor],
                exp_avgs: list[torch.Tensor], exp_avg_sqs: list[torch.Tensor],
                steps: torch.Tensor, lr: torch.Tensor, betas: tuple[float, float],
                eps: float) -> None:
    """Adam's update in place, as torch's fused CPU kernel computes it (no weight decay,
    amsgrad or maximize), every parameter at the same step count::

        m = lerp(m, g, 1 - beta1);  v = beta2 v + (1 - beta2) g^2
        p = p - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
    """
    beta1, beta2 = betas
    steps.add_(1)
    t = steps[0]
    step_size = lr / (1.0 - torch.pow(beta1, t))
    bias2_sqrt = torch.sqrt(1.0 - torch.pow(beta2, t))
    for p, g, m, v in zip(params, grads, exp_avgs, exp_avg_sqs, strict=True):
        m.lerp_(g, 1.0 - beta1)
        v.mul_(beta2).addcmul_(g, g, value=1.0 - beta2)
        p.sub_(step_size * m / (v.sqrt() / bias2_sqrt + eps))


class _Program(torch.nn.Module):
    """:meth:`ExplicitStep.gradients` as a module of its inputs alone, for ``torch.export``:
    forward(x, eps, kl_weight, *tensors in ``names`` order) -> (terms, z, *gradients in
    ``step.grad_names`` order); with ``adam``, forward(..., *tensors, *Adam's tensors) ->
    (terms, z), the weights and Adam's state updated in place; with ``tally``, the tally's
    three tensors follow (last) and are updated in place too."""

    def __init__(self, step: ExplicitStep, adam: AdamState | None, tally: bool) -> None:
        super().__init__()
        self._template = (step.template,)  # a tuple: not a submodule, its weights not lifted
        self.names = list(step.inputs())
        self.net_names = list(step.p)
        self.adam = (adam.betas, adam.eps, len(adam.exp_avgs)) if adam is not None else None
        self.tally = tally

    def forward(self, x: torch.Tensor, eps: torch.Tensor, kl_weight: torch.Tensor,
                *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
        named = dict(zip(self.names, tensors[:len(self.names)], strict=True))
        every = dict(named)
        shift, scale = named.pop("data_shift", None), named.pop("data_scale", None)
        net = {name: named.pop(name) for name in self.net_names}
        step = ExplicitStep(self._template[0], net, shift, scale, extras=named)
        terms, z, grads = step.gradients(x, eps, kl_weight)
        rest = list(tensors[len(self.names):])
        if self.tally:  # the tally's tensors come last (AotStep's order)
            cut = len(rest) - len(Tally._fields)
            tally_update(*rest[cut:], terms)
            rest = rest[:cut]
        if self.adam is None:
            return (terms, z, *grads.values())
        betas, adam_eps, n = self.adam
        lr, steps, *state = rest
        adam_update([every[name] for name in grads], list(grads.values()), state[:n],
                    state[n:], steps, lr, betas, adam_eps)
        return terms, z


class AotStep:
    """``step`` (closed-form loss, one model or a stack) as a loaded AOTInductor package,
    called as the step itself: ``(x, eps, kl_weight) -> (loss terms, z)``, the gradients in
    ``.grad``; or, built with an :class:`AdamState` (``updates``), the weights and Adam's
    state updated in place instead, with no ``.grad``; built with a :class:`Tally`
    (``tallies``), that tally updated in place too. Build or load it with
    :func:`load_or_build`. The tensors are taken once: an optimizer that replaces its state
    tensors (``load_state_dict``) needs a new AotStep."""

    def __init__(self, step: ExplicitStep, runner: Any, device: torch.device,
                 adam: AdamState | None = None, tally: Tally | None = None) -> None:
        self.step, self.runner = step, runner
        self.tensors = list(step.inputs().values())
        self.updates = adam is not None
        self.tallies = tally is not None
        if adam is not None:
            self.tensors += adam.tensors()
        if tally is not None:
            self.tensors += tally.tensors()
        self.targets = [step.named[name] for name in step.grad_names]
        self.weight = WeightTensor(device)

    def __call__(self, x: torch.Tensor, eps: torch.Tensor,
                 kl_weight: float | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.runner.run([x, eps, self.weight(kl_weight), *self.tensors])
        if not self.updates:
            for t, grad in zip(self.targets, out[2:], strict=True):
                t.grad = grad
        return out[0], out[1]


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _write_atomic(path: Path, write: Any) -> None:
    """Call ``write(temporary path)`` in ``path``'s folder, then rename it to ``path``."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}",
                               dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _build(step: ExplicitStep, args: tuple[torch.Tensor, ...], package: Path,
           adam: AdamState | None = None, tally: Tally | None = None) -> None:
    # copies: exporting runs the step (and the in-place updates) on these
    tensors = [*step.inputs().values(), *(adam.tensors() if adam is not None else []),
               *(tally.tensors() if tally is not None else [])]
    example = (*args, *(t.detach().clone() for t in tensors))
    with warnings.catch_warnings():  # torch's own deprecation notices while packaging
        warnings.simplefilter("ignore", FutureWarning)
        with torch.no_grad():
            program = torch.export.export(_Program(step, adam, tally is not None), example,
                                          strict=False)
        _write_atomic(package, lambda tmp: torch._inductor.aoti_compile_and_package(
            program, package_path=str(tmp)))


def _open(package: Path) -> Any:
    """The package's runner: ``run(flat list of input tensors) -> flat list of outputs``.

    This is the loader ``torch._inductor.aoti_load_package`` wraps, called directly: that
    function first imports Inductor and probes the CPU's vector ISA by compiling test programs
    (about 2 s in all, every process) only to warn on a mismatch, which the key here already
    rules out (it holds torch's ISA); and its wrapper flattens and unflattens the arguments
    on every call, which the flat list here does not need."""
    return torch._C._aoti.AOTIModelPackageLoader(str(package), "model", False, 1, -1)


def _load(package: Path, meta: Path, description: dict[str, Any]) -> Any | None:
    """The runner of a cached package, or None if there is none, or it does not match its
    record (with a warning: it is then built again)."""
    if not package.exists() or not meta.exists():
        return None
    try:
        record = json.loads(meta.read_text())
        ok = record.get("description") == description and record.get("sha256") == _digest(
            package)
    except (OSError, ValueError, AttributeError):
        ok = False
    if not ok:
        warnings.warn(f"the cached compiled step {package} does not match its record "
                      f"({meta.name}); building it again", RuntimeWarning, stacklevel=3)
        return None
    try:
        return _open(package)
    except Exception as exc:  # noqa: BLE001 - a package that will not load is rebuilt
        warnings.warn(f"the cached compiled step {package} could not be loaded "
                      f"({type(exc).__name__}); building it again", RuntimeWarning,
                      stacklevel=3)
        return None


def _prune(folder: Path, keep: int = KEEP) -> None:
    """Delete all but the ``keep`` most recently used packages (and their records)."""
    packages = sorted(folder.glob("*.pt2"), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in packages[keep:]:
        old.unlink(missing_ok=True)
        old.with_suffix(".json").unlink(missing_ok=True)


def load_or_build(step: ExplicitStep, device: torch.device, x: torch.Tensor,
                  eps: torch.Tensor, kl_weight: float | torch.Tensor,
                  announce: Callable[[str], None] | None = None,
                  adam: AdamState | None = None,
                  tally: Tally | None = None) -> tuple[AotStep, bool]:
    """``step`` compiled for inputs shaped as ``x``, ``eps`` and ``kl_weight``, with Adam's
    update folded in where ``adam`` is given and the loop's ``tally`` where it is: loaded
    from the cache if it holds this step, else built (12-24 s on 2 CPU cores) and cached; a
    build is first ``announce``d.
    Returns (the step, whether it was loaded from the cache).
    Raises :class:`RunError` (one line) if it cannot be built, for example with no C++
    compiler, or no writable cache folder."""
    if not step.closed:
        raise ValueError("ahead-of-time compilation covers the closed-form losses")
    weight = (kl_weight if isinstance(kl_weight, torch.Tensor)
              else torch.full((), float(kl_weight), device=device))
    args = (x, eps, weight)
    description = describe(step, args, adam, tally)
    folder = cache_dir()
    key = key_of(description)
    package, meta = folder / f"{key}.pt2", folder / f"{key}.json"
    runner = _load(package, meta, description)
    if runner is not None:
        with contextlib.suppress(OSError):  # most recently used: kept longest by _prune
            os.utime(package)
        return AotStep(step, runner, device, adam, tally), True
    if announce is not None:
        announce(f"compiling the training step for this machine and these shapes (once: "
                 f"later runs load it from {folder})")
    try:  # a cache folder that cannot be written is named as such, before any build
        folder.mkdir(parents=True, exist_ok=True)
        _write_atomic(folder / ".probe", lambda tmp: tmp.write_bytes(b""))
        (folder / ".probe").unlink()
    except OSError as exc:
        raise RunError(f"could not write the compiled training step to {folder} ({exc}); set "
                       f"{CACHE_ENV} to a writable folder, or train with --compile off") from exc
    try:
        started = time.perf_counter()
        _build(step, args, package, adam, tally)
        record = {"description": description, "sha256": _digest(package),
                  "build_seconds": round(time.perf_counter() - started, 3)}
        _write_atomic(meta, lambda tmp: tmp.write_text(json.dumps(record, indent=1)))
        runner = _open(package)
        _prune(folder)
    except Exception as exc:  # noqa: BLE001 - any compiler failure becomes one line
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        raise RunError(f"could not compile the training step on this machine "
                       f"({type(exc).__name__}: {first}); train with --compile off") from exc
    return AotStep(step, runner, device, adam, tally), False
