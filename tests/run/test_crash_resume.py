"""Real crashes: `langevin-md run` killed with SIGKILL or stopped with SIGTERM, then resumed.

The resumed run folder must hold bitwise the trajectory of an uninterrupted run.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from langevin_md.run.config import load_config
from langevin_md.io.checkpoint import list_checkpoints, load_checkpoint
from langevin_md.run.folder import RunFolderError, create_run, load_run
from langevin_md.run.session import execute_run

from tests.io.helpers import assert_same_trajectory, cli_command, run_cli, write_config


def _reference(tmp_path: Path, config: Path) -> Path:
    ref = tmp_path / "reference"
    create_run(load_config(config), ref)
    execute_run(ref, progress=False, handle_signals=False)
    return ref


def _start(config: Path, run_dir: Path) -> subprocess.Popen:
    return subprocess.Popen(cli_command() + ["run", str(config), "--output", str(run_dir), "--no-progress"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_checkpoint(proc: subprocess.Popen, run_dir: Path, timeout: float = 60.0) -> None:
    t0 = time.monotonic()
    while not list_checkpoints(run_dir / "checkpoints"):
        if proc.poll() is not None:
            raise AssertionError(f"run ended before its first checkpoint: {proc.stderr.read()}")
        if time.monotonic() - t0 > timeout:
            proc.kill()
            raise AssertionError("no checkpoint appeared")
        time.sleep(0.01)


def test_sigkill_at_a_random_moment_then_resume_is_bitwise_identical(tmp_path):
    # Long enough (several seconds) that the kill lands mid-run, at a random point between
    # checkpoints, possibly in the middle of an HDF5 write or a checkpoint write.
    config = write_config(tmp_path, n_steps=6000, n_walkers=32, record_every=7, checkpoint_every=500,
                          integrator="baoab", integrator_keys="timestep = 2e-3\nfriction = 1.0")
    rng = np.random.default_rng(20240611)
    run_dir = tmp_path / "killed"
    proc = _start(config, run_dir)
    _wait_for_checkpoint(proc, run_dir)
    time.sleep(rng.uniform(0.0, 1.2))
    assert proc.poll() is None, "the run finished before it could be killed; make it longer"
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL

    killed_at = load_checkpoint(list_checkpoints(run_dir / "checkpoints")[-1])[0]["step"]
    assert 0 < killed_at < 6000
    res = run_cli("resume", run_dir, "--no-progress", check_rc=0)
    assert "resuming from" in res.stderr
    assert_same_trajectory(run_dir, _reference(tmp_path, config))
    r = load_run(run_dir)
    assert r.steps[0] == 7 and np.all(np.diff(r.steps) == 7) and r.steps[-1] == 5999
    assert r.metadata["status"] == "completed"


def test_sigterm_finishes_the_chunk_checkpoints_and_resumes(tmp_path):
    config = write_config(tmp_path, n_steps=3000, n_walkers=16, checkpoint_every=500, burn_in=500,
                          integrator="mala", integrator_keys="step_size = 1e-4\ntarget_accept = 0.6")
    run_dir = tmp_path / "stopped"
    proc = _start(config, run_dir)
    _wait_for_checkpoint(proc, run_dir)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "stopped by SIGTERM" in err and f"langevin-md resume {run_dir}" in err
    summary = load_run(run_dir).metadata
    assert summary["status"] == "interrupted"
    stopped_at = load_checkpoint(list_checkpoints(run_dir / "checkpoints")[-1])[0]["step"]
    assert stopped_at < 3500
    # Adaptation state (per-walker step sizes) must survive the stop.
    run_cli("resume", run_dir, "--no-progress", check_rc=0)
    ref = _reference(tmp_path, config)
    assert_same_trajectory(run_dir, ref)
    a, b = load_run(run_dir), load_run(ref)
    assert np.array_equal(a.step_sizes, b.step_sizes)
    assert np.array_equal(a.acceptance_rate, b.acceptance_rate)


def test_resume_drops_frames_written_after_the_last_checkpoint(tmp_path):
    """A trajectory that runs past its newest checkpoint (what a crash leaves) is cut back."""
    config = write_config(tmp_path, n_steps=3000, checkpoint_every=1000, record_every=30)
    run_dir = _reference(tmp_path, config)
    full = load_run(run_dir)
    # Remove the newest checkpoints: the file now holds frames past the newest one left.
    ck = list_checkpoints(run_dir / "checkpoints")
    for p in ck[1:]:
        p.unlink()
    kept = load_checkpoint(ck[0])[0]["step"]
    assert kept == 2000
    execute_run(run_dir, progress=False, handle_signals=False)
    again = load_run(run_dir)
    assert np.array_equal(again.steps, full.steps)
    assert np.array_equal(again.positions, full.positions)
    assert "resuming from step_000000002000.npz: step 2000, 66 frames kept" in (run_dir / "run.log").read_text()


def test_resume_with_no_checkpoint_starts_over(tmp_path):
    config = write_config(tmp_path, n_steps=400, checkpoint_every=100)
    run_dir = _reference(tmp_path, config)
    before = load_run(run_dir)
    for p in list_checkpoints(run_dir / "checkpoints"):
        p.unlink()
    execute_run(run_dir, progress=False, handle_signals=False)
    assert np.array_equal(load_run(run_dir).positions, before.positions)


def test_resume_with_a_missing_trajectory_is_refused_clearly(tmp_path):
    config = write_config(tmp_path, n_steps=200, checkpoint_every=100)
    run_dir = _reference(tmp_path, config)
    (run_dir / "trajectory.h5").unlink()
    (run_dir / "checkpoints" / "step_000000000200.npz").unlink()
    with pytest.raises(RunFolderError, match="cannot resume .*trajectory file .* does not exist"):
        execute_run(run_dir, progress=False, handle_signals=False)
