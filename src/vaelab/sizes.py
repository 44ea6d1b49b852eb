"""Sizes bounded before anything is allocated or written: what a command will need, against
what the machine can give.

Each estimate is a lower bound on the memory a command holds at once (float32 tensors; the
weights with their gradients and Adam's two moments; the activations one step keeps for its
backward pass; the points a command returns), so a refusal is never a false alarm for a run
that would have fitted. The memory available is the least of ``MemAvailable`` in
``/proc/meminfo``, a cgroup's memory limit less its usage, and ``RLIMIT_AS`` less the
address space this process already maps. A command that cannot fit is refused in one line
naming the setting that costs most, before its run directory or output file is created.
"""

from __future__ import annotations

import dataclasses
import resource
from collections.abc import Callable
from pathlib import Path

from vaelab.config import RunConfig
from vaelab.errors import ConfigError
from vaelab.presets import DEFAULT_WIDTHS

#: bytes per value: vaelab trains and evaluates in float32
FLOAT = 4
#: the most models one group (``--seeds``, ``--sweep``) trains at once: the models share one
#: step, whose time grows with their number
MAX_GROUP_MODELS = 128


def _meminfo_available(path: str = "/proc/meminfo") -> int | None:
    try:
        with open(path, encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text(encoding="ascii").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _cgroup_available() -> int | None:
    """The memory the cgroup of this process may still take (v2, else v1), or None."""
    try:
        lines = Path("/proc/self/cgroup").read_text(encoding="ascii").splitlines()
    except OSError:
        return None
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        rel = parts[2].lstrip("/")
        if parts[0] == "0" and parts[1] == "":  # cgroup v2
            base = Path("/sys/fs/cgroup") / rel
            limit, usage = _read_int(base / "memory.max"), _read_int(base / "memory.current")
        elif "memory" in parts[1].split(","):  # cgroup v1
            base = Path("/sys/fs/cgroup/memory") / rel
            limit = _read_int(base / "memory.limit_in_bytes")
            usage = _read_int(base / "memory.usage_in_bytes")
        else:
            continue
        if limit is not None and limit < 1 << 60:
            return max(0, limit - (usage or 0))
    return None


def _address_space_available() -> int | None:
    """``RLIMIT_AS`` (soft) less what this process maps now, or None when unlimited."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_AS)
    if soft == resource.RLIM_INFINITY:
        return None
    mapped = 0
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmSize:"):
                    mapped = int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return max(0, soft - mapped)


def available_bytes() -> int | None:
    """The memory this process can still allocate (see the module docstring); None if the
    machine says nothing (then nothing is refused)."""
    known = [b for b in (_meminfo_available(), _cgroup_available(), _address_space_available())
             if b is not None]
    return min(known) if known else None


def human(n: float) -> str:
    """Bytes as '400 GB', '12 MB' (powers of 1000, two significant figures at most)."""
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            value = n / size
            return f"{value:.0f} {unit}" if value >= 10 else f"{value:.1f} {unit}"
    return f"{n:.0f} bytes"


def check_fits(need: int, setting: str, doing: str, available: int | None = None) -> None:
    """A ConfigError naming ``setting`` when ``need`` bytes exceed what is available."""
    have = available_bytes() if available is None else available
    if have is not None and need > have:
        raise ConfigError(f"{setting} needs about {human(need)} of memory {doing}, more than "
                          f"the {human(have)} available; lower it")


# -- what each command needs ----------------------------------------------------------------

def _layers(config: RunConfig) -> tuple[list[int], list[int]]:
    m = config.model
    d = m.in_channels or 2
    latent = m.latent_dim or d
    hidden = list(m.hidden_dims) if m.hidden_dims is not None else DEFAULT_WIDTHS  # (the most)
    decoder = list(m.decoder_hidden_dims) if m.decoder_hidden_dims else hidden[::-1]
    return [d, *hidden, 2 * latent], [latent, *decoder, d]


def _parameters(widths: list[int]) -> int:
    return sum(a * b + b for a, b in zip(widths[:-1], widths[1:], strict=True))


def train_bytes(config: RunConfig, models: int = 1) -> int:
    """The least memory training ``models`` copies of ``config`` holds at once: weights,
    gradients and Adam's moments; one step's activations (points x IWAE samples x widths,
    each kept with its pre-activation for the backward pass); a fixed training set."""
    enc, dec = _layers(config)
    params = _parameters(enc) + _parameters(dec)
    samples = config.loss.k if config.loss.name == "iwae" else 1
    rows = config.train.batch_size * samples
    activations = rows * (2 * (sum(enc[1:-1]) + sum(dec[1:-1])) + 3 * (enc[-1] + dec[-1]))
    if config.loss.decoder_std_mode == "full":  # L(z), D x D per point, and its solve
        activations += rows * 3 * enc[0] ** 2
    data = (config.data.n_train or 0) * enc[0]
    return FLOAT * models * (4 * params + activations + data)


def _flag(key: str, value: object) -> str:
    if isinstance(value, list):
        value = ",".join(str(v) for v in value)
    return f"--{key.replace('_', '-')} {value}"


def _train_candidates(config: RunConfig) -> list[tuple[str, RunConfig]]:
    """Each size setting of ``config`` named as its flag, with ``config`` as it would be
    with that setting small."""
    rep = dataclasses.replace
    m, lo, t, d = config.model, config.loss, config.train, config.data
    small = [128, 128]
    out = [(_flag("batch_size", t.batch_size), rep(config, train=rep(t, batch_size=128))),
           (_flag("hidden_dims", m.hidden_dims),
            rep(config, model=rep(m, hidden_dims=small,
                                  decoder_hidden_dims=m.decoder_hidden_dims)))]
    if m.decoder_hidden_dims:
        out.append((_flag("decoder_hidden_dims", m.decoder_hidden_dims),
                    rep(config, model=rep(m, decoder_hidden_dims=small))))
    if lo.name == "iwae":
        out.append((_flag("iwae_k", lo.k), rep(config, loss=rep(lo, k=1))))
    if d.n_train:
        out.append((_flag("n_train", d.n_train), rep(config, data=rep(d, n_train=2))))
    if m.latent_dim:
        out.append((_flag("latent_dim", m.latent_dim), rep(config, model=rep(m, latent_dim=2))))
    return out


def _costliest(need: Callable[[RunConfig], int], config: RunConfig) -> str:
    """The flag whose reduction saves the most memory."""
    return min(_train_candidates(config), key=lambda c: need(c[1]))[0]


def check_train(configs: list[RunConfig], available: int | None = None) -> None:
    """Refuse, in one line naming the costliest setting, training ``configs`` (resolved; one
    model, or a group) when it cannot fit in memory, or a group of more than
    :data:`MAX_GROUP_MODELS` models."""
    count = len(configs)
    if count > MAX_GROUP_MODELS:
        raise ConfigError(f"a group of {count} models is more than the {MAX_GROUP_MODELS} one "
                          "step trains at once; train it in several groups")
    config = configs[0]
    need = train_bytes(config, count)
    have = available_bytes() if available is None else available
    if have is None or need <= have:
        return
    setting = _costliest(lambda c: train_bytes(c, count), config)
    if count > 1 and train_bytes(config, 1) <= have:
        setting = f"{count} models at once (--seeds, --sweep)"
    check_fits(need, setting, "to train", have)


def sample_bytes(config: RunConfig, n: int) -> int:
    """``vaelab sample -n N``: z and the points (with their CSV text, about 16 bytes a
    value), and one chunk's decoder activations (:meth:`vaelab.models.BaseVAE.sample`
    decodes a large ``n`` in chunks)."""
    from vaelab.models.base import DECODE_MAX_VALUES

    _enc, dec = _layers(config)
    held = n * (dec[0] + 2 * dec[-1]) * FLOAT + n * dec[-1] * 16
    return held + FLOAT * min(n * sum(dec), DECODE_MAX_VALUES)


def points_bytes(n: int, dim: int) -> int:
    """``n`` points of ``dim`` values read or drawn, with their estimates and CSV text."""
    return n * (dim * (2 * FLOAT + 8 + 16) + 8 * 4)
