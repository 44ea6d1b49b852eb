"""Write the bytecode of the modules vaelab's commands import, once, at set-up.

pip installs with --no-compile: compiling every file of torch, Ray and the rest would slow
the set-up for files no command imports. Python then writes a module's bytecode at its first
import, unless PYTHONDONTWRITEBYTECODE is set (as in many containers): then every process
compiles all its imports again, seconds per command. This imports what the commands import,
with bytecode writing on, so each of those modules is compiled once here.

    .venv/bin/python scripts/bytecode.py
"""

from __future__ import annotations

import importlib
import sys

#: what vaelab's commands import (training, the compiled step, evaluation, reports)
MODULES = [
    "vaelab.cli.main", "vaelab.runs", "vaelab.evaluation", "vaelab.report", "vaelab.metrics",
    "vaelab.baselines", "vaelab.plots", "vaelab.training.aot", "vaelab.training.background",
    "sklearn.datasets", "sklearn.mixture", "sklearn.neighbors", "sklearn.ensemble",
    "sklearn.model_selection", "scipy.stats", "scipy.spatial.distance",
    "plotly.offline", "torch._inductor.config", "torch._inductor.compile_fx",
    "torch._inductor.package", "torch.export", "torch._dynamo",
]
#: the sweep extra's, where it is installed: the driver, a trial's worker and Ray's own
#: Python helpers (each a process of its own)
OPTIONAL = [
    "vaelab.sweep.driver", "vaelab.sweep.trial", "ray.tune", "ray.tune.search.optuna",
    "ray.tune.schedulers", "optuna", "ray._private.workers.default_worker",
    "ray._private.log_monitor", "ray.dashboard.agent", "ray._private.runtime_env.agent.main",
    "zuko",
]


def main() -> int:
    sys.dont_write_bytecode = False  # this process's imports write their bytecode
    sys.argv = sys.argv[:1]  # (a helper's module may read arguments when imported)
    done = 0
    for name in MODULES + OPTIONAL:
        try:
            importlib.import_module(name)
            done += 1
        except ImportError:
            if name in MODULES:
                raise
        except Exception as exc:  # noqa: BLE001 - an optional helper that cannot be imported
            print(f"bytecode.py: skipped {name}: {type(exc).__name__}", file=sys.stderr)
    imported = sum(1 for m in list(sys.modules.values())
                   if (getattr(m, "__file__", None) or "").endswith(".py"))
    print(f"{imported} modules imported from {done} entry points; their bytecode is written")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
