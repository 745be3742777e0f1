"""Broken files fail fast and loudly: truncated and corrupted trajectories, dead checkpoints.

A truncated ``trajectory.h5`` used to make HDF5's SWMR reader retry for minutes and to read
the missing tail of the positions as zeros; now both the reader and ``resume`` stop at once
with an error that says which frames are intact and how to recover.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from langevin_md.io.checkpoint import list_checkpoints
from langevin_md.run.folder import RunFolderError, load_run
from langevin_md.run.session import execute_run
from langevin_md.io.trajectory import TrajectoryError, read_trajectory
from tests.hostile.support import copy_run, finished_run, run_cli, write_config
from tests.io.helpers import cli_command


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    return finished_run(tmp_path_factory.mktemp("template"), n_steps=2000, n_walkers=16, record_every=1,
                        checkpoint_every=1000)


def _truncate(path: Path, fraction: float) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])


@pytest.mark.parametrize("fraction", [0.2, 0.5, 0.8, 0.95, 0.999])
def test_a_truncated_trajectory_is_refused_at_once_and_never_read_as_zeros(tmp_path, template, fraction):
    run_dir = copy_run(template, tmp_path / "run")
    n_frames = read_trajectory(run_dir / "trajectory.h5")["steps"].shape[0]
    _truncate(run_dir / "trajectory.h5", fraction)
    t0 = time.perf_counter()
    with pytest.raises(TrajectoryError, match="truncated") as info:
        load_run(run_dir)
    assert time.perf_counter() - t0 < 20.0
    message = str(info.value)
    assert "intact" in message and "langevin-md resume" in message  # which frames, and what to do
    intact = info.value.intact_frames
    assert intact is None or 0 <= intact < n_frames


def test_frames_reported_intact_are_the_real_ones(tmp_path, template):
    """Cut inside the frame data: the intact prefix is exactly the original's first frames."""
    run_dir = copy_run(template, tmp_path / "run")
    path = run_dir / "trajectory.h5"
    full = read_trajectory(path)
    with h5py.File(path, "r") as f:
        chunk = f["positions"].id.get_chunk_info(1)  # the second chunk of positions
        first_missing = chunk.chunk_offset[0]
    data = path.read_bytes()
    path.write_bytes(data[: chunk.byte_offset + chunk.size // 2])
    with pytest.raises(TrajectoryError) as info:
        read_trajectory(path)
    n = info.value.intact_frames
    assert n is not None and 0 < n <= first_missing
    assert info.value.intact_through_step == int(full["steps"][n - 1])


def test_resume_of_a_truncated_trajectory_says_how_to_recover(tmp_path, template):
    run_dir = copy_run(template, tmp_path / "run")
    cfg = run_dir / "config.toml"
    cfg.write_text(cfg.read_text().replace("n_steps = 2000", "n_steps = 2200"))
    _truncate(run_dir / "trajectory.h5", 0.6)
    with pytest.raises(RunFolderError, match="truncated.*intact.*checkpoint step_.*needs.*recomputes") as info:
        execute_run(run_dir, progress=False, handle_signals=False)
    assert "langevin-md resume" in str(info.value)


def test_a_corrupted_chunk_fails_its_checksum_instead_of_giving_wrong_numbers(tmp_path, template):
    run_dir = copy_run(template, tmp_path / "run")
    path = run_dir / "trajectory.h5"
    with h5py.File(path, "r") as f:
        info = f["positions"].id.get_chunk_info(0)
    with open(path, "r+b") as fh:
        fh.seek(info.byte_offset + 8)
        fh.write(b"\x7f" * 16)
    with pytest.raises(TrajectoryError, match="positions.*checksum at frame 0.*no frame is intact"):
        read_trajectory(path)


def test_every_checkpoint_unreadable_restarts_from_step_0_and_says_so(tmp_path, template):
    run_dir = copy_run(template, tmp_path / "run")
    for ck in list_checkpoints(run_dir / "checkpoints"):
        ck.write_bytes(ck.read_bytes()[:100])
    summary = execute_run(run_dir, progress=False, handle_signals=False)
    log = (run_dir / "run.log").read_text()
    assert "skipping unreadable checkpoint step_000000001000.npz" in log
    assert "no checkpoint of" in log and "restarting the run from step 0" in log
    assert summary["status"] == "completed" and summary["sessions"][-1]["from_step"] == 0
    # The recomputed run is the original one (the torch executor is deterministic).
    assert np.array_equal(load_run(run_dir).positions, load_run(template).positions)


def test_sigkill_then_truncation_then_resume_fails_fast_and_the_advice_works(tmp_path):
    """A writer killed with SIGKILL leaves an SWMR file; truncated, it used to hang readers."""
    cfg = write_config(tmp_path, n_steps=10_000_000, n_walkers=4, record_every=2, checkpoint_every=500)
    run_dir = tmp_path / "run"
    proc = subprocess.Popen(cli_command() + ["run", str(cfg), "-o", str(run_dir), "--no-progress"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    t0 = time.monotonic()
    try:
        while len(list_checkpoints(run_dir / "checkpoints")) < 2:
            assert proc.poll() is None, proc.stderr.read()
            assert time.monotonic() - t0 < 120, "no checkpoint within 120 s"
            time.sleep(0.1)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    _truncate(run_dir / "trajectory.h5", 0.5)
    t0 = time.monotonic()
    out = run_cli("resume", run_dir, "--no-progress")
    assert time.monotonic() - t0 < 60
    assert out.returncode == 1 and out.stderr.startswith("langevin-md: error:"), out.stderr
    assert "truncated" in out.stderr and "intact" in out.stderr and "Traceback" not in out.stderr
    # The advice: delete trajectory.h5 and checkpoints/, resume (here with a short n_steps).
    (run_dir / "trajectory.h5").unlink()
    for ck in list_checkpoints(run_dir / "checkpoints"):
        ck.unlink()
    text = (run_dir / "config.toml").read_text()
    (run_dir / "config.toml").write_text(text.replace("n_steps = 10000000", "n_steps = 200"))
    out = run_cli("resume", run_dir, "--no-progress")
    assert out.returncode == 0, out.stderr
    assert load_run(run_dir).n_frames == 100


def test_a_small_volume_with_room_is_not_reported_full(tmp_path):
    """The space reserve scales with the volume: a 3 MB volume holds a 10 kB run."""
    volume = tmp_path / "small"
    volume.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(volume)],
                                           capture_output=True).returncode != 0:
        pytest.skip("mounting a small tmpfs needs root")
    try:
        run_dir = finished_run(volume, n_steps=100, n_walkers=2, record_every=10, checkpoint_every=50)
        assert load_run(run_dir).n_frames == 10
    finally:
        subprocess.run(["umount", str(volume)], capture_output=True)


def test_a_corrupted_later_chunk_keeps_the_frames_before_it(tmp_path, template):
    run_dir = copy_run(template, tmp_path / "run")
    path = run_dir / "trajectory.h5"
    full = read_trajectory(path)
    for key in ("steps", "energies"):
        with h5py.File(path, "r") as f:
            info = f[key].id.get_chunk_info(1)
        damaged = tmp_path / f"{key}.h5"
        data = bytearray(path.read_bytes())
        data[info.byte_offset + 8:info.byte_offset + 24] = b"\x7f" * 16
        damaged.write_bytes(bytes(data))
        with pytest.raises(TrajectoryError, match=f"{key}.*checksum at frame {info.chunk_offset[0]}") as exc:
            read_trajectory(damaged)
        assert exc.value.intact_frames == info.chunk_offset[0]
        assert exc.value.intact_through_step == int(full["steps"][info.chunk_offset[0] - 1])
