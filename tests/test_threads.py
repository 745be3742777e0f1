"""Torch intra-op threads: chosen per run by problem size, overridable, always restored."""

import numpy as np
import pytest
import torch

import langevin_md as lmd
from langevin_md.systems import Harmonic
from langevin_md.threads import SMALL_PROBLEM, choose_threads, torch_threads


class ThreadsSeen(lmd.Reporter):
    """Notes torch's thread count every few steps, i.e. while the run is going."""

    def __init__(self, every=5):
        self.every = every
        self.seen = []

    def next_report(self, step):
        return -step % self.every  # 0 means "due now"

    def report(self, sampler, state, step):
        self.seen.append(torch.get_num_threads())


@pytest.fixture
def three_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(3)
    yield
    torch.set_num_threads(before)


def test_choice_by_size_and_override():
    assert choose_threads(10) == 1
    assert choose_threads(SMALL_PROBLEM) == 1
    assert choose_threads(SMALL_PROBLEM + 1) is None  # large: torch's own setting
    assert choose_threads(10, threads=4) == 4
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(ValueError, match=f"threads must be a positive integer or None.*got {bad!r}"):
            choose_threads(10, threads=bad)


def test_context_restores_even_after_an_error(three_threads):
    with pytest.raises(RuntimeError):
        with torch_threads(1):
            assert torch.get_num_threads() == 1
            raise RuntimeError("boom")
    assert torch.get_num_threads() == 3
    with torch_threads(None):
        assert torch.get_num_threads() == 3


def test_a_run_sets_threads_for_its_duration_only(three_threads):
    seen = ThreadsSeen()
    sampler = lmd.Sampler(Harmonic(dim=2), lmd.integrators.ULA(0.1), n_walkers=4, seed=0)
    sampler.run(20, reporters=[seen])
    assert seen.seen and set(seen.seen) == {1}          # small problem: one thread
    assert torch.get_num_threads() == 3                  # and the user's setting is back
    seen = ThreadsSeen()
    sampler = lmd.Sampler(Harmonic(dim=2), lmd.integrators.ULA(0.1), n_walkers=4, seed=0, threads=2)
    sampler.run(20, reporters=[seen])
    assert set(seen.seen) == {2}
    assert torch.get_num_threads() == 3


def test_thread_count_changes_no_number_for_small_problems():
    kw = dict(n_steps=30, n_walkers=6, seed=3, record_every=10)
    one = lmd.sample(Harmonic(dim=3), lmd.integrators.BAOAB(0.2, 1.0), threads=1, **kw)
    two = lmd.sample(Harmonic(dim=3), lmd.integrators.BAOAB(0.2, 1.0), threads=2, **kw)
    assert np.array_equal(one.positions, two.positions)


def test_bad_threads_argument_is_named():
    with pytest.raises(ValueError, match="threads must be a positive integer or None.*got 0"):
        lmd.Sampler(Harmonic(dim=1), lmd.integrators.ULA(0.1), threads=0)
    with pytest.raises(ValueError, match="threads must be a positive integer or None.*got 'many'"):
        lmd.sample(Harmonic(dim=1), lmd.integrators.ULA(0.1), n_steps=1, threads="many")
