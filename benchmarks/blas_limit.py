"""The BLAS limit of a training step: its matrix products alone, timed on this machine.

A step's products are recorded as it runs (a ``TorchDispatchMode`` sees every ``mm``,
``addmm``, ``bmm`` and ``baddbmm`` with its operands' shapes and strides), per step, as the
difference of two runs of different lengths (so setup and the final metrics cancel). Replaying
exactly those products back to back, on operands of the same shapes and layouts, is the
fastest the step could run if everything but its products were free: the *limit*, in steps/s.
The step's FLOPs count 2 n k m per product (a multiply and an add per term; bias adds and
everything else not counted). The compiled step calls the same products (AOTInductor keeps
them as BLAS calls), so one limit serves both.

Used by speed.py; on its own::

    python benchmarks/blas_limit.py --preset seed --batch 512
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from typing import NamedTuple

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from vaelab.resolve import build_config
from vaelab.training.loop import fit

_PRODUCTS = {torch.ops.aten.mm.default: "mm", torch.ops.aten.addmm.default: "addmm",
             torch.ops.aten.bmm.default: "bmm", torch.ops.aten.baddbmm.default: "baddbmm"}

#: (op, ((shape, stride) of each tensor operand)): one product as the step calls it
Product = tuple[str, tuple[tuple[tuple[int, ...], tuple[int, ...]], ...]]


class _Recorder(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.seen: Counter[Product] = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
        name = _PRODUCTS.get(func)
        if name is not None:
            operands = tuple((tuple(a.shape), tuple(a.stride())) for a in args
                             if isinstance(a, torch.Tensor))
            self.seen[(name, operands)] += 1
        return func(*args, **(kwargs or {}))


def flops(product: Product) -> int:
    """2 n k m of one product (batched: times the batch)."""
    name, operands = product
    a, b = operands[-2][0], operands[-1][0]  # the two factors (addmm's first is the bias)
    batch = a[0] if name in ("bmm", "baddbmm") else 1
    return 2 * batch * a[-2] * a[-1] * b[-1]


class Limit(NamedTuple):
    products: dict[Product, float]  # each product and how many times a step calls it
    flops: float  # per step
    gemm_seconds: float  # per step, the products alone
    gflops: float  # the BLAS rate at the step's shapes: flops / gemm_seconds / 1e9
    steps_per_second: float  # the limit: 1 / gemm_seconds


def step_products(preset: str, batch: int, models: int = 1,
                  settings: dict | None = None) -> dict[Product, float]:
    """The products one eager step of ``preset`` calls (per step, from runs of 4 and 12)."""
    counts = []
    for steps in (4, 12):
        cfg = build_config(preset, settings={"batch_size": batch, "steps": steps,
                                             "device": "cpu", "frame_every": 0,
                                             "log_every": 1000, "compile": "off",
                                             **(settings or {})})
        recorder = _Recorder()
        with recorder:
            fit(cfg, progress=False)
        counts.append(recorder.seen)
    per_step = {p: (counts[1][p] - counts[0][p]) / 8 for p in counts[1]}
    return {p: n for p, n in per_step.items() if n > 0}


def _operand(shape: tuple[int, ...], stride: tuple[int, ...]) -> torch.Tensor:
    size = 1 + sum((s - 1) * st for s, st in zip(shape, stride, strict=True) if s)
    return torch.randn(size).as_strided(shape, stride)


def measure(products: dict[Product, float], rounds: int = 7,
            min_seconds: float = 0.2) -> Limit:
    """Time the products back to back on this machine's current threads: the best of
    ``rounds`` rounds, each at least ``min_seconds`` long."""
    calls = []
    for (name, operands), count in products.items():
        args = [_operand(*o) for o in operands]
        fn = getattr(torch, name)
        calls.extend([(fn, args)] * round(count))
    total_flops = sum(flops(p) * n for p, n in products.items())

    def one_step() -> None:
        for fn, args in calls:
            fn(*args)

    for _ in range(20):
        one_step()
    reps, best = 1, float("inf")
    while True:  # enough steps per round for min_seconds
        t0 = time.perf_counter()
        for _ in range(reps):
            one_step()
        if time.perf_counter() - t0 >= min_seconds:
            break
        reps *= 2
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(reps):
            one_step()
        best = min(best, (time.perf_counter() - t0) / reps)
    return Limit(products, total_flops, best, total_flops / best / 1e9, 1 / best)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", default="seed")
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    products = step_products(args.preset, args.batch)
    limit = measure(products)
    for (name, operands), n in sorted(products.items(), key=lambda kv: -flops(kv[0])):
        print(f"{n:g} x {name} {' '.join(str(list(o[0])) for o in operands)}")
    print(f"{limit.flops / 1e6:.1f} MFLOP per step; the products alone: {limit.gflops:.0f} "
          f"GFLOP/s, a limit of {limit.steps_per_second:.0f} steps/s "
          f"({args.threads} thread(s))")


if __name__ == "__main__":
    main()
