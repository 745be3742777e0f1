"""Every command that writes refuses a symbolic link or a FIFO where its output goes.

Each test plants a real symbolic link (to files outside the run folder, whose checksums are
recorded) or a real FIFO at a path a command writes, runs the command, and checks that it
ended with an error naming the path, and that the outside files are byte-for-byte unchanged.
One helper (:mod:`langevin_md.safe_paths`) does the refusing for every command.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from langevin_md import cli
from langevin_md.run.config import load_config
from langevin_md.run.folder import create_run
from langevin_md.run.session import execute_run
from langevin_md.safe_paths import UnsafePathError, make_dirs, open_for_write, write_via_temp
from tests.hostile.support import copy_run, finished_run, outside_files, run_cli, unchanged
from tests.io.helpers import cli_command

INPUTS = Path(__file__).resolve().parents[1] / "data" / "inputs"
AMBER = """\
[system]
name = "amber"
prmtop = "ala2.prmtop"
inpcrd = "ala2.inpcrd"
[integrator]
name = "baoab"
timestep = 0.002
[sampler]
n_steps = 30
n_walkers = 2
record_every = 10
dtype = "float32"
"""


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    return finished_run(tmp_path_factory.mktemp("template"))


@pytest.fixture(scope="module")
def molecular(tmp_path_factory):
    """A tiny alanine-dipeptide run (topology, so every export format applies)."""
    pytest.importorskip("mdtraj")
    folder = tmp_path_factory.mktemp("ala2")
    for name in ("ala2.prmtop", "ala2.inpcrd"):
        shutil.copy(INPUTS / name, folder / name)
    (folder / "ala2.toml").write_text(AMBER)
    run_dir = create_run(load_config(folder / "ala2.toml"), folder / "run")
    execute_run(run_dir, progress=False, handle_signals=False)
    return run_dir


def _plant_link(entry: Path, target: Path) -> None:
    if entry.is_dir() and not entry.is_symlink():
        shutil.rmtree(entry)
    elif os.path.lexists(entry):
        entry.unlink()
    entry.symlink_to(target)


# --------------------------------------------------------------------------- the helper
def test_the_helper_refuses_links_fifos_and_linked_folders_and_writes_regular_files(tmp_path):
    outside = tmp_path / "outside"
    sums = outside_files(outside)
    owned = tmp_path / "owned"
    owned.mkdir()
    (owned / "link").symlink_to(outside / "precious.txt")
    os.mkfifo(owned / "fifo")
    (owned / "dirlink").symlink_to(outside)
    for name in ("link", "fifo"):
        with pytest.raises(UnsafePathError, match=f"{name}.*(symbolic link|FIFO)"):
            open_for_write(owned / name, "a")
        with pytest.raises(UnsafePathError, match=name):
            write_via_temp(owned / name, lambda tmp: Path(tmp).write_text("x"))
    with pytest.raises(UnsafePathError, match="dirlink.*symbolic link"):
        make_dirs(owned / "dirlink" / "sub", inside=owned)
    assert unchanged(outside, sums)
    # Regular files and new folders are written as usual, and no temporary file is left.
    with open_for_write(owned / "new.txt") as fh:
        fh.write("hello")
    write_via_temp(owned / "new.txt", lambda tmp: Path(tmp).write_text("again"))
    assert (owned / "new.txt").read_text() == "again"
    mask = os.umask(0)
    os.umask(mask)
    assert (owned / "new.txt").stat().st_mode & 0o777 == 0o666 & ~mask  # as open() would make it
    assert make_dirs(owned / "a" / "b", inside=owned).is_dir()
    assert sorted(p.name for p in owned.iterdir()) == ["a", "dirlink", "fifo", "link", "new.txt"]


# --------------------------------------------------------------------------- export
@pytest.mark.parametrize("fmt", ["h5", "extxyz", "dcd"])
def test_export_refuses_a_link_at_its_default_output(tmp_path, molecular, fmt, capsys):
    run_dir = copy_run(molecular, tmp_path / "run")
    outside = tmp_path / "outside"
    sums = outside_files(outside)
    target = outside / ("precious.h5" if fmt == "h5" else "precious.txt")
    (run_dir / f"walker_0.{fmt}").symlink_to(target)
    assert cli.main(["export", str(run_dir), "--format", fmt]) == 1
    err = capsys.readouterr().err
    assert f"walker_0.{fmt}" in err and "symbolic link" in err and "unexpected" not in err
    assert unchanged(outside, sums)
    (run_dir / f"walker_0.{fmt}").unlink()
    assert cli.main(["export", str(run_dir), "--format", fmt]) == 0  # the real file is written
    assert (run_dir / f"walker_0.{fmt}").is_file() and not (run_dir / f"walker_0.{fmt}").is_symlink()


def test_export_refuses_a_link_at_the_pdb_written_beside_a_dcd(tmp_path, molecular, capsys):
    run_dir = copy_run(molecular, tmp_path / "run")
    outside = tmp_path / "outside"
    sums = outside_files(outside)
    (run_dir / "walker_0.pdb").symlink_to(outside / "precious.txt")
    assert cli.main(["export", str(run_dir), "--format", "dcd"]) == 1
    assert "walker_0.pdb" in capsys.readouterr().err
    assert unchanged(outside, sums) and not (run_dir / "walker_0.dcd").exists()


def test_export_refuses_a_fifo_at_its_output_without_waiting(tmp_path, molecular):
    run_dir = copy_run(molecular, tmp_path / "run")
    os.mkfifo(run_dir / "walker_0.extxyz")
    proc = run_cli("export", run_dir, "--format", "extxyz")  # a hang would end in TimeoutExpired
    assert proc.returncode in (1, 2) and "walker_0.extxyz" in proc.stderr and "FIFO" in proc.stderr
    assert "Traceback" not in proc.stderr
    # The same FIFO as an --output outside the run folder is refused by the writer itself.
    os.mkfifo(tmp_path / "elsewhere.extxyz")
    (run_dir / "walker_0.extxyz").unlink()
    proc = run_cli("export", run_dir, "--format", "extxyz", "--output", tmp_path / "elsewhere.extxyz")
    assert proc.returncode == 1 and "elsewhere.extxyz" in proc.stderr and "FIFO" in proc.stderr, proc.stderr


@pytest.mark.parametrize("entry", ["summary.json", "trajectory.h5"])
def test_export_and_analyze_refuse_a_fifo_in_the_run_folder_without_waiting(tmp_path, template, entry):
    run_dir = copy_run(template, tmp_path / "run")
    (run_dir / entry).unlink()
    os.mkfifo(run_dir / entry)
    for command in ("export", "analyze"):
        proc = run_cli(command, run_dir)  # reading the FIFO would block: TimeoutExpired
        assert proc.returncode in (1, 2) and entry in proc.stderr and "FIFO" in proc.stderr, proc.stderr


# --------------------------------------------------------------------------- analyze
def test_analyze_refuses_a_linked_report_folder(tmp_path, template, capsys):
    run_dir = copy_run(template, tmp_path / "run")
    outside = tmp_path / "outside"
    (outside / "report.md").parent.mkdir()
    (outside / "report.md").write_text("my own report\n")
    (outside / "report.html").write_text("<html>mine</html>")
    before = {p.name: p.read_bytes() for p in outside.iterdir()}
    (run_dir / "report").symlink_to(outside)
    assert cli.main(["analyze", str(run_dir)]) == 1
    err = capsys.readouterr().err
    assert "report" in err and "symbolic link" in err and "unexpected" not in err
    assert {p.name: p.read_bytes() for p in outside.iterdir()} == before


def test_analyze_refuses_a_link_at_one_report_file(tmp_path, template, capsys):
    run_dir = copy_run(template, tmp_path / "run")
    outside = tmp_path / "outside"
    sums = outside_files(outside)
    (run_dir / "report").mkdir()
    (run_dir / "report" / "report.md").symlink_to(outside / "precious.txt")
    (run_dir / "report" / "trace.png").symlink_to(outside / "precious.h5")
    assert cli.main(["analyze", str(run_dir)]) == 1
    err = capsys.readouterr().err
    assert "symbolic link" in err and "unexpected" not in err
    assert unchanged(outside, sums)


def _unprivileged(cmd: list[str]) -> list[str]:
    """Run ``cmd`` so that file permissions apply: as root, without the capabilities that
    override them (root still owns the files, so their owner bits decide)."""
    if os.geteuid() != 0:
        return cmd
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv: cannot drop CAP_DAC_OVERRIDE")
    caps = "-dac_override,-dac_read_search"
    return [setpriv, f"--bounding-set={caps}", f"--inh-caps={caps}"] + cmd


def test_analyze_of_a_read_only_run_folder_is_a_clear_error(tmp_path, template):
    run_dir = copy_run(template, tmp_path / "run")
    os.chmod(run_dir, 0o555)
    try:
        proc = subprocess.run(_unprivileged(cli_command() + ["analyze", str(run_dir)]), capture_output=True,
                              text=True, timeout=300, env=dict(os.environ, MPLCONFIGDIR=str(tmp_path / "mpl")))
    finally:
        os.chmod(run_dir, 0o755)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.startswith("langevin-md: error:") and "permission denied" in proc.stderr
    assert "unexpected" not in proc.stderr and "Traceback" not in proc.stderr
    assert not (run_dir / "report").exists()


# --------------------------------------------------------------------------- resume / run
def test_resume_refuses_a_fifo_at_run_log_without_waiting(tmp_path, template):
    run_dir = copy_run(template, tmp_path / "run")
    cfg = run_dir / "config.toml"
    cfg.write_text(cfg.read_text().replace("n_steps = 400", "n_steps = 600"))
    (run_dir / "run.log").unlink()
    os.mkfifo(run_dir / "run.log")
    proc = run_cli("resume", run_dir, "--no-progress")  # a hang would end in TimeoutExpired
    assert proc.returncode == 1, proc.stderr
    assert "run.log" in proc.stderr and "FIFO" in proc.stderr and "Traceback" not in proc.stderr


def test_resume_refuses_a_fifo_at_summary_json_without_waiting(tmp_path, template):
    run_dir = copy_run(template, tmp_path / "run")
    (run_dir / "summary.json").unlink()
    os.mkfifo(run_dir / "summary.json")
    proc = run_cli("resume", run_dir, "--no-progress")
    assert proc.returncode == 1 and "summary.json" in proc.stderr and "FIFO" in proc.stderr, proc.stderr


def test_run_refuses_a_link_planted_at_its_default_output_folder(tmp_path):
    from tests.io.helpers import write_config

    outside = tmp_path / "outside"
    sums = outside_files(outside)
    cfg = write_config(tmp_path, name="mb.toml", n_steps=20, n_walkers=2, record_every=10, checkpoint_every=10)
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "mb").symlink_to(outside)  # where `langevin-md run mb.toml` writes by default
    proc = subprocess.run(cli_command() + ["run", str(cfg), "--no-progress"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 1 and "runs/mb" in proc.stderr and "symbolic link" in proc.stderr, proc.stderr
    assert unchanged(outside, sums)


def test_a_run_with_state_csv_refuses_a_link_planted_at_it(tmp_path):
    outside = tmp_path / "outside"
    sums = outside_files(outside)
    cfg = tmp_path / "c.toml"
    from tests.io.helpers import write_config

    text = write_config(tmp_path, n_steps=100, n_walkers=2, record_every=10, checkpoint_every=50).read_text()
    cfg.write_text(text + "\n[output]\nstate_every = 10\n")
    run_dir = create_run(load_config(cfg), tmp_path / "run")
    (run_dir / "state.csv").symlink_to(outside / "precious.txt")
    proc = run_cli("resume", run_dir, "--no-progress")
    assert proc.returncode == 1 and "state.csv" in proc.stderr and "symbolic link" in proc.stderr, proc.stderr
    assert unchanged(outside, sums)


# --------------------------------------------------------------------------- compare / train
COMPARE = """\
[system]
name = "double_well"
[compare]
n_force_evals = 50
n_walkers = 4
[samplers.MALA]
type = "MALA"
step_size = 0.1
"""


def test_compare_refuses_links_at_its_table_and_a_linked_output_folder(tmp_path, capsys):
    outside = tmp_path / "outside"
    sums = outside_files(outside)
    cfg = tmp_path / "cmp.toml"
    cfg.write_text(COMPARE)
    out = tmp_path / "out"
    out.mkdir()
    (out / "comparison.csv").symlink_to(outside / "precious.txt")
    assert cli.main(["compare", str(cfg), "-o", str(out)]) == 1
    assert "comparison.csv" in capsys.readouterr().err
    linked = tmp_path / "linked"
    linked.symlink_to(outside)
    assert cli.main(["compare", str(cfg), "-o", str(linked)]) == 1
    assert "symbolic link" in capsys.readouterr().err
    assert unchanged(outside, sums)


TRAIN = """\
[data]
samples = "samples.npy"
[model]
type = "energy"
hidden = 8
layers = 1
[schedule]
sigma_max = 1.0
sigma_min = 0.1
n_sigmas = 2
[training]
epochs = 1
batch_size = 32
progress = false
[output]
dir = "model"
"""


@pytest.mark.parametrize("entry", ["model.safetensors", "training.json"])
def test_train_refuses_a_link_where_its_outputs_go(tmp_path, capsys, entry):
    outside = tmp_path / "outside"
    sums = outside_files(outside)
    np.save(tmp_path / "samples.npy", np.random.default_rng(0).normal(size=(64, 2)))
    (tmp_path / "train.toml").write_text(TRAIN)
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / entry).symlink_to(outside / "precious.h5")
    assert cli.main(["train", str(tmp_path / "train.toml")]) == 1
    err = capsys.readouterr().err
    assert entry in err and "symbolic link" in err and "unexpected" not in err
    assert unchanged(outside, sums)


def test_save_model_never_writes_through_a_planted_temporary_name(tmp_path):
    from langevin_md.training import save_model
    from langevin_md.learned.models import EnergyMLP

    outside = tmp_path / "outside"
    sums = outside_files(outside)
    model = EnergyMLP((2,), hidden=4)
    (tmp_path / "m.pt.tmp").symlink_to(outside / "precious.h5")  # the old fixed temporary name
    save_model(model, tmp_path / "m.pt")
    assert unchanged(outside, sums) and (tmp_path / "m.pt").is_file() and not (tmp_path / "m.pt").is_symlink()
