"""The explicit step compiled ahead of time (AOTInductor), cached on disk, loaded fast.

A step whose loss is in closed form (the seed's loss, the IWAE bound) is a pure function of
the batch, the noise, the KL weight and the model's tensors. Here it is exported once
(``torch.export``), compiled by AOTInductor into a shared library, and kept in a package file
under the cache folder (:func:`cache_dir`). A later process finds the package by its key and
loads it without tracing anything; each call then goes straight to the generated C++, with none of
``torch.compile``'s per-process tracing or per-call guards.

The key is a hash of everything the generated code depends on: the versions of vaelab, torch
and Python, the CPU (architecture, torch's vector ISA) and torch's thread count (baked into
the generated loops), the step's kind and settings, every input's name, shape and dtype, and
the source text of every vaelab module the traced step can reach (:func:`traced_modules`:
this module and everything it imports, so an edited loss or prior never reuses a stale
package). A package whose checksum (kept beside it) does not match is built again, with a
warning. Packages are written to a temporary file and renamed, so a cache never holds half a
package.

The package holds generated C++ and the library built from it (no pickle, no weights: the
tensors are inputs). Loading it runs that library, as torch.compile runs the ones it caches;
the folder should be writable by its user only, as any cache of compiled code.

Where the plan folds them in (:mod:`vaelab.training.plan`), the package also applies Adam's
update in place (:func:`vaelab.training.optim.adam_update`, the optimiser's own formula) and
keeps the loop's tally (:mod:`vaelab.training.tally`); otherwise it returns the gradients.
Numerically it computes the eager step's formulas, fused and rounded in another order: a
compiled run is not bit-identical to an eager one, but runs with the same package are
reproducible and resume bit for bit.
"""

from __future__ import annotations

import ast
import contextlib
import functools
import hashlib
import json
import logging
import os
import platform
import shutil
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import torch

from vaelab._version import __version__
from vaelab.errors import RunError
from vaelab.fileio import atomic_write
from vaelab.models.explicit import ExplicitStep
from vaelab.training.optim import Adam, adam_update
from vaelab.training.tally import Tally, tally_update

#: bump when the package layout or the key's fields change
FORMAT = 3
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


def traced_modules() -> dict[str, Path]:
    """The vaelab modules the exported step can run, by name, with their source files: this
    module and every vaelab module it imports, directly or not (read from their import
    statements, inside functions too; nothing is imported)."""
    root = Path(__file__).resolve().parents[1]  # the vaelab package

    def source(name: str) -> Path | None:
        rel = Path(*name.split(".")[1:])
        for path in (root / rel / "__init__.py", (root / rel).with_suffix(".py")):
            if path.is_file():
                return path
        return None  # a name imported from a module, not a module

    found: dict[str, Path] = {}
    todo = [__name__]
    while todo:
        name = todo.pop()
        path = None if name in found else source(name)
        if path is None:
            continue
        found[name] = path
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
            else:
                continue
            todo += [n for n in names if n == "vaelab" or n.startswith("vaelab.")]
    return dict(sorted(found.items()))


@functools.cache
def _source_digest() -> str:
    """sha256 of the source of :func:`traced_modules` (an edited step, in a development
    install with an unchanged version, gets a new key); read once per process."""
    h = hashlib.sha256()
    for name, path in traced_modules().items():
        h.update(name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def describe(step: ExplicitStep, args: tuple[torch.Tensor, ...],
             adam: AdamTensors | None = None, tally: Tally | None = None) -> dict[str, Any]:
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
        "vaelab": __version__,
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


class AdamTensors(NamedTuple):
    """An :class:`~vaelab.training.optim.Adam`'s tensors, for a compiled step that also
    updates the weights; the moments in the step's ``grad_names`` order."""

    betas: tuple[float, float]
    eps: float
    lr: torch.Tensor  # 0-d, filled by the optimiser's set_factor
    steps: torch.Tensor  # [n] each parameter's step count
    exp_avgs: list[torch.Tensor]
    exp_avg_sqs: list[torch.Tensor]

    def tensors(self) -> list[torch.Tensor]:
        return [self.lr, self.steps, *self.exp_avgs, *self.exp_avg_sqs]

    @classmethod
    def of(cls, optimizer: Adam, step: ExplicitStep) -> AdamTensors:
        """``optimizer``'s tensors in ``step``'s order; a ValueError unless it updates
        exactly the tensors the step computes gradients for, at one shared rate."""
        targets = [step.named[name] for name in step.grad_names]
        index = {id(p): i for i, p in enumerate(optimizer.params)}
        if (not optimizer.shared or len(targets) != len(index)
                or any(id(t) not in index for t in targets)):
            raise ValueError("Adam's update is folded in only over the step's own tensors")
        order = [index[id(t)] for t in targets]
        if optimizer.lr_tensor is None:
            optimizer.use_device_scalars()
        return cls(optimizer.betas, optimizer.eps, optimizer.lr_tensor, optimizer.step_all,
                   [optimizer.exp_avgs[i] for i in order],
                   [optimizer.exp_avg_sqs[i] for i in order])


class _Program(torch.nn.Module):
    """:meth:`ExplicitStep.gradients` as a module of its inputs alone, for ``torch.export``:
    forward(x, eps, kl_weight, *tensors in ``names`` order) -> (terms, z, *gradients in
    ``step.grad_names`` order); with ``adam``, forward(..., *tensors, *Adam's tensors) ->
    (terms, z), the weights and Adam's state updated in place; with ``tally``, the tally's
    three tensors follow (last) and are updated in place too."""

    def __init__(self, step: ExplicitStep, adam: AdamTensors | None, tally: bool) -> None:
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
        rotation = named.pop("data_rotation", None)
        net = {name: named.pop(name) for name in self.net_names}
        step = ExplicitStep(self._template[0], net, shift, scale, extras=named,
                            rotation=rotation)
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
        steps.add_(1)
        t = steps[0]
        step_size = lr / (1.0 - torch.pow(betas[0], t))
        bias2_sqrt = torch.sqrt(1.0 - torch.pow(betas[1], t))
        adam_update([every[name] for name in grads], list(grads.values()), state[:n],
                    state[n:], step_size, bias2_sqrt, betas, adam_eps)
        return terms, z


class AotStep:
    """``step`` (closed-form loss, one model or a stack) as a loaded AOTInductor package,
    called as the step itself: ``(x, eps, kl_weight) -> (loss terms, z)``, the gradients in
    ``.grad``; or, built with an :class:`AdamTensors` (``updates``), the weights and Adam's
    state updated in place instead, with no ``.grad``; built with a :class:`Tally`
    (``tallies``), that tally updated in place too. Build or load it with
    :func:`load_or_build`. The tensors are taken once: an optimizer that replaces its state
    tensors (``load_state_dict``) needs a new AotStep."""

    def __init__(self, step: ExplicitStep, runner: Any, device: torch.device,
                 adam: AdamTensors | None = None, tally: Tally | None = None) -> None:
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


#: torch's CPU capabilities (``torch.backends.cpu.get_cpu_capability()``) where the compiled
#: step was measured faster than the eager one; with no vector instructions the eager step was
#: faster (``benchmarks/compile_pays.py``, BENCHMARKS.md "Compiling on each kind of CPU")
PAYING_CAPABILITIES = ("AVX2", "AVX512")


def compile_blocker() -> str | None:
    """Why ``train.compile = 'auto'`` keeps this machine's step eager, or None where compiling
    pays: a C++ compiler must be on the PATH (``$CXX``, else ``g++``, as Inductor looks for
    one), and torch must run vector instructions where the compiled step was measured faster.
    A property of the machine, never of the cache, so a run's plan follows from its config and
    machine."""
    cxx = os.environ.get("CXX") or "g++"
    if shutil.which(cxx) is None:
        return f"no C++ compiler ({cxx}) on this machine's PATH"
    capability = torch.backends.cpu.get_cpu_capability()
    if capability not in PAYING_CAPABILITIES:
        return (f"torch runs this CPU's step with capability {capability}, where the compiled "
                f"step was measured slower than the eager one (it pays with "
                f"{' or '.join(PAYING_CAPABILITIES)})")
    return None


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class _ProxyFallbackNote(logging.Filter):
    """Drops Inductor's note that an op with no C shim (the full decoder covariance's
    triangular solve) runs through its proxy executor: a correct build, and nothing the
    user can act on, printed on every first build of such a step."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "missing a c-shim implementation" not in record.getMessage()


@contextlib.contextmanager
def _quiet_fallback_notes() -> Any:
    logger, note = logging.getLogger("torch._inductor.ir"), _ProxyFallbackNote()
    logger.addFilter(note)
    try:
        yield
    finally:
        logger.removeFilter(note)


def _build(step: ExplicitStep, args: tuple[torch.Tensor, ...], package: Path,
           adam: AdamTensors | None = None, tally: Tally | None = None) -> None:
    # copies: exporting runs the step (and the in-place updates) on these
    tensors = [*step.inputs().values(), *(adam.tensors() if adam is not None else []),
               *(tally.tensors() if tally is not None else [])]
    example = (*args, *(t.detach().clone() for t in tensors))
    with warnings.catch_warnings():  # torch's own deprecation notices while packaging
        warnings.simplefilter("ignore", FutureWarning)
        with torch.no_grad():
            program = torch.export.export(_Program(step, adam, tally is not None), example,
                                          strict=False)
        # the vector ISA is the one torch itself runs (it is part of the key): Inductor's
        # probe of it, which compiles and runs a test program per ISA, is skipped
        import torch._inductor.config as inductor_config

        with inductor_config.patch({"cpp.vec_isa_ok": True}), _quiet_fallback_notes():
            atomic_write(package, lambda tmp: torch._inductor.aoti_compile_and_package(
                program, package_path=str(tmp)))


def _open(package: Path) -> Any:
    """The package's runner: ``run(flat list of input tensors) -> flat list of outputs``.

    This is the loader ``torch._inductor.aoti_load_package`` wraps, called directly: that
    function first imports Inductor and probes the CPU's vector ISA by compiling test programs
    (in every process) only to warn on a mismatch, which the key here already
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
                  adam: AdamTensors | None = None,
                  tally: Tally | None = None) -> tuple[AotStep, bool]:
    """``step`` compiled for inputs shaped as ``x``, ``eps`` and ``kl_weight``, with Adam's
    update folded in where ``adam`` is given and the loop's ``tally`` where it is: loaded
    from the cache if it holds this step, else built and cached; a
    build is first ``announce``d.
    Returns (the step, whether it was loaded from the cache).
    Raises :class:`RunError` (one line) if it cannot be built, for example with no C++
    compiler, or no writable cache folder."""
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
        atomic_write(folder / ".probe", lambda tmp: tmp.write_bytes(b""))
        (folder / ".probe").unlink()
    except OSError as exc:
        raise RunError(f"could not write the compiled training step to {folder} ({exc}); set "
                       f"{CACHE_ENV} to a writable folder, or train with --compile off") from exc
    try:
        started = time.perf_counter()
        _build(step, args, package, adam, tally)
        record = {"description": description, "sha256": _digest(package),
                  "build_seconds": round(time.perf_counter() - started, 3)}
        atomic_write(meta, lambda tmp: tmp.write_text(json.dumps(record, indent=1)))
        runner = _open(package)
        _prune(folder)
    except Exception as exc:  # noqa: BLE001 - any compiler failure becomes one line
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        raise RunError(f"could not compile the training step on this machine "
                       f"({type(exc).__name__}: {first}); train with --compile off") from exc
    return AotStep(step, runner, device, adam, tally), False
