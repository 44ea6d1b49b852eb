"""Classical baselines: BIC picks the right mixture, CV a sensible bandwidth, densities are
normalised, samples reproducible, and bad input is refused."""

from __future__ import annotations

import numpy as np
import pytest

from vaelab.baselines import KDE_RELATIVE_GRID, Baseline, fit_gmm, fit_kde

MEAN = np.array([1.0, -2.0])
COV = np.array([[2.0, 0.6], [0.6, 0.5]])
CENTRES = np.array([[0.0, 0.0], [6.0, 0.0], [0.0, 6.0]])


def gaussian_log_prob(x: np.ndarray) -> np.ndarray:
    """The exact log-density of N(MEAN, COV)."""
    diff = x - MEAN
    maha = np.einsum("ni,ij,nj->n", diff, np.linalg.inv(COV), diff)
    return -0.5 * (maha + np.log(np.linalg.det(2 * np.pi * COV)))


def gaussian(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).multivariate_normal(MEAN, COV, size=n)


def three_clusters(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    comp = rng.choice(3, size=n, p=[0.5, 0.3, 0.2])
    scales = np.array([[1.0, 0.5], [0.4, 1.0], [0.7, 0.7]])
    return CENTRES[comp] + scales[comp] * rng.standard_normal((n, 2))


@pytest.fixture(scope="module")
def gmm_gauss() -> Baseline:
    return fit_gmm(gaussian(4000, 0), max_components=10, seed=0)


@pytest.fixture(scope="module")
def gmm_three() -> Baseline:
    return fit_gmm(three_clusters(1500, 1), max_components=10, seed=0)


@pytest.fixture(scope="module")
def kde_gauss() -> Baseline:
    return fit_kde(gaussian(2000, 2), seed=0)


def test_gmm_picks_one_component_and_the_true_density(gmm_gauss):
    assert gmm_gauss.name == "gmm" and gmm_gauss.params == {"components": 1}
    # the search stopped early: 1 best, then 5 counts without a better BIC
    assert sorted(gmm_gauss.selection["bic"]) == [1, 2, 3, 4, 5, 6]
    assert gmm_gauss.fit_seconds > 0
    x = gaussian(4000, 10)
    logq = gmm_gauss.log_prob(x)
    assert logq.shape == (4000,) and logq.dtype == np.float64
    assert abs(logq.mean() - gaussian_log_prob(x).mean()) < 0.05


def test_bic_picks_three_clusters(gmm_three):
    assert gmm_three.params == {"components": 3}
    bic = gmm_three.selection["bic"]
    assert min(bic, key=bic.get) == 3


def test_kde_bandwidth_inside_its_grid(kde_gauss):
    grid = np.asarray(kde_gauss.selection["grid"])
    scale = gaussian(2000, 2).std(axis=0).mean()
    np.testing.assert_allclose(grid, KDE_RELATIVE_GRID * scale)
    h = kde_gauss.params["bandwidth"]
    i = int(np.argmin(np.abs(grid - h)))
    assert np.isclose(grid[i], h) and 0 < i < len(grid) - 1
    scores = kde_gauss.selection["cv_log_likelihood"]
    assert max(scores, key=scores.get) == pytest.approx(h)
    assert kde_gauss.selection["cv_points"] == 2000 and kde_gauss.selection["folds"] == 5


def test_kde_cv_uses_a_subset_but_fits_all_points():
    x = gaussian(600, 3)
    kde = fit_kde(x, bandwidths=np.array([0.1, 0.3, 1.0]), cv=3, max_cv_points=200)
    assert kde.selection["cv_points"] == 200 and kde.selection["folds"] == 3
    assert len(np.asarray(kde.estimator.tree_.data)) == 600
    assert kde.params["bandwidth"] in (0.1, 0.3, 1.0)


@pytest.mark.parametrize("which", ["gmm_gauss", "kde_gauss"])
def test_density_integrates_to_one(which, request):
    model = request.getfixturevalue(which)
    step = 0.05
    gx, gy = np.meshgrid(np.arange(-6.0, 8.0, step), np.arange(-7.0, 3.0, step))
    grid = np.column_stack((gx.ravel(), gy.ravel()))
    total = np.exp(model.log_prob(grid)).sum() * step**2
    assert total == pytest.approx(1.0, abs=5e-3)


@pytest.mark.parametrize("which", ["gmm_three", "kde_gauss"])
def test_sample_is_reproducible(which, request):
    model = request.getfixturevalue(which)
    a, b, c = model.sample(500, seed=3), model.sample(500, seed=3), model.sample(500, seed=4)
    assert a.shape == (500, 2) and a.dtype == np.float64
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_gmm_samples_follow_the_mixture(gmm_three):
    x = gmm_three.sample(20_000, seed=0)
    data = three_clusters(20_000, 5)
    np.testing.assert_allclose(x.mean(0), data.mean(0), atol=0.1)
    np.testing.assert_allclose(np.cov(x.T), np.cov(data.T), rtol=0.05, atol=0.1)


def test_kde_samples_are_data_plus_kernel_noise(kde_gauss):
    x = kde_gauss.sample(20_000, seed=0)
    data = np.asarray(kde_gauss.estimator.tree_.data)
    h = kde_gauss.params["bandwidth"]
    np.testing.assert_allclose(x.var(0), data.var(0) + h**2, rtol=0.05)


BAD = [
    (np.zeros(10), "2-D"),
    (np.zeros((1, 2)), "at least 2 rows"),
    (np.zeros((5, 2, 2)), "2-D"),
    (np.zeros((5, 0)), "2-D"),
    (np.array([[0.0, 1.0], [np.nan, 2.0], [1.0, 1.0]]), "NaN or infinite"),
    (np.array([[0.0, 1.0], [np.inf, 2.0], [1.0, 1.0]]), "NaN or infinite"),
    (np.array([["a", "b"], ["c", "d"]]), "numeric"),
    (np.array([[True, False], [False, True]]), "numeric"),
]


@pytest.mark.parametrize("fit", [fit_gmm, fit_kde])
@pytest.mark.parametrize(("points", "message"), BAD)
def test_bad_points_raise(fit, points, message):
    with pytest.raises(ValueError, match=message) as exc:
        fit(points)
    assert "\n" not in str(exc.value)


def test_bad_arguments_raise(gmm_gauss):
    x = gaussian(50, 0)
    with pytest.raises(ValueError, match="max_components"):
        fit_gmm(x, max_components=0)
    with pytest.raises(ValueError, match="cv"):
        fit_kde(x, cv=1)
    with pytest.raises(ValueError, match="bandwidths"):
        fit_kde(x, bandwidths=np.array([0.1, -1.0]))
    with pytest.raises(ValueError, match="zero spread"):
        fit_kde(np.ones((10, 2)))
    with pytest.raises(ValueError, match="columns"):
        gmm_gauss.log_prob(np.zeros((4, 3)))
    with pytest.raises(ValueError, match="positive integer"):
        gmm_gauss.sample(0, seed=0)
