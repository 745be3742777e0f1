"""Standard-error helpers shared by the statistical tests.

Every estimate is a mean over independent walkers of a per-walker average, so its standard
error is the spread across walkers / sqrt(n_walkers): no autocorrelation model is needed as
long as the walkers are independent (they are, by construction of the random streams).
"""

import numpy as np

Z_MAX = 5.0


def walker_mean_and_se(per_frame_walker: np.ndarray) -> tuple[float, float]:
    """Mean and standard error of an observable of shape (n_frames, n_walkers)."""
    per_walker = np.asarray(per_frame_walker, dtype=np.float64).reshape(per_frame_walker.shape[0], -1).mean(0)
    return float(per_walker.mean()), float(per_walker.std(ddof=1) / np.sqrt(per_walker.size))


def z_score(per_frame_walker: np.ndarray, exact: float) -> float:
    mean, se = walker_mean_and_se(per_frame_walker)
    return (mean - exact) / se


def assert_exact_and_rejects_wrong(per_frame_walker, exact, wrong, z_max=Z_MAX, z_wrong_min=20.0):
    """The data agree with ``exact`` (|z| <= z_max) and reject ``wrong`` (|z| >= z_wrong_min)."""
    z = z_score(per_frame_walker, exact)
    zw = z_score(per_frame_walker, wrong)
    mean, se = walker_mean_and_se(per_frame_walker)
    assert abs(z) <= z_max, f"mean {mean:.5g} ± {se:.2g} vs exact {exact:.5g}: z = {z:.2f}"
    assert abs(zw) >= z_wrong_min, f"mean {mean:.5g} ± {se:.2g} fails to reject wrong {wrong:.5g}: z = {zw:.2f}"
    return z, zw
