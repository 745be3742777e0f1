"""Paths in a config are relative to the config file, and hostile inputs end in clear errors.

* ``[integrator] preconditioner = "M.npy"`` is found beside the config (not in the working
  directory) and stored absolute, so a run started in one folder resumes from another;
* a preconditioner file that is not numbers is an ``[integrator]`` error that never quotes it;
* a truncated ``trajectory.h5`` (a 3.8 kB remnant of a 115 kB file) is refused without the
  30 s of SWMR retries it used to take;
* ``pdb_path = "/etc/shadow"`` (or any unreadable or non-PDB file) and a compare config with
  ``type = "ReplicaExchange"`` say what is wrong and what is expected.
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
from tests.hostile.support import finished_run
from tests.io.helpers import cli_command

PRECONDITIONED = """\
[system]
name = "muller_brown"
[integrator]
name = "mala"
step_size = 1e-4
preconditioner = {preconditioner}
[sampler]
n_steps = {n_steps}
n_walkers = 2
record_every = 10
checkpoint_every = 20
"""


def _cli(args, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(cli_command() + [str(a) for a in args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=dict(os.environ, PYTHONUNBUFFERED="1"))


def test_a_preconditioner_file_is_found_beside_the_config_and_resume_works_from_anywhere(tmp_path):
    a, b, c = (tmp_path / n for n in ("A", "B", "C"))
    for d in (a, b, c):
        d.mkdir()
    np.save(b / "M.npy", np.array([1.0, 2.0]))
    np.save(a / "M.npy", np.array([1.0, 2.0, 3.0]))  # a wrong one in the working directory
    (b / "c.toml").write_text(PRECONDITIONED.format(preconditioner='"M.npy"', n_steps=40))
    proc = _cli(["run", b / "c.toml", "-o", tmp_path / "run", "--no-progress"], cwd=a)
    assert proc.returncode == 0, proc.stderr
    saved = load_config(tmp_path / "run" / "config.toml")
    assert saved.integrator["preconditioner"] == str((b / "M.npy").resolve())
    cfg = tmp_path / "run" / "config.toml"
    cfg.write_text(cfg.read_text().replace("n_steps = 40", "n_steps = 60"))
    proc = _cli(["resume", tmp_path / "run", "--no-progress"], cwd=c)
    assert proc.returncode == 0 and "completed" in proc.stderr, proc.stderr


def test_preconditioner_keywords_are_kept_and_a_missing_file_names_the_config_folder(tmp_path):
    (tmp_path / "k.toml").write_text(PRECONDITIONED.format(preconditioner='"Diagonal"', n_steps=40))
    assert load_config(tmp_path / "k.toml").integrator["preconditioner"] == "Diagonal"
    (tmp_path / "m.toml").write_text(PRECONDITIONED.format(preconditioner='"nowhere.npy"', n_steps=40))
    with pytest.raises(Exception, match=rf"\[integrator\].*preconditioner.*{tmp_path}/nowhere.npy does not exist"):
        load_config(tmp_path / "m.toml")


def test_a_preconditioner_file_of_text_is_an_integrator_error_that_never_quotes_it(tmp_path, capsys):
    secret = tmp_path / "passwd"
    secret.write_text("root:x:0:0:SECRET-LINE:/root:/bin/bash\n")
    (tmp_path / "c.toml").write_text(PRECONDITIONED.format(preconditioner=f'"{secret}"', n_steps=40))
    assert cli.main(["run", str(tmp_path / "c.toml"), "-o", str(tmp_path / "run"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "[integrator]" in err and "[sampler]" not in err and str(secret) in err and "numbers" in err
    assert "SECRET-LINE" not in err and "root:x" not in err
    assert not (tmp_path / "run").exists()  # refused before a folder exists


def test_a_truncated_small_trajectory_is_refused_without_swmr_retries(tmp_path):
    """A 3.8 kB remnant of a ~115 kB trajectory: refused at once (it waited 30 s for the SWMR
    reader's retries inside the scan's child process). The 15 s bound is a hang guard."""
    run_dir = finished_run(tmp_path, n_steps=1000, n_walkers=4, record_every=1, checkpoint_every=500)
    path = run_dir / "trajectory.h5"
    assert path.stat().st_size > 100_000
    path.write_bytes(path.read_bytes()[:3800])
    cfg = run_dir / "config.toml"
    cfg.write_text(cfg.read_text().replace("n_steps = 1000", "n_steps = 1200"))
    proc = _cli(["resume", run_dir, "--no-progress"], cwd=tmp_path, timeout=15)
    assert proc.returncode == 1, proc.stderr
    assert "truncated" in proc.stderr and "3800 bytes" in proc.stderr and "Traceback" not in proc.stderr


PDB_CONFIG = """\
[system]
name = "openmm_pdb"
pdb_path = "{path}"
platform = "Reference"
[integrator]
name = "baoab"
[sampler]
n_steps = 10
"""


@pytest.mark.parametrize("target", ["/etc/shadow", "not-a-pdb"])
def test_a_pdb_path_naming_an_unreadable_or_foreign_file_is_a_clear_error(tmp_path, capsys, target):
    pytest.importorskip("openmm")
    if target == "not-a-pdb":
        target = str(tmp_path / "notes.pdb")
        Path(target).write_text("these are my notes\nnothing atomic here\n")
    elif not os.path.exists(target):
        pytest.skip("no /etc/shadow here")
    (tmp_path / "c.toml").write_text(PDB_CONFIG.format(path=target))
    assert cli.main(["run", str(tmp_path / "c.toml"), "-o", str(tmp_path / "run"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("langevin-md: error:") and "[system]" in err and target in err
    assert any(w in err for w in ("cannot be read", "is not a PDB file", "holds no atoms"))  # user; root
    assert "unexpected" not in err and "my notes" not in err


def test_an_unreadable_pdb_file_says_so(tmp_path):
    pytest.importorskip("openmm")
    setpriv = shutil.which("setpriv")
    pdb = tmp_path / "locked.pdb"
    pdb.write_text("ATOM      1  N   ALA A   1       0.000   0.000   0.000  1.00  0.00           N\n")
    os.chmod(pdb, 0o000)
    (tmp_path / "c.toml").write_text(PDB_CONFIG.format(path=pdb))
    cmd = cli_command() + ["run", str(tmp_path / "c.toml"), "-o", str(tmp_path / "run"), "--no-progress"]
    if os.geteuid() == 0:
        if setpriv is None:
            pytest.skip("root without setpriv: permissions do not apply")
        caps = "-dac_override,-dac_read_search"
        cmd = [setpriv, f"--bounding-set={caps}", f"--inh-caps={caps}"] + cmd
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "cannot be read (Permission denied)" in proc.stderr and "unexpected" not in proc.stderr


def test_a_replica_exchange_compare_table_says_what_to_do_instead(tmp_path, capsys):
    (tmp_path / "cmp.toml").write_text('[system]\nname = "double_well"\n[compare]\nn_force_evals = 50\n'
                                       'n_walkers = 4\n[samplers.x]\ntype = "ReplicaExchange"\n')
    assert cli.main(["compare", str(tmp_path / "cmp.toml"), "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "'x'" in err and "ReplicaExchange" in err and "[tempering]" in err and 'type = "MALA"' in err
    assert "missing" not in err and "inner" not in err
