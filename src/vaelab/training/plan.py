"""The step plan: how a training step runs, decided in one place from the config and the device.

:func:`plan_step` makes every choice (explicit gradients or autograd; compiled ahead of time,
under ``torch.compile``, or eager; replayed as a CUDA graph; Adam's update and the loop's
tally folded into a compiled step) and gives each its reason. It looks at the config, the
device and the number of models only, never at what a cache holds, so a run's plan follows
from its config and machine. ``summary.json`` records the plan, ``vaelab train --dry-run``
prints it, and :mod:`vaelab.training.step` builds the step it describes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch

from vaelab.config import RunConfig, TrainConfig
from vaelab.data import DataSource
from vaelab.data.files import FileSource
from vaelab.devices import resolve_device
from vaelab.errors import ConfigError
from vaelab.training.aot import compile_blocker

#: the shortest run (in steps, and in seconds when time-limited) that ``train.compile =
#: 'auto'`` compiles: a first build on a machine takes a while, which a shorter run does not
#: repay (BENCHMARKS.md); later runs load the build from the cache
COMPILE_MIN_STEPS = 10_000
COMPILE_MIN_SECONDS = 10.0

EXPLICIT, AUTOGRAD = "explicit", "autograd"
AOT, TORCH_COMPILE, EAGER = "ahead-of-time", "torch.compile", "eager"


@dataclass(frozen=True)
class StepPlan:
    """How a step runs; ``reasons`` says why, one line per choice."""

    models: int
    stacked: bool  # the models' weights stacked along a leading axis (M > 1)
    gradients: str  # EXPLICIT or AUTOGRAD
    compile: str  # AOT, TORCH_COMPILE or EAGER
    cuda_graph: bool
    adam_folded: bool  # the compiled step applies Adam's update itself
    tally_folded: bool  # the compiled step keeps the loop's tally itself
    reasons: dict[str, str] = field(default_factory=dict)
    handoff: int = 0  # the steps trained eagerly before the compiled step takes over

    @property
    def compiled(self) -> bool:
        return self.compile != EAGER

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    def lines(self) -> list[str]:
        """The plan as text, a choice and its reason per line (``--dry-run``)."""
        values = {"models": f"{self.models} ({'stacked' if self.stacked else 'one module'})",
                  "gradients": self.gradients, "compile": self.compile,
                  "cuda_graph": "yes" if self.cuda_graph else "no",
                  "adam_folded": "yes" if self.adam_folded else "no",
                  "tally_folded": "yes" if self.tally_folded else "no",
                  "handoff": (f"after step {self.handoff:,}" if self.handoff
                              else "none")}
        return [f"{key:<13}{value}" + (f"  ({self.reasons[key]})" if key in self.reasons
                                        else "") for key, value in values.items()]


def closed_form(config: RunConfig) -> bool:
    """Whether the loss is the seed's, taken in closed form with its gradients."""
    return config.loss.name == "seed_mse" and config.model.prior == "standard"


def iwae_closed_form(config: RunConfig) -> bool:
    """Whether the loss is the IWAE bound with the standard or mixture prior, also in closed
    form."""
    return config.loss.name == "iwae" and config.model.prior in ("standard", "mixture")


def explicit_blocker(config: RunConfig) -> str | None:
    """Why explicit gradients cannot train ``config`` (None: they can)."""
    m = config.model
    if m.name != "simple":
        return f"model.name is {m.name!r} (explicit gradients cover 'simple')"
    if m.activation not in ("leaky_relu", "relu"):
        return f"model.activation is {m.activation!r} (explicit gradients cover leaky_relu, relu)"
    if not (closed_form(config) or iwae_closed_form(config)):
        return ("explicit gradients cover the closed-form losses: loss.name 'seed_mse' with the "
                "standard prior, or 'iwae' with the standard or mixture prior")
    return None


def long_run(tc: TrainConfig) -> bool:
    """Whether a run is long enough for ``train.compile = 'auto'`` to compile it."""
    steps_ok = tc.steps is None or tc.steps >= COMPILE_MIN_STEPS
    time_ok = tc.time_limit is None or tc.time_limit >= COMPILE_MIN_SECONDS
    return steps_ok and time_ok


def graph_blocker(config: RunConfig, device: torch.device, fixed_set: bool,
                  compiled: bool) -> str | None:
    """Why this run's step cannot be captured as a CUDA graph, or None if it can."""
    if device.type != "cuda":
        return f"a CUDA graph needs a CUDA device (this run trains on {device.type})"
    if fixed_set:
        return ("a fixed training set (data.n_train or a file) advances its epoch position "
                "in Python at every step")
    if compiled:
        return ("train.compile = 'on' already captures its step as CUDA graphs "
                "(mode 'reduce-overhead')")
    if config.data.backend == "sklearn":
        return "the sklearn data backend draws its batches on the CPU"
    return None


def plan_step(configs: list[RunConfig], device: torch.device, fixed_set: bool,
              cpu_blocker: str | None = None) -> StepPlan:
    """The plan for training ``configs`` (one model, or a group differing only in seed,
    learning rate and KL weight) on ``device``; ``fixed_set``: the data is a fixed training
    set (``data.n_train`` or a file); ``cpu_blocker``: why this machine's CPU keeps ``auto``
    eager (:func:`vaelab.training.aot.compile_blocker`), or None. A combination that cannot
    run is a ConfigError."""
    config, count = configs[0], len(configs)
    stacked = count > 1
    tc = config.train
    reasons: dict[str, str] = {}
    handoff = 0
    blocker = explicit_blocker(config)
    if blocker is not None and tc.gradients == EXPLICIT:
        raise ConfigError(f"train.gradients = 'explicit' cannot train this model: {blocker}; "
                          "use auto or autograd")
    if blocker is not None:
        explicit, reasons["gradients"] = False, blocker
    elif tc.gradients != "auto":
        explicit, reasons["gradients"] = tc.gradients == EXPLICIT, f"train.gradients = " \
                                                                   f"{tc.gradients!r}"
    elif device.type == "cuda" and tc.compile == "on":
        explicit, reasons["gradients"] = False, ("train.compile = 'on' on CUDA compiles the "
                                                 "autograd step")
    else:
        explicit, reasons["gradients"] = True, ("the loss is in closed form: its gradients "
                                                "written out skip autograd's graph")
    if device.type == "cuda" and tc.compile == "on" and explicit:
        raise ConfigError("train.gradients = 'explicit' cannot be combined with train.compile "
                          "= 'on' on CUDA (the compiled explicit step is built for the CPU; "
                          "on CUDA --cuda-graph replays the explicit step instead)")

    aot_ok = explicit and device.type == "cpu"
    if tc.compile == "off":
        mode, reasons["compile"] = EAGER, "train.compile = 'off'"
    elif tc.compile == "on":
        if aot_ok:
            mode, reasons["compile"] = AOT, ("train.compile = 'on', a closed-form loss on the "
                                             "CPU: built once per machine and shapes, cached")
        elif stacked:
            mode, reasons["compile"] = EAGER, "a group's autograd (vmap) step is not compiled"
        else:
            mode, reasons["compile"] = TORCH_COMPILE, "train.compile = 'on': the autograd step"
    elif not aot_ok:
        mode = EAGER
        reasons["compile"] = ("auto compiles the explicit closed-form step on the CPU only; "
                              "elsewhere compiling was measured slower or not repaid")
    elif cpu_blocker is not None:
        mode, reasons["compile"] = EAGER, f"auto: {cpu_blocker}"
    elif not long_run(tc):
        mode = EAGER
        reasons["compile"] = (f"auto: a run shorter than {COMPILE_MIN_STEPS:,} steps or "
                              f"{COMPILE_MIN_SECONDS:g} s does not repay a first build")
    else:
        handoff = tc.handoff
        mode, reasons["compile"] = AOT, ("auto: the explicit closed-form step on the CPU, "
                                         "built once per machine and shapes, cached")
        if tc.steps is not None and handoff >= tc.steps:
            mode, handoff = EAGER, 0
            reasons["compile"] = "auto: train.handoff covers every step, so none is compiled"
            reasons["handoff"] = f"train.handoff = {tc.handoff} >= train.steps"
        elif handoff:
            reasons["handoff"] = ("the first steps train eagerly while the compiled step is "
                                  "built in a second process (or loaded from the cache)")
        else:
            reasons["handoff"] = "train.handoff = 0: the step is built before training"
    if "handoff" not in reasons:
        reasons["handoff"] = ("only compile = 'auto' hands off from the eager step"
                              if mode == AOT else "nothing is compiled ahead of time")

    graph_reason = graph_blocker(config, device, fixed_set, mode == TORCH_COMPILE)
    if tc.cuda_graph == "on" and graph_reason is not None:
        raise ConfigError(f"train.cuda_graph = 'on' cannot apply to this run: {graph_reason}")
    graphed = tc.cuda_graph != "off" and graph_reason is None
    reasons["cuda_graph"] = ("train.cuda_graph = 'off'" if tc.cuda_graph == "off"
                             else graph_reason or "the whole step replayed: one launch a step")
    shared_rate = len({c.optim.lr for c in configs}) == 1
    folded = mode == AOT and shared_rate
    if mode != AOT:
        reasons["adam_folded"] = "only the ahead-of-time step folds Adam's update in"
    elif not shared_rate:
        reasons["adam_folded"] = "the models' learning rates differ: Adam runs on its own"
    else:
        reasons["adam_folded"] = "the compiled step updates the weights and Adam's state"
    reasons["tally_folded"] = ("the compiled step sums the loss terms too" if mode == AOT
                               else "the loop sums the loss terms")
    return StepPlan(count, stacked, EXPLICIT if explicit else AUTOGRAD, mode, graphed, folded,
                    mode == AOT, reasons, handoff)


def plan_for(configs: list[RunConfig], source: DataSource,
             device: torch.device | None = None) -> StepPlan:
    """The step plan of training ``configs`` (resolved) on ``source``."""
    first = configs[0]
    fixed_set = isinstance(source, FileSource) or first.data.n_train is not None
    device = device or resolve_device(first.train.device)
    blocker = compile_blocker() if device.type == "cpu" and first.train.compile == "auto" \
        else None
    return plan_step(configs, device, fixed_set, blocker)
