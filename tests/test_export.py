"""`langevin-md export` and SampleResult.to_mdtraj: frames with their time in ps."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from langevin_md import cli
from langevin_md.run.folder import load_run

mdtraj = pytest.importorskip("mdtraj")

INPUTS = Path(__file__).parent / "data" / "inputs"

CONFIG = """\
[system]
name = "amber"
prmtop = "ala2.prmtop"
inpcrd = "ala2.inpcrd"

[integrator]
name = "{integrator}"
{keys}

[sampler]
n_steps = 30
n_walkers = 2
record_every = 10
dtype = "float32"
"""


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("inputs")
    for name in ("ala2.prmtop", "ala2.inpcrd"):
        shutil.copy(INPUTS / name, folder / name)
    return folder


def _run(folder: Path, name: str, integrator: str, keys: str, capsys) -> Path:
    cfg = folder / f"{name}.toml"
    cfg.write_text(CONFIG.format(integrator=integrator, keys=keys))
    run_dir = folder / name
    code = cli.main(["run", str(cfg), "-o", str(run_dir), "--no-progress"])
    assert code == 0, capsys.readouterr().err
    return run_dir


def test_xtc_and_dcd_round_trip_with_time_in_ps(inputs, capsys):
    run_dir = _run(inputs, "baoab", "baoab", "timestep = 0.002", capsys)
    r = load_run(run_dir)
    t = r.to_mdtraj(walker=1)
    np.testing.assert_allclose(t.time, [10 * 0.002, 20 * 0.002, 30 * 0.002])  # ps
    joined = r.to_mdtraj()
    np.testing.assert_allclose(joined.time, np.tile(t.time, 2))
    capsys.readouterr()
    for fmt in ("xtc", "dcd"):
        assert cli.main(["export", str(run_dir), "-w", "1", "-f", fmt]) == 0
        out, pdb = capsys.readouterr().out.split()
        assert out.endswith(f"walker_1.{fmt}") and pdb.endswith("walker_1.pdb")
        back = mdtraj.load(out, top=pdb)
        assert back.n_frames == 3 and back.n_atoms == 22
        # XTC keeps 3 decimals of nm; DCD holds single-precision ångström (mdtraj converts both).
        np.testing.assert_allclose(back.xyz, r.positions[:, 1], atol=1e-3 if fmt == "xtc" else 1e-5)
        if fmt == "xtc":
            np.testing.assert_allclose(back.time, t.time, rtol=1e-5)
    # Positions in nm, not Å: a C-H bond is about 0.11 nm.
    assert 0.09 < float(mdtraj.compute_distances(t[:1], [[0, 1]])[0, 0]) < 0.13
    # A wrong unit (ps taken for fs) would be a thousand times off.
    assert not np.allclose(t.time, [10 * 2.0, 20 * 2.0, 30 * 2.0])


def test_schemes_without_a_timestep_use_the_step_as_time(inputs, capsys):
    run_dir = _run(inputs, "mala", "mala", "step_size = 1e-5", capsys)
    t = load_run(run_dir).to_mdtraj(walker=0)
    np.testing.assert_allclose(t.time, [10.0, 20.0, 30.0])
