"""The compiled step built in a second process while the first steps train eagerly.

Under ``train.compile = 'auto'`` a run's plan (:mod:`vaelab.training.plan`) trains its first
``plan.handoff`` steps with the eager explicit step and the rest with the step compiled ahead
of time (:mod:`vaelab.training.aot`). Where the cache does not hold that compiled step yet,
:class:`BackgroundBuild` builds it meanwhile in a child process (``python -m
vaelab.training.background SPEC``), on a core the one-thread training loop leaves free, so a
machine's first run starts training at once instead of waiting for the compiler. At the
hand-off the loop waits for the child if it has not finished (its training clock stopped),
then loads the package from the cache.

The hand-off step follows from the config alone, never from what the cache holds, so a first
run and a later one compute the same bits. The child rebuilds the same step from the run's
resolved configs and shapes (weights do not enter a package's key: they are inputs) and
checks that its key is the one the loop expects; any failure is written to the child's log,
and the loop then builds or falls back as a foreground build would.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from vaelab.config import RunConfig
from vaelab.models import build_model
from vaelab.signals import SignalExit, exit_on_signals
from vaelab.training.aot import AdamTensors, cache_dir, describe, key_of, load_or_build
from vaelab.training.optim import Adam
from vaelab.training.stack import ModelStack
from vaelab.training.tally import Tally


def step_key(stack: ModelStack, optimizer: Adam, tally: Tally, x: torch.Tensor,
             eps: torch.Tensor, kl_weight: float | torch.Tensor, adam_folded: bool,
             tally_folded: bool) -> str:
    """The cache key of the compiled step :func:`~vaelab.training.aot.load_or_build` would
    load for these tensors (no tensor is changed)."""
    step = stack.explicit_step()
    weight = (kl_weight if isinstance(kl_weight, torch.Tensor)
              else torch.full((), float(kl_weight), device=x.device))
    adam = AdamTensors.of(optimizer, step) if adam_folded else None
    return key_of(describe(step, (x, eps, weight), adam, tally if tally_folded else None))


def is_cached(key: str) -> bool:
    """Whether the cache holds a package (and its record) under ``key``; whether it is sound is
    checked when it is loaded."""
    folder = cache_dir()
    return (folder / f"{key}.pt2").exists() and (folder / f"{key}.json").exists()


class BackgroundBuild:
    """A child process building one compiled step into the cache (see the module docstring).
    ``spec``: what :func:`build_from_spec` needs; the child is stopped by :meth:`stop`, and
    with the run if the run ends first."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.key = spec["key"]
        folder = Path(tempfile.mkdtemp(prefix="vaelab-build-"))
        self.folder = folder
        self.spec_path = folder / "spec.json"
        self.spec_path.write_text(json.dumps(spec))
        self.log_path = folder / "build.log"
        self.started = time.perf_counter()
        try:
            with open(self.log_path, "wb") as log:
                # a session of its own: Ctrl-C reaches the run, which then stops the child
                # and the compiler it runs (stop() signals the whole group)
                self.process = subprocess.Popen(
                    [sys.executable, "-m", "vaelab.training.background", str(self.spec_path)],
                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                    start_new_session=True)
        except OSError:
            self._remove_files()
            raise

    def done(self) -> bool:
        return self.process.poll() is not None

    def wait(self, poll: float = 0.05, should_stop: Any = None) -> bool:
        """Wait until the child ends; True if it built the step. ``should_stop()``, checked
        while waiting, ends the wait early (then the child is stopped and False returned)."""
        while self.process.poll() is None:
            if should_stop is not None and should_stop():
                self.stop()
                return False
            time.sleep(poll)
        return self.process.returncode == 0

    def failure(self) -> str:
        """The last line the child wrote (why it failed), or a note that it wrote none."""
        try:
            lines = self.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            lines = []
        return lines[-1][:200] if lines else f"exit status {self.process.returncode}"

    def stop(self) -> None:
        """Stop the child and everything it started, and remove its files."""
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self._remove_files()

    def _remove_files(self) -> None:
        for path in (self.spec_path, self.log_path):
            path.unlink(missing_ok=True)
        try:
            self.folder.rmdir()
        except OSError:
            pass


def build_spec(configs: list[RunConfig], key: str, x_shape: tuple[int, ...],
               eps_shape: tuple[int, ...], kl_shape: tuple[int, ...] | None,
               adam_folded: bool, tally_folded: bool, tally_shape: tuple[int, ...]
               ) -> dict[str, Any]:
    """What the child needs to rebuild the step: the resolved configs, the inputs' shapes
    (``kl_shape`` None: the KL weight is a float), what the step folds in, torch's thread
    count (part of the key) and the expected key."""
    return {"configs": [c.to_json() for c in configs], "key": key, "x": list(x_shape),
            "eps": list(eps_shape), "kl": None if kl_shape is None else list(kl_shape),
            "adam_folded": adam_folded, "tally_folded": tally_folded,
            "tally": list(tally_shape), "threads": torch.get_num_threads()}


def build_from_spec(spec: dict[str, Any]) -> None:
    """Build (or find) the step ``spec`` describes in the cache; a RuntimeError if the step
    rebuilt here has another key than the one the run expects."""
    torch.set_num_threads(int(spec["threads"]))
    configs = [RunConfig.from_json(text) for text in spec["configs"]]
    models = [build_model(c) for c in configs]  # any weights: they are inputs, not in the key
    if configs[0].data.standardize:
        for model in models:
            dim = model.in_channels
            model.set_standardization(torch.zeros(dim), torch.ones(dim))
    stack = ModelStack(models)
    optimizer = Adam(list(stack.params.values()), [c.optim.lr for c in configs])
    tally = Tally.start(torch.zeros(spec["tally"]), 0)
    x, eps = torch.zeros(spec["x"]), torch.zeros(spec["eps"])
    kl: float | torch.Tensor = (configs[0].loss.kld_weight if spec["kl"] is None
                                else torch.zeros(spec["kl"]))
    key = step_key(stack, optimizer, tally, x, eps, kl, spec["adam_folded"],
                   spec["tally_folded"])
    if key != spec["key"]:
        raise RuntimeError(f"the step rebuilt in the background has key {key}, the run "
                           f"expects {spec['key']}")
    explicit = stack.explicit_step()
    adam = AdamTensors.of(optimizer, explicit) if spec["adam_folded"] else None
    load_or_build(explicit, torch.device("cpu"), x, eps, kl, None, adam,
                  tally if spec["tally_folded"] else None)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    # the run stops this child with SIGTERM: as an exception (not the default death), so the
    # cache's atomic writes remove their temporary files on the way out
    try:
        with exit_on_signals():
            build_from_spec(json.loads(Path(args[0]).read_text()))
    except SignalExit as stop:
        print(stop, flush=True)
        return 128 + stop.signum
    except Exception as exc:  # noqa: BLE001 - the run reads this one line from the log
        print(f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc) else ''}",
              flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
