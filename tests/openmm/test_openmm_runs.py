"""The OpenMM executor in configs, run folders and resume after SIGKILL (real subprocesses).

Alanine dipeptide with HBond constraints on the Reference platform, ``[sampler] backend =
"openmm"``. The Dask shards are in tests/run/test_distributed.py.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import time

import numpy as np
import openmm
import pytest

from langevin_md.run.config import ConfigError, load_config
from langevin_md.run.build import build_sampler, build_system
from langevin_md.io.checkpoint import list_checkpoints, load_checkpoint
from langevin_md.run.folder import create_run, load_run
from langevin_md.run.session import execute_run as execute

from ..io.helpers import cli_command, run_cli, trajectory_arrays
from .run_configs import write_alanine_config


def _hbond_lengths(system, positions):
    """Constrained distances (nm) of every frame and walker, and their targets."""
    pairs, targets = [], []
    for i in range(system.openmm_system.getNumConstraints()):
        a, b, d = system.openmm_system.getConstraintParameters(i)
        pairs.append((a, b))
        targets.append(d.value_in_unit(openmm.unit.nanometer))
    pairs = np.asarray(pairs)
    r = np.linalg.norm(positions[..., pairs[:, 0], :] - positions[..., pairs[:, 1], :], axis=-1)
    return r, np.asarray(targets)


def test_openmm_config_runs_alanine_with_hbonds_into_a_run_folder(tmp_path):
    cfg_path = write_alanine_config(tmp_path, n_steps=600, burn_in=100, record_every=20, checkpoint_every=300)
    cfg = load_config(cfg_path)
    assert cfg.sampler["backend"] == "openmm"
    run_dir = create_run(cfg, tmp_path / "run")
    summary = execute(run_dir, progress=False, handle_signals=False)
    assert summary["status"] == "completed" and summary["metadata"]["backend"] == "openmm"
    r = load_run(run_dir)
    np.testing.assert_array_equal(r.steps, 100 + 20 * np.arange(1, 31))
    assert r.positions.shape == (30, 2, 22, 3) and r.kinetic_energies.shape == (30, 2)
    assert r.metadata["backend"] == "openmm" and r.fields == {}
    system = build_system(cfg)
    dist, target = _hbond_lengths(system, r.positions)
    assert len(target) > 0
    np.testing.assert_allclose(dist, np.broadcast_to(target, dist.shape), rtol=2e-5)
    import torch

    e, _ = system.energy_and_forces(torch.from_numpy(r.positions[-1].copy()))
    np.testing.assert_allclose(r.energies[-1], e.numpy(), rtol=1e-9, atol=1e-9)
    assert [p.name for p in list_checkpoints(run_dir / "checkpoints")] == [
        "step_000000000600.npz", "step_000000000700.npz"]


def test_backend_errors_name_the_key(tmp_path):
    with pytest.raises(ConfigError, match=r"backend = 'jax' is not a known executor; known: auto, torch, openmm"):
        load_config(_replace(write_alanine_config(tmp_path, "a.toml"), 'backend = "openmm"', 'backend = "jax"'))
    cfg = load_config(write_alanine_config(tmp_path, "b.toml", extra="compile = true"))
    with pytest.raises(ConfigError, match=r"compile = true applies to backend = \"torch\" only"):
        build_sampler(cfg)
    # The torch executor's BAOAB now constrains too; a scheme that cannot is refused by name.
    cfg = load_config(_replace(_replace(write_alanine_config(tmp_path, "c.toml"), 'backend = "openmm"',
                                        'backend = "torch"'), 'name = "baoab"\ntimestep = 0.002\nfriction = 1.0', 'name = "ula"\nstep_size = 1e-6'))
    with pytest.raises(ConfigError, match="BAOAB"):
        build_sampler(cfg)


def _replace(path, old, new):
    path.write_text(path.read_text().replace(old, new))
    return path


def test_resume_restores_positions_velocities_and_step_with_seeds_of_the_checkpoint(tmp_path):
    cfg = load_config(write_alanine_config(tmp_path, n_steps=400, checkpoint_every=200))
    run_dir = create_run(cfg, tmp_path / "run")
    execute(run_dir, progress=False, handle_signals=False)
    sd, _ = load_checkpoint(list_checkpoints(run_dir / "checkpoints")[0])
    assert sd["step"] == 200 and sd["rng"]["counter"] == 0
    sampler = build_sampler(cfg)
    sampler.load_state_dict(sd)
    again = sampler.state_dict()
    assert again["step"] == 200 and again["rng"]["counter"] == 200   # seeds drawn at the checkpoint step
    for key in ("positions", "velocities"):
        np.testing.assert_array_equal(again["state"][key], sd["state"][key])


def test_sigkill_then_resume_never_duplicates_or_drops_frames(tmp_path):
    # Several seconds of stepping, so the kill lands mid-run at a random point between checkpoints.
    config = write_alanine_config(tmp_path, n_steps=40000, record_every=50, checkpoint_every=2000)
    rng = np.random.default_rng(20261129)
    run_dir = tmp_path / "killed"
    proc = subprocess.Popen(cli_command() + ["run", str(config), "--output", str(run_dir), "--no-progress"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    t0 = time.monotonic()
    while not list_checkpoints(run_dir / "checkpoints"):
        assert proc.poll() is None, f"run ended before its first checkpoint: {proc.stderr.read()}"
        assert time.monotonic() - t0 < 60, "no checkpoint appeared"
        time.sleep(0.01)
    time.sleep(rng.uniform(0.0, 1.0))
    assert proc.poll() is None, "the run finished before it could be killed; make it longer"
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL

    killed_at = load_checkpoint(list_checkpoints(run_dir / "checkpoints")[-1])[0]["step"]
    assert 0 < killed_at < 40000
    before = trajectory_arrays(run_dir)
    keep = before["steps"] <= killed_at
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)

    res = run_cli("resume", run_dir, "--no-progress", check_rc=0)
    assert "resuming from" in res.stderr
    after = trajectory_arrays(run_dir)
    # Every frame exactly once: the full grid, in order.
    np.testing.assert_array_equal(after["steps"], 50 * np.arange(1, 801))
    # The frames committed before the kill are kept as they were.
    for key in before:
        if key != "walker_indices":
            np.testing.assert_array_equal(after[key][:keep.sum()], before[key][keep])
    # The continuation's seeds come from (run seed, checkpoint step): a second resume of the
    # same checkpoint gives the same frames.
    run_cli("resume", copy, "--no-progress", check_rc=0)
    other = trajectory_arrays(copy)
    for key in after:
        np.testing.assert_array_equal(after[key], other[key])
    r = load_run(run_dir)
    assert r.metadata["status"] == "completed" and r.n_frames == 800
    assert np.all(np.isfinite(r.positions)) and np.all(np.isfinite(r.kinetic_energies))


def test_reporters_see_the_openmm_state_at_the_steps_they_ask_for():
    import langevin_md as lmd
    from langevin_md.executors.openmm import OpenMMSampler
    from langevin_md.integrators import OBABO
    from langevin_md.systems.molecules import alanine_dipeptide

    class Every(lmd.Reporter):
        def __init__(self):
            self.seen = []

        def next_report(self, step):
            # 0 means "due now": at a multiple of 30 not yet reported.
            if step and step % 30 == 0 and (not self.seen or self.seen[-1][0] != step):
                return 0
            return 30 - step % 30

        def report(self, sampler, state, step):
            self.seen.append((step, state.positions.numpy().copy(), state.velocities.shape))

    system = alanine_dipeptide("vacuum", platform="Reference")
    rep = Every()
    s = OpenMMSampler(system, OBABO(0.001, 5.0), n_walkers=2, seed=3)
    r = s.run(90, record_every=15, reporters=[rep])
    assert [step for step, _, _ in rep.seen] == [30, 60, 90]
    for step, positions, vshape in rep.seen:
        assert vshape == (2, 22, 3)
        np.testing.assert_array_equal(positions, r.positions[list(r.steps).index(step)])
