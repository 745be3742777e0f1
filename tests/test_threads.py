"""Torch intra-op threads: chosen per run by problem size and idle CPUs, overridable, restored,
and never changing a number."""

import subprocess
import sys
import time

import numpy as np
import pytest
import torch

import langevin_md as lmd
from langevin_md.systems import Harmonic, MullerBrown
from langevin_md.threads import (SMALL_COMPILED_PROBLEM, SMALL_PROBLEM, choose_threads, compiled_threads, idle_cpus,
                                 torch_threads, usable_cpus)


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
    large = choose_threads(SMALL_PROBLEM + 1)  # large: the idle CPUs, within torch's setting
    assert large is None or 1 <= large <= torch.get_num_threads()
    assert choose_threads(10, threads=4) == 4
    # Compiled kernels are built for one thread count: that count must not follow the load.
    assert compiled_threads(SMALL_PROBLEM + 1) == compiled_threads(SMALL_COMPILED_PROBLEM) == 1
    assert compiled_threads(SMALL_COMPILED_PROBLEM + 1) is None
    assert compiled_threads(10, threads=3) == 3
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


@pytest.fixture
def busy_cpus():
    """Every usable CPU kept busy by a real spinning subprocess."""
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(usable_cpus())]
    time.sleep(0.5)
    yield
    for h in hogs:
        h.kill()
        h.wait()


@pytest.mark.skipif(idle_cpus() is None, reason="no /proc/stat: idle CPUs cannot be counted here")
def test_busy_machine_gets_one_thread(busy_cpus):
    assert idle_cpus() == 0
    assert choose_threads(SMALL_PROBLEM * 100) == 1
    assert compiled_threads(SMALL_COMPILED_PROBLEM * 4) is None  # not load-driven
    assert choose_threads(SMALL_PROBLEM * 100, threads=2) == 2  # the user's choice still wins
    sampler = lmd.Sampler(MullerBrown(kT=25.0), lmd.integrators.ULA(1e-4), n_walkers=SMALL_PROBLEM, seed=0)
    sampler.run(2)
    assert sampler.threads_used == 1


@pytest.mark.parametrize("integrator", [lmd.integrators.ULA(1e-4), lmd.integrators.MALA(1e-4),
                                        lmd.integrators.BAOAB(2e-3, 10.0)], ids=["ULA", "MALA", "BAOAB"])
def test_thread_count_changes_no_number_for_large_problems(integrator):
    """Above SMALL_PROBLEM the count depends on the machine's load, so it must not matter."""
    runs = {}
    for threads in (1, 2):
        sampler = lmd.Sampler(MullerBrown(kT=25.0), integrator, n_walkers=40_000, seed=5, threads=threads)
        runs[threads] = sampler.run(6, record_every=3)
        assert sampler.threads_used == threads
    one, two = runs[1], runs[2]
    assert np.array_equal(one.positions, two.positions) and np.array_equal(one.energies, two.energies)
    moved = np.abs(one.positions[-1] - one.positions[0]).max()
    assert moved > 0  # the comparison covers real steps


def test_thread_count_changes_no_number_for_a_molecule():
    mol = lmd.systems.alanine_dipeptide()
    n = SMALL_PROBLEM // (3 * 22) + 10  # just above SMALL_PROBLEM coordinates
    kw = dict(n_steps=4, n_walkers=n, seed=5, record_every=2)
    one = lmd.sample(mol, lmd.integrators.BAOAB(0.001, 1.0), threads=1, **kw)
    two = lmd.sample(mol, lmd.integrators.BAOAB(0.001, 1.0), threads=2, **kw)
    assert np.array_equal(one.positions, two.positions) and np.array_equal(one.energies, two.energies)

