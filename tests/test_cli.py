"""The `langevin-md` command line and its config files: help, errors, systems, export."""

from __future__ import annotations

import inspect

import numpy as np
import pytest

from langevin_md import cli
from langevin_md.run.build import build_integrator
from langevin_md.run.config import ConfigError, integrator_choices, load_config, parse_config, system_choices
from langevin_md.run.folder import load_run

from tests.io.helpers import write_config

SUBCOMMANDS = ["run", "resume", "systems", "export", "compare", "demo", "analyze", "validate", "train"]


def _main(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


# --------------------------------------------------------------------------- help
def test_help_documents_every_subcommand(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["--help"])
    assert e.value.code == 0
    top = capsys.readouterr().out
    for cmd in SUBCOMMANDS:
        assert f"\n    {cmd}" in top
        with pytest.raises(SystemExit) as e:
            cli.main([cmd, "--help"])
        assert e.value.code == 0
        text = capsys.readouterr().out
        assert text.startswith(f"usage: langevin-md {cmd}") and len(text.splitlines()) > 3


def test_systems_lists_analytic_and_molecular(capsys):
    code, out, _ = _main(capsys, "systems", "-v")
    assert code == 0
    for name in ("muller_brown", "harmonic", "double_well", "alanine_dipeptide_vacuum", "openmm_pdb"):
        assert f"  {name} " in out
    assert "analytic systems:" in out and "molecular systems:" in out
    assert "      kT = 1.0" in out and "      trusted = False" in out


# --------------------------------------------------------------------------- config
def _cfg(text, tmp_path):
    path = tmp_path / "c.toml"
    path.write_text(text)
    return path


GOOD = """
[system]
name = "muller_brown"
kT = 20.0
[integrator]
name = "mala"
step_size = 1e-4
[sampler]
n_steps = 100
"""


def test_defaults_come_from_the_signatures(tmp_path):
    from langevin_md.integrators import MALA
    from langevin_md.io.checkpoint import CheckpointReporter
    from langevin_md import Sampler
    from langevin_md.systems.muller_brown import MullerBrown

    cfg = load_config(_cfg(GOOD, tmp_path))
    sig = inspect.signature
    assert cfg.system["energy_scale"] == sig(MullerBrown).parameters["energy_scale"].default
    assert cfg.integrator["target_accept"] is sig(MALA).parameters["target_accept"].default
    assert cfg.sampler["n_walkers"] == sig(Sampler).parameters["n_walkers"].default
    assert cfg.sampler["record_every"] == sig(Sampler.run).parameters["record_every"].default
    assert cfg.sampler["checkpoint_every"] == sig(CheckpointReporter).parameters["every"].default
    assert build_integrator(cfg) == MALA(step_size=1e-4)


def test_every_integrator_and_analytic_system_is_reachable():
    assert {"ula", "brownian", "mala", "baoab", "obabo", "hmc", "rwm"} <= set(integrator_choices())
    assert {"harmonic", "muller_brown", "double_well"} <= set(system_choices())


@pytest.mark.parametrize("edit,message", [
    (lambda t: t + "[results]\ndir = 'x'\n", r"unknown section \[results\]; allowed sections: \[system\], \[integrator\], \[sampler\], \[minimize\], \[tempering\], \[output\]"),
    (lambda t: t + "[output]\ndir = 'x'\n", r"\[output\] unknown key 'dir'; allowed: state_every, state_terminal"),
    (lambda t: t.replace("[sampler]", "[sampler]\nn_walker = 3"), r"\[sampler\] unknown key 'n_walker' \(did you mean 'n_walkers'\?\); allowed: n_walkers, seed"),
    (lambda t: t.replace('name = "muller_brown"', 'name = "muller_brwn"'), r"\[system\] name = 'muller_brwn' is not a known system; known systems: .*double_well.*muller_brown"),
    (lambda t: t.replace('name = "mala"', 'name = "langevin"'), r"\[integrator\] name = 'langevin' is not a known integrator; known integrators: .*baoab, brownian, hmc, mala, obabo, .*rwm, .*ula"),
    (lambda t: t.replace("kT = 20.0", "kT = 'hot'"), r"\[system\] kT: expected a number \(float\), got 'hot' \(string\)"),
    (lambda t: t.replace("n_steps = 100", "n_steps = 100.5"), r"\[sampler\] n_steps: expected an integer \(int\), got 100.5 \(float\)"),
    (lambda t: t.replace("kT = 20.0", "kT = 20.0\ntemperature = 3"), r"\[system\] \(name = 'muller_brown'\): unknown key 'temperature'; allowed: kT, energy_scale, masses"),
    (lambda t: t.replace("n_steps = 100", "seed = 1"), r"\[sampler\] is missing required key 'n_steps'"),
    (lambda t: t.replace("[integrator]", "[integratr]"), r"unknown section \[integratr\] \(did you mean \[integrator\]\?\)"),
    (lambda t: "kT = 3\n" + t, r"unknown top-level key 'kT'"),
    (lambda t: t.replace("kT = 20.0", "kT = 20.0 20"), r"not valid TOML"),
])
def test_config_errors_name_the_key_and_what_is_allowed(tmp_path, capsys, edit, message):
    path = _cfg(edit(GOOD), tmp_path)
    with pytest.raises(ConfigError, match=message):
        load_config(path)
    code, _, err = _main(capsys, "run", path, "-o", tmp_path / "run")
    assert code == 2 and "langevin-md: error:" in err
    assert not (tmp_path / "run").exists()  # nothing is created for a bad config


def test_constructor_errors_are_reported_with_the_section(tmp_path, capsys):
    path = _cfg(GOOD.replace("kT = 20.0", "kT = -1.0"), tmp_path)
    code, _, err = _main(capsys, "run", path, "-o", tmp_path / "run")
    assert code == 2
    assert "[system] name = 'muller_brown': kT must be a finite positive number, got -1.0" in err


def test_only_toml_configs(tmp_path):
    p = tmp_path / "c.json"
    p.write_text("{}")
    with pytest.raises(ConfigError, match="config files are TOML and must end in .toml"):
        load_config(p)


def test_trusted_is_a_config_key_and_script_force_fields_are_refused(tmp_path, capsys):
    from langevin_md.systems.molecules import ALANINE_DIPEPTIDE_PDB

    (tmp_path / "evil.xml").write_text("<ForceField><Script>open('/tmp/pwned', 'w')</Script></ForceField>\n")
    text = f"""
[system]
name = "openmm_pdb"
pdb_path = "{ALANINE_DIPEPTIDE_PDB}"
forcefield = ["evil.xml"]
platform = "Reference"
[integrator]
name = "baoab"
[sampler]
n_steps = 10
"""
    cfg = load_config(_cfg(text, tmp_path))
    assert cfg.system["trusted"] is False
    assert cfg.system["forcefield"] == [str(tmp_path / "evil.xml")]  # made absolute for the run folder
    code, _, err = _main(capsys, "run", tmp_path / "c.toml", "-o", tmp_path / "run")
    assert code == 2 and "<Script>" in err and "trusted" in err
    with pytest.raises(ConfigError, match=r"\[system\] trusted: expected true or false \(bool\), got 'yes'"):
        parse_config({"system": {"name": "openmm_pdb", "pdb_path": ALANINE_DIPEPTIDE_PDB, "trusted": "yes"},
                      "integrator": {"name": "baoab"}, "sampler": {"n_steps": 1}})


# --------------------------------------------------------------------------- run folders
def test_run_refuses_to_overwrite_unless_forced(tmp_path, capsys):
    config = write_config(tmp_path, n_steps=50, checkpoint_every=25)
    run_dir = tmp_path / "r"
    assert _main(capsys, "run", config, "-o", run_dir, "--no-progress")[0] == 0
    code, _, err = _main(capsys, "run", config, "-o", run_dir)
    assert code == 1 and "already exists; pass --force" in err
    code, _, err = _main(capsys, "run", config, "-o", run_dir, "--force", "--no-progress")
    assert code == 0 and "completed: 5 frames up to step 50" in err
    code, _, err = _main(capsys, "resume", run_dir, "--no-progress")
    assert code == 0 and "completed" in err  # nothing left to do
    code, _, err = _main(capsys, "resume", tmp_path)
    assert code == 2 and "is not a langevin-md run folder" in err


def test_non_finite_run_exits_3_and_names_steps_walkers_causes_checkpoint(tmp_path, capsys):
    config = write_config(tmp_path, integrator="ula", integrator_keys="step_size = 0.05",
                          n_steps=1000, checkpoint_every=10, record_every=1)
    code, _, err = _main(capsys, "run", config, "-o", tmp_path / "nan", "--no-progress")
    assert code == 3
    assert "non-finite state between steps" in err or "non-finite state at step" in err
    assert "walkers [" in err and "step size too large" in err
    assert "The last good checkpoint is" in err and "step_000000000060.npz" in err


# --------------------------------------------------------------------------- export
def test_export_extxyz_for_a_reduced_unit_cluster(tmp_path, capsys):
    import ase.io

    text = """
[system]
name = "lennard_jones_cluster"
n_atoms = 5
[integrator]
name = "baoab"
timestep = 0.005
[sampler]
n_steps = 40
n_walkers = 3
record_every = 10
"""
    run_dir = tmp_path / "lj"
    assert _main(capsys, "run", _cfg(text, tmp_path), "-o", run_dir, "--no-progress")[0] == 0
    code, out, _ = _main(capsys, "export", run_dir, "--walker", 2, "--format", "extxyz")
    assert code == 0
    frames = ase.io.read(out.strip(), ":")
    r = load_run(run_dir)
    assert len(frames) == r.n_frames == 4
    assert np.allclose(frames[-1].positions, r.positions[-1, 2])  # reduced units as they are
    assert frames[-1].info["step"] == 40
    assert np.isclose(frames[-1].get_potential_energy(), r.energies[-1, 2])
    code, _, err = _main(capsys, "export", run_dir, "--format", "dcd")
    assert code == 2 and "needs a molecular run" in err
    code, _, err = _main(capsys, "export", run_dir, "--walker", 3)
    assert code == 2 and "--walker must be in [0, 3)" in err


def test_molecular_run_is_readable_by_mdtraj_and_ase_per_walker(tmp_path, capsys):
    import ase.io
    import mdtraj

    text = """
[system]
name = "alanine_dipeptide_vacuum"
platform = "Reference"
[integrator]
name = "baoab"
timestep = 0.001
[sampler]
n_steps = 6
n_walkers = 2
record_every = 2
dtype = "float32"
"""
    run_dir = tmp_path / "ala"
    code, _, err = _main(capsys, "run", _cfg(text, tmp_path), "-o", run_dir, "--no-progress")
    assert code == 0, err
    r = load_run(run_dir)
    t = r.to_mdtraj(walker=1)
    assert t.n_frames == 3 and t.n_atoms == 22 and t.topology.n_bonds == 21
    assert np.array_equal(t.xyz, r.positions[:, 1])
    for fmt in ("h5", "dcd"):
        code, out, _ = _main(capsys, "export", run_dir, "-w", 1, "-f", fmt)
        files = out.split()
        back = mdtraj.load(files[0]) if fmt == "h5" else mdtraj.load(files[0], top=files[1])
        assert back.n_frames == 3 and np.allclose(back.xyz, r.positions[:, 1], atol=1e-5)
    code, out, _ = _main(capsys, "export", run_dir, "-w", 0, "-f", "extxyz")
    frames = ase.io.read(out.strip(), ":")
    assert frames[0].get_chemical_symbols() == [a.element.symbol for a in t.topology.atoms]
    assert np.allclose(frames[2].positions, 10 * r.positions[2, 0], atol=1e-4)  # nm -> Å
    assert np.isclose(frames[2].get_potential_energy(), r.energies[2, 0] / 96.48533212331002, rtol=1e-6)


# --------------------------------------------------------------------------- example configs
EXAMPLE_CONFIGS = sorted((__import__("pathlib").Path(__file__).parents[1] / "examples" / "configs").glob("*.toml"))


@pytest.mark.parametrize("path", EXAMPLE_CONFIGS, ids=lambda p: p.name)
def test_example_configs_run(tmp_path, path):
    from langevin_md.run.folder import create_run
    from langevin_md.run.session import execute_run

    cfg = load_config(path)
    # Replica exchange needs one walker per temperature.
    n_walkers = cfg.tempering["n_temperatures"] if cfg.tempering else 2
    cfg.sampler.update(n_steps=4, burn_in=min(cfg.sampler["burn_in"], 2), n_walkers=n_walkers, record_every=2,
                       checkpoint_every=2)
    run_dir = create_run(cfg, tmp_path / "run")
    summary = execute_run(run_dir, progress=False, handle_signals=False)
    assert summary["status"] == "completed" and load_run(run_dir).n_frames == 2


def test_validate_forwards_its_own_options():
    from langevin_md.cli import main

    assert main(["validate", "--list"]) == 0


# --------------------------------------------------------------------------- compare / analyze
COMPARE = """\
[system]
name = "double_well"

[compare]
n_force_evals = 200
n_walkers = 8

[samplers.MALA]
type = "MALA"
step_size = 0.1

[samplers.ULA]
type = "ULA"
step_size = 0.05
"""


def test_compare_prints_and_saves_the_table_and_sweeps_step_sizes(tmp_path, capsys):
    cfg = tmp_path / "cmp.toml"
    cfg.write_text(COMPARE)
    out = tmp_path / "out"
    code, text, err = _main(capsys, "compare", cfg, "-o", out)
    assert code == 0, err
    assert text.splitlines()[0].startswith("sampler") and "MALA" in text and "ULA" in text
    assert (out / "comparison.csv").read_text().count("\n") == 3  # header + two samplers
    code, text, err = _main(capsys, "compare", cfg, "-o", out, "--step-sizes", "0.01", "0.1", "--sampler", "ULA")
    assert code == 0, err
    assert "ULA step_size=0.01" in text and "ULA step_size=0.1" in text
    assert (out / "sweep.png").stat().st_size > 1000
    code, _, err = _main(capsys, "compare", cfg, "--sampler", "HMC")
    assert code == 2 and "--sampler 'HMC' is not in [samplers]; there: MALA, ULA" in err
    cfg.write_text(COMPARE.replace("n_force_evals = 200\n", ""))
    code, _, err = _main(capsys, "compare", cfg)
    assert code == 2 and "[compare] is missing required key 'n_force_evals'" in err


def test_analyze_writes_a_protein_report_for_peptides(tmp_path, capsys):
    import os

    from openmm import app

    pdb = os.path.join(os.path.dirname(app.__file__), "data", "test.pdb")  # villin headpiece
    text = f"""
[system]
name = "openmm_pdb"
pdb_path = "{pdb}"
forcefield = ["amber14-all.xml"]
strip = ["HOH", "Cl"]
platform = "Reference"
[integrator]
name = "baoab"
timestep = 0.001
[sampler]
backend = "openmm"
n_steps = 20
n_walkers = 2
record_every = 5
"""
    run_dir = tmp_path / "villin"
    code, _, err = _main(capsys, "run", _cfg(text, tmp_path), "-o", run_dir, "--no-progress")
    assert code == 0, err
    code, out, err = _main(capsys, "analyze", run_dir)
    assert code == 0, err
    assert f"protein report: {run_dir / 'report' / 'protein'}" in out
    for name in ("ramachandran.png", "rmsd_rg.png", "dssp.png", "protein_summary.csv"):
        assert (run_dir / "report" / "protein" / name).is_file()
