"""One stepping loop (executors/base.py) serves both executors: same stops, same reports."""

from __future__ import annotations

import numpy as np
import pytest

import langevin_md as lmd
from langevin_md.executors.base import Executor
from langevin_md.executors.openmm import OpenMMSampler
from langevin_md.executors.reporting import Reporter
from langevin_md.executors.torch_executor import Sampler


class Schedule(Reporter):
    """Due at the steps it is given; records when it was told and what it saw."""

    def __init__(self, steps):
        self.steps, self.told, self.closed = sorted(steps), [], 0

    def next_report(self, step):
        later = [s for s in self.steps if s >= step]
        return later[0] - step if later else None

    def report(self, sampler, state, step):
        assert sampler.step == step and state.positions.shape[0] == sampler.n_walkers
        self.told.append(step)

    def close(self):
        self.closed += 1


class Sink:
    def __init__(self):
        self.steps = []

    def write_frames(self, steps, positions, energies, kinetic_energies=None, fields=None):
        self.steps.extend(int(s) for s in steps)


def test_both_executors_inherit_the_one_loop():
    for cls in (Sampler, OpenMMSampler):
        assert issubclass(cls, Executor)
        for name in ("run", "run_to", "_loop", "_record_block"):
            assert getattr(cls, name) is getattr(Executor, name), (cls.__name__, name)


@pytest.fixture(scope="module")
def molecule():
    return lmd.systems.alanine_dipeptide("vacuum", engine="openmm")


@pytest.mark.parametrize("cls", [Sampler, OpenMMSampler], ids=["torch", "openmm"])
def test_reporters_are_told_exactly_when_due_and_frames_come_first(cls, molecule):
    sampler = cls(molecule, lmd.integrators.BAOAB(0.002, 1.0), n_walkers=2, seed=1)
    # Due at the start (step 0: never re-asked, the loop always advances at least one step),
    # at a step shared with a frame, at two steps in one gap, and past the end (never told).
    first, second = Schedule([0, 10, 13, 14, 999]), Schedule([7, 30])
    sink = Sink()
    frames_when_told = []
    second.report = lambda sampler, state, step: (frames_when_told.append(list(sink.steps)),
                                                  Schedule.report(second, sampler, state, step))
    result = sampler.run_to(30, record_every=5, reporters=[first, second], frame_sinks=[sink], record_block=2)
    assert first.told == [10, 13, 14] and second.told == [7, 30]
    assert first.closed == second.closed == 1
    assert sink.steps == [5, 10, 15, 20, 25, 30] == result.steps.tolist()
    # Every frame up to a report's step reached the sink before that report.
    assert frames_when_told == [[5], [5, 10, 15, 20, 25, 30]]


@pytest.mark.parametrize("cls", [Sampler, OpenMMSampler], ids=["torch", "openmm"])
def test_bad_record_block_is_refused_by_name(cls, molecule):
    sampler = cls(molecule, lmd.integrators.BAOAB(0.002, 1.0), n_walkers=1)
    with pytest.raises(ValueError, match="record_block must be a positive int.*got 0"):
        sampler.run(10, record_block=0)
    with pytest.raises(ValueError, match="cannot run to step -1: the sampler is already at step 0"):
        sampler.run_to(-1)


def test_default_record_block_holds_about_64_mb():
    sampler = Sampler(lmd.systems.Harmonic(dim=3), lmd.integrators.ULA(0.1), n_walkers=4)
    assert sampler._record_block(None) == 1000  # tiny frames: the frame cap
    big = Sampler(lmd.systems.Harmonic(dim=1 << 16), lmd.integrators.ULA(0.1), n_walkers=4)
    assert big._record_block(None) == (64 << 20) // (4 * (1 << 16) * 8) == 32
    np.testing.assert_equal(big._record_block(7), 7)
