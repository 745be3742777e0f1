"""Checkpoints: pickle-free, atomic, and enough for a bitwise-identical continuation."""

from __future__ import annotations

import os
import zipfile

import numpy as np
import pytest

import langevin_md as lmd
from langevin_md.io.checkpoint import (CheckpointError, CheckpointReporter, RunInterrupted,
                                       atomic_write_bytes, checkpoint_path, latest_checkpoint,
                                       list_checkpoints, load_checkpoint, save_checkpoint)
from langevin_md.systems import Harmonic

INTEGRATORS = [
    lmd.integrators.MALA(0.3, target_accept=0.6),   # adaptive per-walker step sizes
    lmd.integrators.BAOAB(0.3, 1.0),                 # velocities
    lmd.integrators.HMC(0.2, 3),
    lmd.integrators.ULA(0.1),
]


@pytest.mark.parametrize("integrator", INTEGRATORS, ids=repr)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_save_load_continues_bitwise(tmp_path, integrator, dtype):
    system = Harmonic(dim=3, k=[1.0, 2.0, 4.0])
    full = lmd.Sampler(system, integrator, n_walkers=5, seed=7, dtype=dtype)
    full.burn_in_end = 20
    ref = full.run_to(60, record_every=3)

    first = lmd.Sampler(system, integrator, n_walkers=5, seed=7, dtype=dtype)
    first.burn_in_end = 20
    a = first.run_to(31, record_every=3)  # after burn-in, between two recorded frames
    path = save_checkpoint(tmp_path / "c.npz", first.state_dict(), {"n_frames": a.n_frames})

    second = lmd.Sampler(system, integrator, n_walkers=5, seed=7, dtype=dtype)
    sd, extra = load_checkpoint(path)
    assert extra == {"n_frames": a.n_frames}
    second.load_state_dict(sd)
    b = second.run_to(60, record_every=3)
    assert np.array_equal(np.concatenate([a.positions, b.positions]), ref.positions)
    assert np.array_equal(np.concatenate([a.steps, b.steps]), ref.steps)
    if ref.step_sizes is not None:
        assert np.array_equal(b.step_sizes, ref.step_sizes)
    if ref.acceptance_rate is not None:
        assert np.array_equal(b.acceptance_rate, ref.acceptance_rate)


def test_checkpoint_is_plain_npz_without_pickle(tmp_path):
    s = lmd.Sampler(Harmonic(dim=2), lmd.integrators.MALA(0.2, target_accept=0.5), n_walkers=3)
    s.run(5, burn_in=5)
    path = save_checkpoint(tmp_path / "c.npz", s.state_dict())
    with zipfile.ZipFile(path) as z:
        assert all(n.endswith(".npy") for n in z.namelist())
    with np.load(path, allow_pickle=False) as z:  # would raise on any object array
        for k in z.files:
            assert z[k].dtype != object
    sd, _ = load_checkpoint(path)
    assert sd["step"] == 10 and sd["state_class"] == "AdaptiveState"


def test_atomic_write_never_leaves_a_partial_file(tmp_path):
    target = tmp_path / "x.bin"
    atomic_write_bytes(target, b"old")

    with pytest.raises(TypeError):
        atomic_write_bytes(target, object())  # fails while writing the temporary file
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["x.bin"]  # no temporary file left


def test_corrupt_newest_checkpoint_falls_back_and_is_reported(tmp_path):
    s = lmd.Sampler(Harmonic(dim=2), lmd.integrators.ULA(0.1), n_walkers=2)
    for step in (10, 20):
        s.run_to(step)
        save_checkpoint(checkpoint_path(tmp_path, step), s.state_dict())
    newest = list_checkpoints(tmp_path)[-1]
    data = bytearray(newest.read_bytes())
    data[len(data) // 2] ^= 0xFF
    newest.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="unreadable"):
        load_checkpoint(newest)
    path, sd, _ = latest_checkpoint(tmp_path)
    assert sd["step"] == 10 and path.name == "step_000000000010.npz"
    (tmp_path / ".step_000000000030.npz.tmp-123").write_bytes(b"partial")  # ignored
    assert len(list_checkpoints(tmp_path)) == 2


def test_reporter_checkpoints_on_schedule_keeps_two_and_stops_on_request(tmp_path):
    s = lmd.Sampler(Harmonic(dim=1), lmd.integrators.BAOAB(0.2, 1.0), n_walkers=2)
    commits = []
    rep = CheckpointReporter(tmp_path, every=40, end=130, commit=lambda: commits.append(s.step) or {"n_frames": 0})
    rep.last_step = 0
    s.run_to(130, reporters=[rep])
    assert commits == [40, 80, 120, 130]
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step_000000000120.npz", "step_000000000130.npz"]

    class StopAt(CheckpointReporter):
        def next_report(self, step):
            if step >= 150 and self.stop_signal is None:
                self.request_stop(15)
            return super().next_report(step)

    rep2 = StopAt(tmp_path, every=1000, end=5000)
    rep2.last_step = s.step
    with pytest.raises(RunInterrupted) as info:
        s.run_to(5000, reporters=[rep2])
    # The stop is honoured within one poll interval (every // 10 = 100 steps).
    assert 150 <= info.value.step <= 201 and info.value.signum == 15
    assert load_checkpoint(info.value.checkpoint)[0]["step"] == info.value.step == s.step


def test_reporter_rejects_bad_interval(tmp_path):
    with pytest.raises(ValueError, match="checkpoint_every must be a positive integer, got 0"):
        CheckpointReporter(tmp_path, every=0)
