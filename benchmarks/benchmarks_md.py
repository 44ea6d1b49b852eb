"""Write one benchmark's section of BENCHMARKS.md, between its own markers, leaving the rest."""

from __future__ import annotations

import os
import platform
import re
from pathlib import Path

PATH = Path(__file__).resolve().parent.parent / "BENCHMARKS.md"


def update_section(key: str, title: str, command: str, body: str) -> None:
    """Replace the text between ``<!-- key:begin -->`` and ``<!-- key:end -->`` with ``body``;
    a section not there yet is appended under ``title`` with its ``command``."""
    begin, end = f"<!-- {key}:begin -->", f"<!-- {key}:end -->"
    text = PATH.read_text() if PATH.exists() else "# Benchmarks\n"
    block = f"{begin}\n{body}\n{end}"
    if begin in text:
        text = re.sub(re.escape(begin) + ".*?" + re.escape(end), lambda _: block, text,
                      flags=re.S)
    else:
        text += f"\n## {title}\n\n`{command}`\n\n{block}\n"
    PATH.write_text(text)


def machine() -> str:
    """CPU model, cores this process may use, torch threads, Python and torch versions."""
    import torch

    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return (f"{cpu}, {cores} cores available, {torch.get_num_threads()} torch threads, "
            f"Python {platform.python_version()}, torch {torch.__version__}")
