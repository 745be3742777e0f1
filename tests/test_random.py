import numpy as np
import pytest
import torch
from scipy import stats

from langevin_md.random import WalkerRNG


def test_same_seed_same_numbers_and_streams_do_not_depend_on_batch():
    a = WalkerRNG(7, 1000)
    b = WalkerRNG(7, [3, 500, 999])
    xa = a.normal((4,))
    xb = b.normal((4,))
    assert torch.equal(xa[[3, 500, 999]], xb)
    assert torch.equal(WalkerRNG(7, 1000).normal((4,)), xa)
    assert not torch.equal(WalkerRNG(8, 1000).normal((4,)), xa)


def test_restore_from_counter_continues_the_stream():
    a = WalkerRNG(1, 10)
    a.normal((3,))
    state = a.state_dict()
    nxt = a.uniform(())
    b = WalkerRNG.from_state_dict(state)
    assert torch.equal(b.uniform(()), nxt)


def test_draws_have_the_right_law_and_walkers_are_uncorrelated():
    g = WalkerRNG(0, 20000)
    z = g.normal((5,)).numpy()
    u = g.uniform((), dtype=torch.float32).numpy()
    # KS tests at a fixed seed: p-values far from 0 for a correct generator.
    assert stats.kstest(z.ravel(), "norm").pvalue > 1e-4
    assert stats.kstest(u, "uniform").pvalue > 1e-4
    assert u.dtype == np.float32 and (u >= 0).all() and (u < 1).all()
    # Neighbouring walkers and neighbouring draws are uncorrelated (|r| < 5 SE).
    se = 1 / np.sqrt(z.shape[0])
    assert abs(np.corrcoef(z[:-1, 0], z[1:, 0])[0, 1]) < 5 * se
    assert abs(np.corrcoef(z[:, 0], z[:, 1])[0, 1]) < 5 * se
    # A known-wrong generator (every walker sharing one stream) fails the same check.
    shared = np.tile(z[:1], (z.shape[0], 1))
    assert np.std(shared[:, 0]) == 0


@pytest.mark.parametrize("bad", [-1, 1.5, "a", True])
def test_bad_seed(bad):
    with pytest.raises(ValueError, match="seed"):
        WalkerRNG(bad, 3)
