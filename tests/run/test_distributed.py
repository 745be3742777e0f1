"""Distributed runs on a real 2-worker Dask LocalCluster: bitwise equality with a local run,
and survival of a worker killed with SIGKILL mid-shard."""

import dataclasses
import json
import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest

distributed = pytest.importorskip("distributed")

from langevin_md.run.distributed import run_distributed, shard_ranges  # noqa: E402
from langevin_md.run.folder import RunFolderError, create_run, load_run  # noqa: E402
from langevin_md.run.session import execute_run as execute  # noqa: E402
from langevin_md.run.config import load_config  # noqa: E402

from tests.io.helpers import trajectory_arrays, write_config  # noqa: E402


@pytest.fixture(scope="module")
def cluster():
    cl = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None, silence_logs=40)
    client = distributed.Client(cl)
    yield cl, client
    client.close()
    cl.close()


def local_reference(tmp_path, config_path):
    ref = tmp_path / "local"
    create_run(load_config(config_path), ref)
    execute(ref, progress=False, handle_signals=False)
    return ref


def test_shard_ranges():
    assert shard_ranges(10, 3) == [(0, 4), (4, 3), (7, 3)]
    with pytest.raises(ValueError, match="n_shards \\(5\\) cannot exceed the 4 groups"):
        shard_ranges(4, 5)
    # Replica-exchange ladders (blocks of 4 walkers) are never cut.
    assert shard_ranges(12, 2, block=4) == [(0, 8), (8, 4)]
    with pytest.raises(ValueError, match="multiple of 4"):
        shard_ranges(10, 2, block=4)
    with pytest.raises(ValueError, match="ladder of 4 walkers"):
        shard_ranges(8, 3, block=4)


def test_distributed_run_is_bitwise_equal_to_local(tmp_path, cluster):
    _, client = cluster
    cfg = write_config(tmp_path, integrator="mala", integrator_keys="step_size = 1e-4",
                       n_steps=600, n_walkers=7, record_every=10, checkpoint_every=200, burn_in=50)
    ref = local_reference(tmp_path, cfg)
    out = tmp_path / "dist"
    summary = run_distributed(cfg, out, client, n_shards=3, progress=False)
    assert summary["distributed"]["n_shards"] == 3
    assert summary["distributed"]["retried_shards"] == []
    a, b = trajectory_arrays(ref), trajectory_arrays(out)
    assert set(a) == set(b)
    for key in a:
        assert np.array_equal(a[key], b[key]), key
    # Same layout as a local run: load_run gives the same result object.
    ra, rb = load_run(ref), load_run(out)
    assert np.array_equal(ra.positions, rb.positions)
    np.testing.assert_array_equal(ra.acceptance_rate, rb.acceptance_rate)
    for name in ("config.toml", "run.log", "trajectory.h5", "summary.json"):
        assert (out / name).exists()
    assert list((out / "checkpoints").glob("step_*.npz"))


def test_killed_worker_shard_resumes_from_its_checkpoint(tmp_path, cluster):
    cl, client = cluster
    # Long enough shards that a worker can be killed mid-shard after its first checkpoint.
    cfg = write_config(tmp_path, integrator="baoab", integrator_keys="timestep = 0.002\nfriction = 10.0",
                       n_steps=12000, n_walkers=4, record_every=20, checkpoint_every=500)
    ref = local_reference(tmp_path, cfg)
    out = tmp_path / "dist"
    result = {}

    def go():
        try:
            result["summary"] = run_distributed(cfg, out, client, n_shards=2, progress=False)
        except BaseException as exc:  # surfaced by the assertion below
            result["error"] = exc

    thread = threading.Thread(target=go)
    thread.start()
    # Wait until a shard has checkpointed and is still running, then SIGKILL its worker.
    deadline = time.time() + 120
    victim = None
    while time.time() < deadline and victim is None:
        for shard in sorted((out / "shards").glob("shard_*")):
            attempts = shard / "attempts.jsonl"
            summ = shard / "summary.json"
            if not attempts.exists() or not list((shard / "checkpoints").glob("step_*.npz")):
                continue
            status = json.loads(summ.read_text()).get("status") if summ.exists() else None
            if status == "running":
                victim = json.loads(attempts.read_text().splitlines()[-1])["worker_pid"]
                break
        time.sleep(0.05)
    assert victim is not None, "no shard was seen running with a checkpoint"
    os.kill(victim, signal.SIGKILL)
    thread.join(timeout=300)
    assert not thread.is_alive()
    assert "error" not in result, result.get("error")
    summary = result["summary"]
    retried = summary["distributed"]["retried_shards"]
    assert len(retried) >= 1
    for info in summary["distributed"]["shards"]:
        if info["shard"] in retried:
            # Resumed from a checkpoint, not from scratch: finished work was kept.
            assert max(info["resumed_from_steps"]) > 0
    a, b = trajectory_arrays(ref), trajectory_arrays(out)
    for key in a:
        assert np.array_equal(a[key], b[key]), key


def test_cli_run_with_scheduler(tmp_path, cluster):
    from tests.io.helpers import run_cli

    cl, _ = cluster
    cfg = write_config(tmp_path, n_steps=300, n_walkers=4, record_every=10, checkpoint_every=100)
    ref = local_reference(tmp_path, cfg)
    out = tmp_path / "cli"
    proc = run_cli("run", cfg, "--output", out, "--scheduler", cl.scheduler_address, "--shards", "2",
                   "--no-progress", check_rc=0)
    assert "retried shards: none" in proc.stderr
    a, b = trajectory_arrays(ref), trajectory_arrays(out)
    for key in a:
        assert np.array_equal(a[key], b[key]), key
    bad = run_cli("run", cfg, "--output", tmp_path / "x", "--shards", "2")
    assert bad.returncode == 2 and "--shards needs --scheduler" in bad.stderr


def test_openmm_backend_runs_one_walker_per_shard_reproducibly(tmp_path, cluster):
    """backend = "openmm" with HBonds on 2 workers: each shard is one walker, and walker w's
    chain is bitwise the one a local run of walker w alone produces."""
    from tests.openmm.run_configs import write_alanine_config

    _, client = cluster
    cfg_path = write_alanine_config(tmp_path, n_steps=400, n_walkers=2, record_every=20, checkpoint_every=200)
    with pytest.raises(ValueError, match="one walker per shard"):
        run_distributed(cfg_path, tmp_path / "bad", client, n_shards=1, progress=False)
    out = tmp_path / "dist"
    summary = run_distributed(cfg_path, out, client, progress=False)
    assert summary["distributed"]["n_shards"] == 2
    assert summary["metadata"]["backend"] == "openmm (dask shards)"
    merged = load_run(out)
    assert merged.positions.shape == (20, 2, 22, 3)
    np.testing.assert_array_equal(merged.steps, 20 * np.arange(1, 21))
    cfg = load_config(cfg_path)
    for w in range(2):
        alone = tmp_path / f"walker_{w}"
        create_run(dataclasses.replace(cfg, sampler=dict(cfg.sampler, first_walker=w, n_walkers=1)), alone)
        execute(alone, progress=False, handle_signals=False)
        ref = load_run(alone)
        np.testing.assert_array_equal(ref.walker_indices, [w])
        np.testing.assert_array_equal(merged.positions[:, w], ref.positions[:, 0])
        np.testing.assert_array_equal(merged.kinetic_energies[:, w], ref.kinetic_energies[:, 0])


def test_adapted_metric_is_per_shard(tmp_path, cluster):
    """Each shard adapts its own preconditioner from its own walkers (no communication during
    burn-in), so each shard equals a local run of its walkers alone; the merged folder keeps the
    shards' checkpoints rather than forcing one shard's metric on every walker."""
    _, client = cluster
    cfg = write_config(tmp_path, integrator="ula", integrator_keys='step_size = 1e-4\npreconditioner = "diagonal"',
                       n_steps=200, n_walkers=6, record_every=10, checkpoint_every=100, burn_in=200)
    out = tmp_path / "dist"
    summary = run_distributed(cfg, out, client, n_shards=2, progress=False)
    assert "metric" in summary["per_shard_fields"]
    assert summary["last_checkpoint"] is None
    res = load_run(out)
    assert res.positions.shape[1] == 6 and np.isfinite(res.energies).all()



def test_an_auto_backend_continuation_keeps_the_executor_the_shards_started_on(tmp_path, cluster):
    """backend = "auto" is decided at every call; a continuation used to decide again, and a
    different answer (a timed probe; here, deterministically, the short-run rule says torch
    where the folder's resolved config says OpenMM) made the resolved config differ from the
    folder's, so the continuation was refused ("already exists; pass --force", which deletes
    the finished shards)."""
    from tests.openmm.run_configs import write_alanine_config

    _, client = cluster
    started = write_alanine_config(tmp_path, "started.toml", n_steps=40, n_walkers=2, record_every=20,
                                   checkpoint_every=20)
    out = tmp_path / "dist"
    run_distributed(started, out, client, progress=False)
    assert load_config(out / "config.toml").sampler["backend"] == "openmm"
    # The same run as the user's config says it: the executor left to backend = "auto".
    auto = tmp_path / "auto.toml"
    auto.write_text(started.read_text().replace('backend = "openmm"\n', ""))
    assert load_config(auto).sampler["backend"] == "auto"
    summary = run_distributed(auto, out, client, progress=False)
    assert summary["metadata"]["backend"] == "openmm (dask shards)"
    np.testing.assert_array_equal(load_run(out).steps, [20, 40])


def test_a_longer_continuation_is_refused_not_merged_at_the_old_end(tmp_path, cluster):
    """n_steps is outside the config fingerprint, so a continuation with a larger n_steps was
    accepted; the finished shards returned at once and the merge reported a "completed" run
    at the old end step (40 of the 60 steps asked for)."""
    _, client = cluster
    cfg = write_config(tmp_path, n_steps=40, n_walkers=4, record_every=10, checkpoint_every=20)
    out = tmp_path / "dist"
    run_distributed(cfg, out, client, n_shards=2, progress=False)
    cfg.write_text(cfg.read_text().replace("n_steps = 40", "n_steps = 60"))
    with pytest.raises(RunFolderError, match=r"to step 40 .*asks for step 60.*cannot be extended"):
        run_distributed(cfg, out, client, n_shards=2, progress=False)
    assert load_run(out).steps[-1] == 40
