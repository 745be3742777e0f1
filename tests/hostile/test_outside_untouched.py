"""Nothing outside a run folder is written or deleted: symlinked entries, --force, paths.

Every test puts files outside the run folder, records their checksums, points a run-folder
entry at them through a symbolic link (or puts a user's file beside a run), runs the
hostile operation and checks that the outside files are byte-for-byte unchanged.
"""

from __future__ import annotations

import json
import os
import shutil
import tomllib
from pathlib import Path

import pytest

from langevin_md.run.config import ConfigError, load_config, toml_value
from langevin_md.io.checkpoint import atomic_write_bytes
from langevin_md.run.folder import RunFolderError, create_run, load_run
from langevin_md.run.session import execute_run
from tests.hostile.support import copy_run, finished_run, outside_files, run_cli, unchanged, write_config


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    return finished_run(tmp_path_factory.mktemp("template"))


def _extend(run_dir: Path) -> None:
    """Raise n_steps so that resume has work to do (and files to write)."""
    cfg = run_dir / "config.toml"
    cfg.write_text(cfg.read_text().replace("n_steps = 400", "n_steps = 600"))


@pytest.mark.parametrize("entry", ["trajectory.h5", ".lock", "run.log", "summary.json", "config.toml"])
def test_resume_refuses_a_symlinked_entry_and_leaves_its_target_alone(tmp_path, template, entry):
    run_dir = copy_run(template, tmp_path / "run")
    _extend(run_dir)
    outside = tmp_path / "outside"
    sums = outside_files(outside)
    target = outside / ("precious.h5" if entry == "trajectory.h5" else "precious.txt")
    if (run_dir / entry).exists():
        (run_dir / entry).unlink()
    (run_dir / entry).symlink_to(target)
    with pytest.raises(RunFolderError, match=f"{entry}.* symbolic link"):
        execute_run(run_dir, progress=False, handle_signals=False)
    assert unchanged(outside, sums)


def test_resume_refuses_a_symlinked_checkpoints_folder_and_deletes_nothing(tmp_path, template):
    run_dir = copy_run(template, tmp_path / "run")
    _extend(run_dir)
    outside = tmp_path / "outside"
    shutil.copytree(run_dir / "checkpoints", outside)  # files that look like checkpoints
    (outside / "precious.txt").write_text("mine")
    before = {p.name: p.read_bytes() for p in outside.iterdir()}
    shutil.rmtree(run_dir / "checkpoints")
    (run_dir / "checkpoints").symlink_to(outside)
    proc = run_cli("resume", run_dir, "--no-progress")
    assert proc.returncode == 1 and proc.stderr.startswith("langevin-md: error:"), proc.stderr
    assert "checkpoints" in proc.stderr and "symbolic link" in proc.stderr and "Traceback" not in proc.stderr
    assert {p.name: p.read_bytes() for p in outside.iterdir()} == before


def test_a_symlinked_checkpoint_file_is_refused(tmp_path, template):
    run_dir = copy_run(template, tmp_path / "run")
    newest = sorted((run_dir / "checkpoints").glob("step_*.npz"))[-1]
    outside = tmp_path / "outside"
    sums = outside_files(outside)
    newest.unlink()
    newest.symlink_to(outside / "precious.h5")
    with pytest.raises(RunFolderError, match="symbolic link"):
        execute_run(run_dir, progress=False, handle_signals=False)
    assert unchanged(outside, sums)


def test_a_planted_temporary_file_symlink_is_not_written_through(tmp_path):
    outside = tmp_path / "outside"
    sums = outside_files(outside)
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / f".summary.json.tmp-{os.getpid()}").symlink_to(outside / "precious.txt")
    atomic_write_bytes(folder / "summary.json", b"{}")
    assert (folder / "summary.json").read_bytes() == b"{}"
    assert unchanged(outside, sums)


def test_force_refuses_a_folder_holding_a_users_files(tmp_path, template):
    run_dir = copy_run(template, tmp_path / "run")
    (run_dir / "my_notes.txt").write_text("not the run's")
    cfg = write_config(tmp_path, name="again.toml", n_steps=100, n_walkers=2, record_every=10,
                       checkpoint_every=50)
    proc = run_cli("run", cfg, "-o", run_dir, "--force", "--no-progress")
    assert proc.returncode == 1 and "my_notes.txt" in proc.stderr and "Traceback" not in proc.stderr
    assert (run_dir / "my_notes.txt").read_text() == "not the run's"
    assert (run_dir / "trajectory.h5").exists()  # nothing of the run was deleted either


def test_force_refuses_a_copied_config_without_the_marker(tmp_path, template):
    """A folder holding a copy of a run's config.toml (header and all) is not a run folder."""
    folder = tmp_path / "mine"
    folder.mkdir()
    shutil.copy(template / "config.toml", folder / "config.toml")
    (folder / "thesis.tex").write_text("years of work")
    cfg = write_config(tmp_path, n_steps=100, n_walkers=2, record_every=10, checkpoint_every=50)
    with pytest.raises(RunFolderError, match="not a langevin-md run folder"):
        create_run(load_config(cfg), folder, force=True)
    assert (folder / "thesis.tex").read_text() == "years of work"


def test_force_refuses_symlinked_entries_and_replaces_a_real_run_folder(tmp_path, template):
    outside = tmp_path / "outside"
    sums = outside_files(outside)
    cfg = load_config(write_config(tmp_path, n_steps=100, n_walkers=2, record_every=10, checkpoint_every=50))
    run_dir = copy_run(template, tmp_path / "run")
    (run_dir / "report").symlink_to(outside)
    with pytest.raises(RunFolderError, match="report"):
        create_run(cfg, run_dir, force=True)
    assert unchanged(outside, sums)
    (run_dir / "report").unlink()
    # A run folder with what `analyze` and `export` write into it is replaced.
    (run_dir / "report").mkdir()
    (run_dir / "report" / "report.html").write_text("<html/>")
    (run_dir / "walker_0.extxyz").write_text("")
    create_run(cfg, run_dir, force=True)
    assert sorted(p.name for p in run_dir.iterdir()) == [".langevin-md-run", ".lock", "checkpoints", "config.toml"]
    marker = json.loads((run_dir / ".langevin-md-run").read_text())
    assert marker["format"] == "langevin_md.run_folder" and marker["version"] == 1


def test_a_newer_run_folder_version_is_refused(tmp_path, template):
    run_dir = copy_run(template, tmp_path / "run")
    (run_dir / ".langevin-md-run").write_text(json.dumps({"format": "langevin_md.run_folder", "version": 99}))
    with pytest.raises(RunFolderError, match="version 99"):
        execute_run(run_dir, progress=False, handle_signals=False)


# --------------------------------------------------------------------------- paths
def _openmm_config(folder: Path, pdb: str) -> Path:
    path = folder / "c.toml"
    path.write_text(f'[system]\nname = "openmm_pdb"\npdb_path = {toml_value(pdb)}\nplatform = "Reference"\n'
                    '[integrator]\nname = "baoab"\n[sampler]\nn_steps = 10\n')
    return path


def test_relative_paths_resolve_beside_the_config_never_the_working_directory(tmp_path, monkeypatch):
    pytest.importorskip("openmm")
    from langevin_md.systems.molecules import ALANINE_DIPEPTIDE_PDB

    conf_dir, cwd = tmp_path / "configs", tmp_path / "cwd"
    conf_dir.mkdir()
    cwd.mkdir()
    shutil.copy(ALANINE_DIPEPTIDE_PDB, cwd / "ala.pdb")  # present only in the working directory
    monkeypatch.chdir(cwd)
    with pytest.raises(ConfigError, match=r"pdb_path: file .*configs/ala.pdb does not exist"):
        load_config(_openmm_config(conf_dir, "ala.pdb"))
    shutil.copy(ALANINE_DIPEPTIDE_PDB, conf_dir / "ala.pdb")
    cfg = load_config(_openmm_config(conf_dir, "ala.pdb"))
    assert cfg.system["pdb_path"] == str((conf_dir / "ala.pdb").resolve())
    # The run folder's config is usable from any directory.
    run_dir = create_run(cfg, tmp_path / "run")
    monkeypatch.chdir(tmp_path)
    assert load_config(run_dir / "config.toml").system["pdb_path"] == str((conf_dir / "ala.pdb").resolve())


@pytest.mark.parametrize("name", ["ala_😀_𝔘.pdb", "ünï cödé \"q\" \\ b.pdb"])
def test_any_unicode_path_round_trips_through_the_saved_config(tmp_path, name):
    pytest.importorskip("openmm")
    from langevin_md.systems.molecules import ALANINE_DIPEPTIDE_PDB

    folder = tmp_path / "dir_🧪"
    folder.mkdir()
    shutil.copy(ALANINE_DIPEPTIDE_PDB, folder / name)
    cfg = load_config(_openmm_config(folder, name))
    run_dir = create_run(cfg, tmp_path / "run_🏃")
    saved = tomllib.loads((run_dir / "config.toml").read_text(encoding="utf-8"))
    assert saved["system"]["pdb_path"] == str((folder / name).resolve())
    assert load_config(run_dir / "config.toml") == cfg


def test_load_run_of_a_folder_that_is_not_a_run(tmp_path):
    (tmp_path / "x").mkdir()
    with pytest.raises(RunFolderError, match="not a langevin-md run folder"):
        load_run(tmp_path / "x")


def test_a_run_folder_from_before_markers_is_named_and_explained(tmp_path, template, capsys):
    from langevin_md import cli

    run_dir = copy_run(template, tmp_path / "run")
    (run_dir / ".langevin-md-run").unlink()
    assert cli.main(["resume", str(run_dir)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("langevin-md: error:") and "older langevin-md" in err and ".langevin-md-run" in err


def test_force_looks_inside_shard_folders(tmp_path, template):
    cfg = load_config(write_config(tmp_path, n_steps=100, n_walkers=2, record_every=10, checkpoint_every=50))
    run_dir = copy_run(template, tmp_path / "run")
    copy_run(template, run_dir / "shards" / "shard_000")
    (run_dir / "shards" / "shard_000" / "data.csv").write_text("mine")
    with pytest.raises(RunFolderError, match="shards/shard_000/data.csv"):
        create_run(cfg, run_dir, force=True)
    assert (run_dir / "shards" / "shard_000" / "data.csv").read_text() == "mine"
    (run_dir / "shards" / "shard_000" / "data.csv").unlink()
    create_run(cfg, run_dir, force=True)
    assert not (run_dir / "shards").exists()
