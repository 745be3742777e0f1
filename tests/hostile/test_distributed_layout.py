"""Continuing a distributed run: the shard layout and the shard configs must be the ones it
started with, and a symlinked ``shards/`` is never followed. On a real 2-worker Dask
LocalCluster.

Before the layout was recorded, continuing a 2-shard run of 8 walkers with 4 shards merged
12 walkers (4-7 twice) with status "completed", and a shard whose config was edited (seed 3
-> 4) was merged silently.
"""

from __future__ import annotations

import json
import shutil

import pytest

distributed = pytest.importorskip("distributed")

from langevin_md.io.trajectory import read_trajectory  # noqa: E402
from langevin_md.run.distributed import run_distributed  # noqa: E402
from langevin_md.run.folder import RunFolderError, load_run  # noqa: E402
from tests.hostile.support import outside_files, run_cli, unchanged  # noqa: E402
from tests.io.helpers import write_config  # noqa: E402

LAYOUT = "shards.json"  # where the layout is recorded (langevin_md.run.distributed.LAYOUT)


@pytest.fixture(scope="module")
def cluster():
    cl = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None, silence_logs=40)
    client = distributed.Client(cl)
    yield cl, client
    client.close()
    cl.close()


@pytest.fixture(scope="module")
def two_shards(tmp_path_factory, cluster):
    """A finished distributed run of 8 walkers in 2 shards (walkers 0-3 and 4-7)."""
    _, client = cluster
    folder = tmp_path_factory.mktemp("dist")
    cfg = write_config(folder, n_steps=100, n_walkers=8, record_every=10, checkpoint_every=50)
    run_distributed(cfg, folder / "run", client, n_shards=2, progress=False)
    return cfg, folder / "run"


def _copy(run_dir, dst):
    shutil.copytree(run_dir, dst, symlinks=True)
    return dst


def test_the_layout_is_recorded_in_the_parent_folder(two_shards):
    cfg, run_dir = two_shards
    layout = json.loads((run_dir / LAYOUT).read_text())
    assert layout["n_shards"] == 2 and layout["n_walkers"] == 8
    assert [(s["name"], s["first_walker"], s["n_walkers"]) for s in layout["shards"]] == \
        [("shard_000", 0, 4), ("shard_001", 4, 4)]
    assert all(len(s["config"]) == 16 for s in layout["shards"])
    assert load_run(run_dir).n_walkers == 8


def test_continuing_with_another_shard_count_is_refused(tmp_path, cluster, two_shards):
    _, client = cluster
    cfg, template = two_shards
    run_dir = _copy(template, tmp_path / "run")
    with pytest.raises(RunFolderError, match=r"started with 2 shards \(walkers 0-3, 4-7\).*asks for 4 shards "
                                             r"\(walkers 0-1, 2-3, 4-5, 6-7\).*--shards 2.*--force"):
        run_distributed(cfg, run_dir, client, n_shards=4, progress=False)
    assert sorted(p.name for p in (run_dir / "shards").iterdir()) == ["shard_000", "shard_001"]
    assert read_trajectory(run_dir / "trajectory.h5")["positions"].shape[1] == 8
    # The same layout continues (nothing to do: both shards are complete).
    summary = run_distributed(cfg, run_dir, client, n_shards=2, progress=False)
    assert summary["status"] == "completed" and load_run(run_dir).n_walkers == 8


def test_a_default_shard_count_that_differs_is_refused(tmp_path, cluster, two_shards):
    """Started with 1 shard; continued without --shards on 2 workers (default: 2 shards)."""
    _, client = cluster
    cfg, _ = two_shards
    run_dir = tmp_path / "run"
    run_distributed(cfg, run_dir, client, n_shards=1, progress=False)
    with pytest.raises(RunFolderError, match=r"started with 1 shards.*asks for 2 shards.*--force"):
        run_distributed(cfg, run_dir, client, progress=False)
    assert load_run(run_dir).n_walkers == 8


def test_an_edited_shard_config_is_refused_naming_the_key(tmp_path, cluster, two_shards):
    _, client = cluster
    cfg, template = two_shards
    run_dir = _copy(template, tmp_path / "run")
    shard_cfg = run_dir / "shards" / "shard_001" / "config.toml"
    shard_cfg.write_text(shard_cfg.read_text().replace("seed = 3", "seed = 4"))
    with pytest.raises(RunFolderError, match=r"shard_001/config.toml was edited: \[sampler\] seed = 4 there, "
                                             r"3 in the run's config.*--force"):
        run_distributed(cfg, run_dir, client, n_shards=2, progress=False)
    # --force starts over, from the run's own config.
    summary = run_distributed(cfg, run_dir, client, n_shards=2, force=True, progress=False)
    assert summary["status"] == "completed" and "seed = 3" in shard_cfg.read_text()


def test_a_symlinked_shards_folder_is_never_followed(tmp_path, cluster, two_shards):
    _, client = cluster
    cfg, template = two_shards
    run_dir = _copy(template, tmp_path / "run")
    outside = tmp_path / "outside"
    sums = outside_files(outside)
    shutil.rmtree(run_dir / "shards")
    (run_dir / "shards").symlink_to(outside)
    with pytest.raises(RunFolderError, match="shards.*symbolic link"):
        run_distributed(cfg, run_dir, client, n_shards=2, progress=False)
    assert unchanged(outside, sums)


def test_the_cli_says_what_differs_and_how_to_start_over(tmp_path, cluster, two_shards):
    cl, _ = cluster
    cfg, template = two_shards
    run_dir = _copy(template, tmp_path / "run")
    proc = run_cli("run", cfg, "-o", run_dir, "--scheduler", cl.scheduler_address, "--shards", "4",
                   "--no-progress")
    assert proc.returncode == 1 and "2 shards" in proc.stderr and "--force" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
