"""compare_distributions: agreement within noise for one law, rejection of named wrong answers."""

import numpy as np
import pytest

import langevin_md as lmd
from langevin_md.analysis import compare_distributions, jensen_shannon

CENTRES = np.radians([[-80.0, 150.0], [-70.0, -40.0], [60.0, 40.0]])  # C7eq/β, αR, αL


def draw(n_frames, n_walkers, weights=(0.6, 0.3, 0.1), shift=(0.0, 0.0), seed=0):
    """Independent frames from a von Mises mixture on the three alanine basins, radians."""
    g = np.random.default_rng(seed)
    k = g.choice(3, size=(n_frames, n_walkers), p=np.asarray(weights))
    mu = CENTRES[k] + np.asarray(shift)
    out = g.vonmises(mu, 6.0)
    return (out + np.pi) % (2 * np.pi) - np.pi


def test_one_law_is_consistent_with_zero_divergence(tmp_path):
    a, b = draw(100, 64, seed=1), draw(100, 64, seed=2)
    c = compare_distributions(a, b, features=None, path=tmp_path / "fes.png")
    assert c.consistent, c.verdict
    assert c.p_value >= 0.01
    # the observed JS is the finite-sample floor: within 5 bootstrap errors of the null mean
    assert abs(c.js - c.js_null) < 5 * c.js_error
    assert np.all(np.abs(c.population_z) <= 5)
    np.testing.assert_allclose(c.populations, [0.6, 0.3, 0.1], atol=5 * c.population_errors.max() + 0.02)
    assert "agree within sampling noise" in c.verdict
    assert (tmp_path / "fes.png").stat().st_size > 10_000


def test_a_shifted_law_is_rejected():
    """Named wrong answer: ψ shifted by 25° (a CG model with a misplaced basin)."""
    a, b = draw(100, 64, shift=(0.0, np.radians(25.0)), seed=1), draw(100, 64, seed=2)
    c = compare_distributions(a, b, features=None, labels=("CG", "all-atom"))
    assert c.js - c.js_null > 10 * c.js_error
    assert c.p_value < 0.01 and not c.consistent
    assert c.verdict.startswith("The CG distribution differs from the all-atom")


def test_wrong_populations_are_rejected():
    """Named wrong answer: αR and αL populations swapped in part (0.3/0.1 -> 0.2/0.2)."""
    a, b = draw(100, 64, weights=(0.6, 0.2, 0.2), seed=1), draw(100, 64, seed=2)
    c = compare_distributions(a, b, features=None)
    assert abs(c.population_z[1]) > 5 and abs(c.population_z[2]) > 5
    assert "αR population differs" in c.verdict or "αL population differs" in c.verdict


def test_jensen_shannon_limits():
    p = np.array([1.0, 0.0])
    assert jensen_shannon(p, p) == 0.0
    assert jensen_shannon(p, p[::-1]) == pytest.approx(np.log(2))


def test_bad_inputs_are_named():
    a = draw(10, 4)
    with pytest.raises(ValueError, match=r"reference's features must have shape \(n_frames, n_walkers, 2\)"):
        compare_distributions(a, np.zeros((10, 4, 3)), features=None)
    with pytest.raises(ValueError, match="bins must be an integer >= 2"):
        compare_distributions(a, a, features=None, bins=1)
    with pytest.raises(ValueError, match="features must be 'phi_psi'"):
        compare_distributions(a, a, features="chi")
    assert lmd.analysis.compare_distributions is compare_distributions


def test_too_few_permutations_to_reject_are_refused():
    """With n permutations the smallest p-value is 1/(n + 1): 50 of them at alpha = 0.01 could
    never reject, so a wrong law would pass; the call is refused, naming both values."""
    a, b = draw(20, 8, shift=(0.0, np.radians(60.0)), seed=1), draw(20, 8, seed=2)
    with pytest.raises(ValueError, match=r"n_permutations = 50 .*alpha = 0\.01.*>= 100"):
        compare_distributions(a, b, features=None, n_permutations=50, alpha=0.01)
    # 99 permutations reach p = 0.01 exactly, still not below alpha; 100 can
    with pytest.raises(ValueError, match="n_permutations = 99"):
        compare_distributions(a, b, features=None, n_permutations=99, alpha=0.01)
    assert compare_distributions(a, b, features=None, n_permutations=100, alpha=0.01).p_value < 0.01
