"""SGLD: the step-size schedule.

Its exact laws (statistical: stationary variance with noisy gradients, unbiased minibatch
gradients, the posterior mean) are in ``tests/statistical/test_sgld.py``.
"""

import pytest

from langevin_md.integrators.sgld import SGLD


def test_sgld_step_size_schedule():
    integ = SGLD(step_size=0.1, decay_time=10.0, decay_power=0.55)
    assert integ.step_size_at(0) == 0.1
    # a (b + t)^-gamma with a = eps0 b^gamma
    a = 0.1 * 10.0 ** 0.55
    for t in (1, 7, 100):
        assert integ.step_size_at(t) == pytest.approx(a * (10.0 + t) ** -0.55)
    assert SGLD(step_size=0.1).step_size_at(1000) == 0.1
    with pytest.raises(ValueError, match="decay_power"):
        SGLD(step_size=0.1, decay_power=-1)
