"""Run folders: layout, load_run == sample(), failures that never lose committed frames."""

from __future__ import annotations

import dataclasses
import json
import os
import resource
import signal
import subprocess
import sys

import numpy as np
import pytest

import langevin_md as lmd
from langevin_md.run.config import load_config
from langevin_md.run.build import build_integrator, build_system
from langevin_md.io.checkpoint import list_checkpoints, load_checkpoint
from langevin_md.run.folder import RunFailed, RunFolderError, RunStorageError, create_run, load_run
from langevin_md.run.session import execute_run

from tests.io.helpers import cli_command, write_config


def _run(tmp_path, name="run", **cfg_kwargs):
    cfg = load_config(write_config(tmp_path, **cfg_kwargs))
    run_dir = create_run(cfg, tmp_path / name)
    execute_run(run_dir, progress=False, handle_signals=False)
    return cfg, run_dir


@pytest.mark.parametrize("integrator,keys", [
    ("mala", "step_size = 1e-4\ntarget_accept = 0.6"),
    ("baoab", "timestep = 1e-3\nfriction = 2.0"),
])
def test_load_run_returns_what_sample_returns(tmp_path, integrator, keys):
    cfg, run_dir = _run(tmp_path, integrator=integrator, integrator_keys=keys, n_steps=600,
                        burn_in=100, record_every=9, checkpoint_every=250)
    assert sorted(p.name for p in run_dir.iterdir()) == [
        ".langevin-md-run", ".lock", "checkpoints", "config.toml", "run.log", "summary.json", "trajectory.h5"]
    r = load_run(run_dir)
    s = cfg.sampler
    ref = lmd.sample(build_system(cfg), build_integrator(cfg), n_steps=s["n_steps"], n_walkers=s["n_walkers"],
                     record_every=s["record_every"], burn_in=s["burn_in"], seed=s["seed"])
    assert type(r) is type(ref)
    for name in ("positions", "energies", "steps", "kinetic_energies", "acceptance_rate", "step_sizes",
                 "walker_indices"):
        a, b = getattr(r, name), getattr(ref, name)
        assert (a is None) == (b is None), name
        if a is not None:
            assert a.dtype == b.dtype and np.array_equal(a, b), name
    assert r.kT == ref.kT and r.n_steps_run == ref.n_steps_run == 700
    # How one sample() call chose to run (compile and backend decisions) is not a run folder's:
    # its config.toml names the executor, its run.log says why.
    per_call = ("compiled", "compile_decision", "backend_reason")
    assert {k: r.metadata[k] for k in ref.metadata if k not in per_call} == \
        {k: v for k, v in ref.metadata.items() if k not in per_call}
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["n_frames"] == r.n_frames
    assert summary["last_checkpoint"] == "checkpoints/step_000000000700.npz"


def test_resolved_config_holds_every_default_and_round_trips(tmp_path):
    cfg, run_dir = _run(tmp_path, n_steps=50, checkpoint_every=1000)
    text = (run_dir / "config.toml").read_text()
    assert "energy_scale = 1.0" in text and "burn_in = 0" in text and "# target_accept = None" in text
    # backend = "auto" (the default) is recorded as the executor it chose at the first start.
    assert cfg.sampler["backend"] == "auto"
    assert load_config(run_dir / "config.toml") == dataclasses.replace(cfg, sampler=dict(cfg.sampler, backend="torch"))


def test_non_finite_state_is_never_checkpointed(tmp_path):
    cfg = load_config(write_config(tmp_path, integrator="ula", integrator_keys="step_size = 0.05",
                                   n_steps=3000, checkpoint_every=5, record_every=1))
    run_dir = create_run(cfg, tmp_path / "nan")
    with pytest.raises(RunFailed) as info:
        execute_run(run_dir, progress=False, handle_signals=False)
    msg = str(info.value)
    assert "non-finite state" in msg and "walkers [" in msg and "step size" in msg
    assert "Nothing non-finite was checkpointed" in msg and "last good checkpoint is" in msg
    assert info.value.walkers and info.value.checkpoint is not None
    for path in list_checkpoints(run_dir / "checkpoints"):
        sd, _ = load_checkpoint(path)
        for v in sd["state"].values():
            if isinstance(v, np.ndarray) and v.dtype.kind == "f":
                assert np.isfinite(v).all(), path
    r = load_run(run_dir)
    assert r.metadata["status"] == "failed"
    assert np.isfinite(r.positions).all() and r.steps[-1] < info.value.steps[1]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert "non-finite" in summary["error"]


def test_create_refuses_to_overwrite_and_force_replaces_only_run_folders(tmp_path):
    cfg, run_dir = _run(tmp_path, n_steps=20)
    with pytest.raises(RunFolderError, match="already exists; pass --force"):
        create_run(cfg, run_dir)
    create_run(cfg, run_dir, force=True)
    assert not list_checkpoints(run_dir / "checkpoints") and not (run_dir / "trajectory.h5").exists()
    other = tmp_path / "precious"
    other.mkdir()
    (other / "thesis.tex").write_text("x")
    with pytest.raises(RunFolderError, match="not a langevin-md run folder.*refusing to delete"):
        create_run(cfg, other, force=True)
    assert (other / "thesis.tex").exists()


def test_config_edited_after_start_is_refused(tmp_path):
    cfg, run_dir = _run(tmp_path, n_steps=100, checkpoint_every=50)
    path = run_dir / "config.toml"
    path.write_text(path.read_text().replace("seed = 3", "seed = 4"))
    with pytest.raises(RunFolderError, match="was changed after the run started"):
        execute_run(run_dir, progress=False, handle_signals=False)


def test_extending_n_steps_continues_the_same_chain(tmp_path):
    cfg, run_dir = _run(tmp_path, n_steps=200, checkpoint_every=100)
    path = run_dir / "config.toml"
    path.write_text(path.read_text().replace("n_steps = 200", "n_steps = 400"))
    execute_run(run_dir, progress=False, handle_signals=False)
    _, ref = _run(tmp_path, name="ref", n_steps=400, checkpoint_every=100)
    assert np.array_equal(load_run(run_dir).positions, load_run(ref).positions)


def test_unwritable_location_is_reported(tmp_path):
    cfg = load_config(write_config(tmp_path))
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    with pytest.raises(RunStorageError, match="creating run folder .* failed"):
        create_run(cfg, blocker / "run")
    if os.geteuid() != 0:  # permissions do not bind root
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        try:
            with pytest.raises(RunStorageError, match="permission denied"):
                create_run(cfg, ro / "run")
        finally:
            ro.chmod(0o700)


def test_full_disk_is_reported_and_committed_frames_survive(tmp_path):
    """The file-size limit (RLIMIT_FSIZE, binding even for root) stands in for a full disk."""
    config = write_config(tmp_path, n_steps=5000, n_walkers=512, record_every=1, checkpoint_every=100)
    run_dir = tmp_path / "full"

    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # write() then fails with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (12_000_000, 12_000_000))

    proc = subprocess.run(cli_command() + ["run", str(config), "-o", str(run_dir), "--no-progress"],
                          capture_output=True, text=True, preexec_fn=limit, timeout=120)
    assert proc.returncode == 1, proc.stderr
    assert "failed (EFBIG" in proc.stderr and "file-size limit" in proc.stderr
    assert "are safe, with checkpoint" in proc.stderr and f"langevin-md resume {run_dir}" in proc.stderr
    r = load_run(run_dir)
    step = load_checkpoint(list_checkpoints(run_dir / "checkpoints")[-1])[0]["step"]
    assert r.n_frames == step > 0
    cfg = load_config(config)
    ref = lmd.sample(build_system(cfg), build_integrator(cfg), n_steps=step, n_walkers=512, seed=3)
    assert np.array_equal(r.positions, ref.positions)


def test_a_second_process_cannot_use_a_busy_run_folder(tmp_path):
    cfg = load_config(write_config(tmp_path))
    run_dir = create_run(cfg, tmp_path / "busy")
    code = ("import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT); "
            "fcntl.flock(fd, fcntl.LOCK_EX); print('locked', flush=True); time.sleep(30)")
    holder = subprocess.Popen([sys.executable, "-c", code, str(run_dir / ".lock")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunFolderError, match="another langevin-md process"):
            execute_run(run_dir, progress=False, handle_signals=False)
    finally:
        holder.kill()
        holder.wait()
