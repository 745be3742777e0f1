import numpy as np
import pytest
import torch
from scipy import stats

from langevin_md.random import CounterStream, WalkerRNG


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


# Numbers drawn by the original all-torch implementation (before the numpy fast path): the
# streams must never change, or every checkpoint and published run stops reproducing.
_GOLDEN_NORMAL = [
    ["-0x1.041ddf125393ap+0", "-0x1.99e9df21285fcp+0", "-0x1.1739e54338a09p-2"],
    ["-0x1.4bcbec031fc1ep-1", "0x1.76a865b3c5e06p-1", "0x1.3b7fe21c76273p+0"],
    ["-0x1.4b131665ad177p+0", "0x1.132099a6b8a7dp+0", "-0x1.1aa6262ad3bb2p+0"],
]
_GOLDEN_UNIFORM = ["0x1.28972247fbd24p-1", "0x1.6c9cd5cbf4a60p-6", "0x1.4421d4ffc7fe0p-4"]
_GOLDEN_UNIFORM32 = ["0x1.daffc00000000p-3", "0x1.792ee80000000p-2", "0x1.684e040000000p-2"]


def test_streams_are_pinned_to_their_historical_values():
    g = WalkerRNG(2026, [0, 7, 10**6])
    z = g.normal((3,))
    u = g.uniform(())
    u32 = g.uniform((), dtype=torch.float32)
    assert [[x.hex() for x in row] for row in z.tolist()] == _GOLDEN_NORMAL
    assert [x.hex() for x in u.tolist()] == _GOLDEN_UNIFORM
    assert [float(x).hex() for x in u32.tolist()] == _GOLDEN_UNIFORM32
    assert g.counter == 6
    # A different seed is a different stream (the comparison above can fail).
    assert WalkerRNG(2027, [0, 7, 10**6]).normal((3,)).tolist() != z.tolist()


@pytest.mark.parametrize("n_walkers", [1, 5, 4099])
def test_cpu_fast_path_equals_the_torch_counter_stream_bit_for_bit(n_walkers):
    # CounterStream computes every word and every float in torch (the compiled path's
    # arithmetic, run eagerly here); WalkerRNG on the CPU hashes in numpy. Same numbers.
    g = WalkerRNG(11, range(3, 3 + n_walkers), counter=17)
    ref = CounterStream(g.keys, torch.tensor(g.counter))
    draws = [("normal", (2,), torch.float64), ("normal", (5, 3), torch.float64),
             ("normal", (3,), torch.float32), ("uniform", (), torch.float64),
             ("uniform", (4,), torch.float32), ("normal", (), torch.float64),
             ("normal", (2,), torch.bfloat16)]
    for kind, shape, dtype in draws * 2:
        x = getattr(g, kind)(shape, dtype)
        y = getattr(ref, kind)(shape, dtype)
        assert x.shape == y.shape == (n_walkers,) + shape and x.dtype == y.dtype == dtype
        assert torch.equal(x, y), (kind, shape, dtype)
    assert g.counter == 17 + ref.consumed


def test_draws_are_fresh_tensors_not_reused_buffers():
    g = WalkerRNG(0, 8)
    first = g.normal((2,))
    kept = first.clone()
    g.normal((2,))
    g.uniform((2,))
    assert torch.equal(first, kept)


def test_keys_property_is_public_and_read_only_in_use():
    g = WalkerRNG(5, [2, 9])
    assert g.keys.dtype == torch.int64 and g.keys.shape == (2,)
    # Walker 9's key is the same in any batch: its stream depends on (seed, index) only.
    assert int(WalkerRNG(5, [9]).keys[0]) == int(g.keys[1])


def test_seed_of_2_64_is_refused_not_wrapped():
    import pytest

    import langevin_md as lmd

    with pytest.raises(ValueError, match="below 2\\*\\*64"):
        lmd.sample(lmd.systems.Harmonic(dim=1), lmd.integrators.ULA(step_size=0.1), n_steps=1, seed=2**64)
