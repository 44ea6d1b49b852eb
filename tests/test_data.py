"""Data sources and the input pipeline."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats
from scipy.spatial import cKDTree
from sklearn.datasets import make_swiss_roll

from vaelab.config import DataConfig
from vaelab.data import FixedSetStream, FreshStream, SwissRoll2D, build_source
from vaelab.data.swiss_roll import T_MAX, T_MIN
from vaelab.errors import ConfigError


def _sklearn_roll(n: int, noise: float, seed: int) -> np.ndarray:
    x, _ = make_swiss_roll(n, noise=noise, random_state=seed)
    return x[:, [0, 2]]


def _torch_roll(n: int, noise: float, seed: int) -> np.ndarray:
    g = torch.Generator().manual_seed(seed)
    return SwissRoll2D(noise=noise).sample(n, g).numpy().astype(np.float64)


_T = np.linspace(1.5 * math.pi, 4.5 * math.pi, 200_001)
_CURVE = cKDTree(np.column_stack((_T * np.cos(_T), _T * np.sin(_T))))


def _summaries(points: np.ndarray) -> list[np.ndarray]:
    """Statistics that together pin the roll down: both coordinates, the radius (where along
    the roll), and the distance to the noise-free spiral (how far off it: the noise)."""
    return [points[:, 0], points[:, 1], np.hypot(points[:, 0], points[:, 1]),
            _CURVE.query(points)[0]]


def _min_ks_pvalue(a: np.ndarray, b: np.ndarray) -> float:
    return min(stats.ks_2samp(sa, sb).pvalue for sa, sb in zip(_summaries(a), _summaries(b),
                                                               strict=True))


def test_torch_sampler_matches_sklearn_in_distribution():
    ours = _torch_roll(20_000, 0.3, seed=1)
    ref = _sklearn_roll(20_000, 0.3, seed=2)
    assert _min_ks_pvalue(ours, ref) > 1e-3
    # the test has power: the same comparison rejects a roll of another noise level
    other = _torch_roll(20_000, 0.33, seed=3)
    assert _min_ks_pvalue(other, ref) < 1e-6


def test_noise_free_roll_lies_on_the_spiral():
    x = _torch_roll(1000, 0.0, seed=0)
    r = np.hypot(x[:, 0], x[:, 1])  # on the curve, r = t and the angle is t (mod 2 pi)
    assert r.min() >= 1.5 * math.pi - 1e-4 and r.max() <= 4.5 * math.pi + 1e-4
    angle = np.arctan2(x[:, 1], x[:, 0])
    assert np.allclose(np.cos(angle), np.cos(r), atol=1e-3)


def test_the_roll_is_the_same_bits_on_any_number_of_threads_and_float32_accurate():
    # a large draw runs in parallel chunks: each point must not depend on which thread drew
    # it (MKL's vector cos once gave one thread's chunk ~1e-4 relative accuracy), and every
    # point is the float64 formula, applied to the same float32 t, up to float32 rounding
    n, before = 50_000, torch.get_num_threads()
    draws = []
    for threads in (1, 2):
        torch.set_num_threads(threads)
        try:
            draws.append(SwissRoll2D(noise=0.0).sample(n, torch.Generator().manual_seed(9)))
        finally:
            torch.set_num_threads(before)
    assert torch.equal(draws[0], draws[1])
    g = torch.Generator().manual_seed(9)
    t = (T_MIN + (T_MAX - T_MIN) * torch.rand(n, generator=g)).double()  # as sample() does
    exact = torch.stack((t * torch.cos(t), t * torch.sin(t)), 1)
    assert float((draws[0].double() - exact).abs().max()) < 4e-6  # 14.2 x a few float32 ulps


def test_sklearn_backend_is_the_seed_generator_and_seeded():
    src = SwissRoll2D(noise=0.3, backend="sklearn")
    a = src.sample(300, torch.Generator().manual_seed(5))
    b = src.sample(300, torch.Generator().manual_seed(5))
    assert a.shape == (300, 2) and a.dtype == torch.float32
    assert torch.equal(a, b)
    ref = _sklearn_roll(20_000, 0.3, seed=4)
    assert _min_ks_pvalue(src.sample(20_000, torch.Generator().manual_seed(6)).double().numpy(),
                          ref) > 1e-3


def test_same_generator_state_gives_same_points():
    src = SwissRoll2D()
    a = src.sample(64, torch.Generator().manual_seed(0))
    b = src.sample(64, torch.Generator().manual_seed(0))
    c = src.sample(64, torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_unknown_source_lists_valid_names():
    with pytest.raises(ConfigError, match="swiss_roll"):
        build_source(DataConfig(name="swiss_rol"))


def test_fresh_stream_draws_new_batches():
    stream = FreshStream(SwissRoll2D(), 32, torch.Generator().manual_seed(0),
                         torch.device("cpu"))
    a, b = stream.next(), stream.next()
    assert a.shape == (32, 2) and not torch.equal(a, b)


def test_fixed_set_stream_cycles_through_its_points():
    g = torch.Generator().manual_seed(0)
    stream = FixedSetStream(SwissRoll2D().sample(100, g), 25, g)
    epoch = torch.cat([stream.next() for _ in range(4)])
    # one epoch visits every training point exactly once
    assert torch.equal(torch.sort(epoch[:, 0]).values, torch.sort(stream.points[:, 0]).values)
    # and the next epoch is reshuffled but from the same points
    nxt = stream.next()
    assert all(any(torch.equal(p, q) for q in stream.points) for p in nxt)


def test_fixed_set_smaller_than_batch_uses_whole_set():
    stream = FixedSetStream(torch.arange(10.0).reshape(5, 2), 64, torch.Generator())
    assert stream.next().shape == (5, 2)
