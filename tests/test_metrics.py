"""Two-sample metrics: agreement with plain reference computations, sensitivity, floors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from scipy.stats import energy_distance as scipy_energy_distance

from vaelab.metrics import (
    DEFAULT_FACTORS,
    MetricInputError,
    _pairwise,
    c2st_accuracy,
    energy_distance,
    format_sample_report,
    knn_precision_recall,
    median_pairwise_distance,
    mmd2_gaussian,
    prd,
    sample_report,
)

N = 2000


def ring(n: int, rng: np.random.Generator, modes=range(8), sd: float = 0.1) -> np.ndarray:
    """Eight Gaussians on a circle of radius 2 (or only ``modes`` of them), equal weights."""
    centre = rng.choice(np.asarray(list(modes)), size=n)
    angle = 2 * np.pi * centre / 8
    return 2.0 * np.c_[np.cos(angle), np.sin(angle)] + sd * rng.standard_normal((n, 2))


@pytest.fixture(scope="module")
def real_pair() -> tuple[np.ndarray, np.ndarray]:
    """``real`` and an independent ``real_reference`` of the 8-Gaussian ring, N points each."""
    rng = np.random.default_rng(123)
    return ring(N, rng), ring(N, rng)


def report_for(generated: np.ndarray, real_pair, seed: int = 0) -> dict:
    real, reference = real_pair
    return sample_report(generated, real, reference, seed=seed)


# ------------------------------------------------------------------ plain reference computations


def full_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1))


def reference_mmd2(x: np.ndarray, y: np.ndarray, sigma: float) -> float:
    """Unbiased MMD² (Gretton et al. 2012, eq. 3) from full kernel matrices."""
    def k(a, b):
        return np.exp(-full_distances(a, b) ** 2 / (2 * sigma**2))
    n, m = len(x), len(y)
    kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
    return ((kxx.sum() - np.trace(kxx)) / (n * (n - 1)) + (kyy.sum() - np.trace(kyy))
            / (m * (m - 1)) - 2 * kxy.mean())


def reference_energy(x: np.ndarray, y: np.ndarray) -> float:
    """2 E|X-Y| - E|X-X'| - E|Y-Y'| with within-sample means over pairs i != j."""
    n, m = len(x), len(y)
    return (2 * full_distances(x, y).mean() - full_distances(x, x).sum() / (n * (n - 1))
            - full_distances(y, y).sum() / (m * (m - 1)))


def reference_precision_recall(gen: np.ndarray, real: np.ndarray, k: int) -> tuple[float, float]:
    """Kynkäänniemi et al. 2019 by brute force: radius = k-th smallest distance to the others."""
    def radii(a):
        # column 0 of the sorted row is the point itself (distance 0), so index k is the k-th
        # nearest *other* point
        return np.sort(full_distances(a, a), axis=1)[:, k]
    precision = (full_distances(gen, real) <= radii(real)[None, :]).any(axis=1).mean()
    recall = (full_distances(real, gen) <= radii(gen)[None, :]).any(axis=1).mean()
    return float(precision), float(recall)


@pytest.fixture(params=["one block", "many blocks"])
def block_entries(request, monkeypatch) -> None:
    """Run the chunked sums with the default block size and with tiny blocks (7 rows)."""
    if request.param == "many blocks":
        monkeypatch.setattr(_pairwise, "BLOCK_ENTRIES", 7 * 150)


@pytest.mark.usefixtures("block_entries")
@pytest.mark.parametrize("d", [1, 3, 40])
def test_mmd2_matches_full_matrix_reference(d):
    rng = np.random.default_rng(d)
    x = rng.standard_normal((200, d)) * 1.2 + 0.3
    y = rng.standard_normal((150, d))
    result = mmd2_gaussian(x, y, factors=(0.1, 0.5, 2.0))
    scale = np.median(full_distances(y, y)[np.triu_indices(len(y), 1)])
    assert result.scale == pytest.approx(scale, rel=1e-12)
    assert result.bandwidths == pytest.approx((0.1 * scale, 0.5 * scale, 2.0 * scale))
    expected = [reference_mmd2(x, y, s) for s in result.bandwidths]
    np.testing.assert_allclose(result.values, expected, rtol=1e-9, atol=1e-14)
    assert result.mean == pytest.approx(np.mean(expected), rel=1e-9)


@pytest.mark.usefixtures("block_entries")
@pytest.mark.parametrize("d", [1, 3, 40])
def test_energy_matches_full_matrix_reference(d):
    rng = np.random.default_rng(10 + d)
    x = rng.standard_normal((200, d)) + 0.5
    y = rng.standard_normal((150, d)) * 0.8
    assert energy_distance(x, y) == pytest.approx(reference_energy(x, y), rel=1e-10)


def test_energy_v_statistic_is_square_of_scipy_in_1d():
    rng = np.random.default_rng(5)
    u, v = rng.standard_normal(300), rng.standard_normal(250) * 2 + 1
    ours = energy_distance(u[:, None], v[:, None], unbiased=False)
    assert ours == pytest.approx(scipy_energy_distance(u, v) ** 2, rel=1e-10)
    assert energy_distance(u[:, None], v[:, None]) < ours  # U-statistic: less positive bias


def test_median_pairwise_distance_subsamples_deterministically():
    rng = np.random.default_rng(6)
    y = rng.standard_normal((3000, 2))
    exact = np.median(full_distances(y, y)[np.triu_indices(len(y), 1)])
    assert median_pairwise_distance(y) == median_pairwise_distance(y)
    assert median_pairwise_distance(y, seed=1) != median_pairwise_distance(y, seed=2)
    assert median_pairwise_distance(y) == pytest.approx(exact, rel=0.02)
    assert median_pairwise_distance(y, max_points=5000) == pytest.approx(exact, rel=1e-12)


@pytest.fixture(params=["kd-tree", "brute force"])
def neighbour_search(request, monkeypatch) -> None:
    """Run precision/recall with KD-trees (low d) and with the high-d brute-force path."""
    if request.param == "brute force":
        monkeypatch.setattr(prd, "KD_TREE_MAX_DIM", 0)
        monkeypatch.setattr(_pairwise, "BLOCK_ENTRIES", 7 * 300)


@pytest.mark.usefixtures("neighbour_search")
@pytest.mark.parametrize("k", [1, 3, 5])
def test_precision_recall_match_brute_force(k):
    rng = np.random.default_rng(k)
    real = rng.standard_normal((300, 2))
    gen = rng.standard_normal((250, 2)) * 0.6 + [3.0, 0.0]
    got = knn_precision_recall(gen, real, k=k)
    expected = reference_precision_recall(gen, real, k)
    assert (got.precision, got.recall) == pytest.approx(expected, abs=1e-12)
    assert 0.0 < got.precision < 1.0 and 0.0 < got.recall < 1.0  # not a trivial case


@pytest.mark.usefixtures("neighbour_search")
def test_precision_kth_neighbour_excludes_the_point_itself():
    real = np.array([[0.0], [1.0], [3.0], [7.0]])
    gen = np.array([[0.5], [4.5], [11.5], [20.0]])
    # k = 1: radii 1, 1, 2, 4 -> balls [-1, 1], [0, 2], [1, 5], [3, 11]: 0.5 and 4.5 inside
    assert knn_precision_recall(gen, real, k=1).precision == 0.5
    # k = 2: radii 3, 2, 3, 6 -> the ball [1, 13] around 7 now holds 11.5 too
    assert knn_precision_recall(gen, real, k=2).precision == 0.75


@pytest.mark.usefixtures("neighbour_search")
def test_duplicated_points_are_distinct_neighbours():
    real = np.array([[0.0], [0.0], [5.0], [5.0], [20.0], [22.0]])
    gen = np.array([[0.1], [5.0], [21.0], [2.0], [3.0]])
    # k = 1: radii 0, 0, 0, 0, 2, 2 (the twin of each duplicate is at distance 0). Inside:
    # 5.0 (distance 0 <= radius 0) and 21.0; not 0.1, 2.0 or 3.0.
    assert knn_precision_recall(gen, real, k=1).precision == pytest.approx(0.4)


# ---------------------------------------------------------------------- floors and sensitivity


def test_same_distribution_sits_at_its_floor(real_pair):
    report = report_for(ring(N, np.random.default_rng(7)), real_pair)
    for key in ("value", "floor"):
        assert abs(report["mmd2"][key]) < 1e-3
        assert abs(report["energy"][key]) < 5e-3
        assert abs(report["c2st_accuracy"][key] - 0.5) < 0.05
        assert report["precision"][key] > 0.93
        assert report["recall"][key] > 0.93
    for name in ("precision", "recall"):
        assert report[name]["value"] == pytest.approx(report[name]["floor"], abs=0.03)


@pytest.mark.parametrize("distort", [
    pytest.param(lambda g: g + [0.3, 0.0], id="shifted"),
    pytest.param(lambda g: 1.2 * g, id="scaled"),
])
def test_shifted_and_scaled_samples_are_far_from_the_floor(real_pair, distort):
    report = report_for(distort(ring(N, np.random.default_rng(8))), real_pair)
    assert report["mmd2"]["value"] > report["mmd2"]["floor"] + 0.01
    assert all(entry["value"] > entry["floor"] + 1e-3
               for entry in report["mmd2"]["per_bandwidth"].values())
    assert report["energy"]["value"] > report["energy"]["floor"] + 0.03
    assert report["c2st_accuracy"]["value"] > 0.85
    assert report["precision"]["value"] < report["precision"]["floor"] - 0.2


def test_mode_dropping_lowers_recall_not_precision(real_pair):
    report = report_for(ring(N, np.random.default_rng(9), modes=[0, 2, 4, 6]), real_pair)
    assert report["recall"]["value"] < 0.6
    assert report["recall"]["value"] < report["recall"]["floor"] - 0.3
    assert report["precision"]["value"] > 0.93
    assert report["c2st_accuracy"]["value"] > 0.65
    assert report["mmd2"]["value"] > 0.01


def test_spreading_everywhere_lowers_precision_not_recall(real_pair):
    report = report_for(np.random.default_rng(10).uniform(-3, 3, size=(N, 2)), real_pair)
    assert report["precision"]["value"] < 0.2
    assert report["recall"]["value"] > 0.93
    assert report["c2st_accuracy"]["value"] > 0.9


def test_c2st_is_chance_for_same_and_high_for_disjoint():
    rng = np.random.default_rng(11)
    a, b = rng.standard_normal((1000, 3)), rng.standard_normal((1000, 3))
    assert abs(c2st_accuracy(a, b) - 0.5) < 0.06
    assert c2st_accuracy(a + 5.0, b) > 0.99


# ------------------------------------------------------------------ report, determinism, inputs


def test_report_structure_and_json(real_pair):
    real, reference = real_pair
    gen = ring(N, np.random.default_rng(12), sd=0.15)
    report = sample_report(gen, real, reference)
    assert report["n"] == N and report["d"] == 2 and report["seed"] == 0
    assert report["input_sizes"] == {"generated": N, "real": N, "real_reference": N}
    assert list(report["mmd2"]["per_bandwidth"]) == [repr(f) for f in DEFAULT_FACTORS]
    assert report["precision"]["k"] == report["recall"]["k"] == 3
    assert json.loads(json.dumps(report)) == report
    # equal sizes: no subsampling, so each entry is the plain metric on the inputs
    assert report["energy"]["value"] == energy_distance(gen, real)
    assert report["energy"]["floor"] == energy_distance(reference, real)
    assert report["mmd2"]["value"] == mmd2_gaussian(gen, real).mean
    assert report["c2st_accuracy"]["value"] == c2st_accuracy(gen, real, seed=0)
    assert report["recall"]["value"] == knn_precision_recall(gen, real).recall
    text = format_sample_report(report)
    for label in ("mmd2", "energy", "c2st accuracy", "precision", "recall", "floor"):
        assert label in text
    assert f"{report['c2st_accuracy']['value']:.4g}" in text


def test_same_seed_same_report(real_pair):
    real, reference = real_pair
    gen = ring(N + 300, np.random.default_rng(13), sd=0.12)  # subsampled with the seed too
    first = sample_report(gen, real, reference, seed=4)
    assert sample_report(gen, real, reference, seed=4) == first
    assert sample_report(gen, real, reference, seed=5) != first


def test_torch_and_float32_inputs_give_the_numpy_float64_result():
    rng = np.random.default_rng(14)
    x = rng.standard_normal((300, 2)).astype(np.float32)
    y = rng.standard_normal((300, 2)).astype(np.float32)
    assert energy_distance(torch.from_numpy(x), torch.from_numpy(y)) == energy_distance(
        x.astype(np.float64), y.astype(np.float64))
    assert mmd2_gaussian(torch.from_numpy(x), y).values == mmd2_gaussian(x, y).values


def test_unequal_sizes_are_cut_to_the_smallest(real_pair):
    real, reference = real_pair
    gen = ring(2500, np.random.default_rng(15))
    report = sample_report(gen, real[:1800], reference, seed=1)
    assert report["n"] == 1800
    assert report["input_sizes"] == {"generated": 2500, "real": 1800, "real_reference": N}
    assert abs(report["c2st_accuracy"]["value"] - 0.5) < 0.06
    # the individual metrics take unequal sizes as they are
    assert np.isfinite(energy_distance(gen, real[:1800]))
    assert 0.0 <= c2st_accuracy(gen[:300], real[:500]) <= 1.0


@pytest.mark.parametrize(("bad", "message"), [
    (np.array([[0.0, np.nan]] * 10), "NaN"),
    (np.array([[0.0, np.inf]] * 10), "NaN or infinite"),
    (np.zeros(10), "2-D"),
    (np.zeros((10, 2, 1)), "2-D"),
    (np.zeros((10, 3)), "same dimension"),
    (np.zeros((10, 0)), "d >= 1"),
    (np.zeros((4, 2)), "at least 5 points"),
    ([["a", "b"]] * 10, "numeric"),
])
def test_bad_input_raises_value_error(real_pair, bad, message):
    real, reference = real_pair
    with pytest.raises(ValueError, match=message):
        sample_report(bad, real, reference)


def test_bad_options_raise_value_error():
    rng = np.random.default_rng(16)
    x, y = rng.standard_normal((50, 2)), rng.standard_normal((50, 2))
    with pytest.raises(MetricInputError, match="factors"):
        mmd2_gaussian(x, y, factors=(0.5, -1.0))
    with pytest.raises(ValueError, match="scale"):
        mmd2_gaussian(x, y, scale=0.0)
    with pytest.raises(ValueError, match="k must be"):
        knn_precision_recall(x, y, k=0)
    with pytest.raises(ValueError, match="at least 5 points"):
        knn_precision_recall(x[:4], y, k=3)
    with pytest.raises(ValueError, match="median pairwise distance"):
        mmd2_gaussian(x, np.zeros((50, 2)))


@pytest.mark.slow
def test_report_at_ten_thousand_points_sees_a_ten_percent_wider_ring():
    """The evaluator's size (its speed is measured in benchmarks/metrics_speed.py)."""
    rng = np.random.default_rng(17)
    gen, real, reference = (ring(10_000, rng, sd=s) for s in (0.11, 0.1, 0.1))
    report = sample_report(gen, real, reference)
    assert report["n"] == 10_000
    assert report["c2st_accuracy"]["value"] > report["c2st_accuracy"]["floor"]
    assert report["energy"]["value"] > report["energy"]["floor"]
