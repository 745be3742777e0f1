"""Optional config tables ([minimize], [tempering]) and file-based molecular systems in configs."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from langevin_md.run.config import ConfigError, load_config
from langevin_md.run.build import build_integrator, build_system, check_config, minimized_start
from langevin_md.integrators.tempering import ReplicaExchange
from langevin_md.run.folder import create_run, load_run
from langevin_md.run.session import execute_run

INPUTS = Path(__file__).parent.parent / "data" / "inputs"

DOUBLE_WELL = """\
[system]
name = "double_well"
kT = 0.5

[integrator]
name = "baoab"
timestep = 0.02

[sampler]
n_steps = {n_steps}
n_walkers = {n_walkers}
record_every = 10
checkpoint_every = 100
seed = 5
"""


def _write(folder: Path, text: str, name: str = "cfg.toml") -> Path:
    path = folder / name
    path.write_text(text)
    return path


def _run(cfg_path: Path, run_dir: Path) -> dict:
    create_run(load_config(cfg_path), run_dir)
    return execute_run(run_dir, progress=False, handle_signals=False)


# --------------------------------------------------------------------------- [minimize]
def test_minimize_runs_before_burn_in_and_the_log_says_how_far_the_energy_fell(tmp_path):
    text = DOUBLE_WELL.format(n_steps=100, n_walkers=4) + "\n[minimize]\nmax_iterations = 200\n"
    cfg = load_config(_write(tmp_path, text))
    assert cfg.minimize == {"max_iterations": 200, "tolerance": None, "method": "auto"}
    create_run(cfg, tmp_path / "run")
    execute_run(tmp_path / "run", progress=False, handle_signals=False)
    log = (tmp_path / "run" / "run.log").read_text()
    assert "minimised 4 walker(s) with lbfgs" in log and "fell by" in log
    assert log.index("minimised") < log.index("starting double_well")
    # The resolved config keeps the table, so a resumed run is recognised as the same run.
    assert "[minimize]" in (tmp_path / "run" / "config.toml").read_text()


def test_minimized_start_reaches_the_wells():
    cfg = load_config(Path(__file__).parents[2] / "examples" / "configs" / "double_well_baoab.toml")
    cfg.minimize = {"tolerance": 1e-8, "max_iterations": 500, "method": "auto"}
    system = build_system(cfg)
    m = minimized_start(cfg, system, 6)
    # The double well's minima: x0 = +-1, the other coordinates (harmonic) at 0.
    x = m.positions.numpy()
    np.testing.assert_allclose(np.abs(x[:, 0]), 1.0, atol=1e-6)
    np.testing.assert_allclose(x[:, 1:], 0.0, atol=1e-6)
    assert (m.energy_drop >= 0).all()


@pytest.mark.parametrize("table,message", [
    ("tolerence = 1.0", r"\[minimize\] unknown key 'tolerence' \(did you mean 'tolerance'\?\)"),
    ("tolerance = -1.0", r"\[minimize\] tolerance = -1.0: expected a positive RMS force"),
    ("max_iterations = 2.5", r"\[minimize\] max_iterations: expected an integer"),
    ("method = 'newton'", r"\[minimize\] method = 'newton'"),
])
def test_minimize_errors_name_the_key(tmp_path, table, message):
    text = DOUBLE_WELL.format(n_steps=100, n_walkers=4) + f"\n[minimize]\n{table}\n"
    with pytest.raises(ConfigError, match=message):
        load_config(_write(tmp_path, text))


# --------------------------------------------------------------------------- [tempering]
def test_tempering_wraps_the_integrator_with_a_ladder_relative_to_the_system(tmp_path):
    text = DOUBLE_WELL.format(n_steps=100, n_walkers=8) + (
        "\n[tempering]\nn_temperatures = 4\nmax_temperature = 4.0\nswap_every = 5\n")
    cfg = load_config(_write(tmp_path, text))
    integrator = build_integrator(cfg)
    assert isinstance(integrator, ReplicaExchange)
    # max_temperature is in the system's units (kT for analytic systems): 4.0 / 0.5 = 8.
    np.testing.assert_allclose(integrator.ladder, 8.0 ** (np.arange(4) / 3), rtol=1e-12)
    assert integrator.swap_every == 5 and integrator.scheme == "deterministic"

    explicit = DOUBLE_WELL.format(n_steps=100, n_walkers=6) + "\n[tempering]\ntemperatures = [0.5, 1.0, 2.0]\n"
    ladder = build_integrator(load_config(_write(tmp_path, explicit, "b.toml"))).ladder
    np.testing.assert_allclose(ladder, [1.0, 2.0, 4.0])


def test_molecular_tempering_temperatures_are_kelvin():
    from langevin_md.run.build import temperature_ladder
    from langevin_md.systems.inputs import from_amber

    system = from_amber(INPUTS / "ala2.prmtop", INPUTS / "ala2.inpcrd", temperature=300.0)
    ladder = temperature_ladder({"n_temperatures": 3, "max_temperature": 600.0}, system)
    np.testing.assert_allclose(ladder, [1.0, 2 ** 0.5, 2.0], rtol=1e-9)
    with pytest.raises(ConfigError, match=r"temperatures\[0\] = 310 K must be the system's own temperature, 300 K"):
        temperature_ladder({"temperatures": [310.0, 400.0]}, system)


@pytest.mark.parametrize("n_walkers,table,backend,message", [
    (6, "n_temperatures = 4\nmax_temperature = 2.0", "torch",
     r"n_walkers = 6 is not a multiple of \[tempering\] n_temperatures = 4.*use n_walkers = 4 or 8"),
    (8, "n_temperatures = 4\nmax_temperature = 2.0", "openmm", r"\[tempering\] needs \[sampler\] backend = \"torch\""),
    (8, "n_temperatures = 4", "torch", r"\[tempering\] is missing max_temperature"),
    (8, "temperatures = [0.5, 1.0]\nmax_temperature = 2.0", "torch", r"either temperatures = \[...\] or"),
    (8, "n_temperatures = 4\nmax_temperature = 2.0\nsheme = 'x'", "torch", r"did you mean 'scheme'"),
])
def test_tempering_errors(tmp_path, n_walkers, table, backend, message):
    text = DOUBLE_WELL.format(n_steps=100, n_walkers=n_walkers).replace(
        "[sampler]", f"[sampler]\nbackend = \"{backend}\"") + f"\n[tempering]\n{table}\n"
    with pytest.raises(ConfigError, match=message):
        load_config(_write(tmp_path, text))


def test_replica_exchange_as_an_integrator_name_points_to_tempering(tmp_path):
    text = DOUBLE_WELL.format(n_steps=100, n_walkers=4).replace('name = "baoab"', 'name = "replica_exchange"')
    with pytest.raises(ConfigError, match=r"add a \[tempering\] table"):
        load_config(_write(tmp_path, text))


def test_max_temperature_below_the_system_is_refused(tmp_path):
    text = DOUBLE_WELL.format(n_steps=100, n_walkers=4) + "\n[tempering]\nn_temperatures = 2\nmax_temperature = 0.25\n"
    with pytest.raises(ConfigError, match=r"max_temperature = 0.25 kT must be above the system's temperature, 0.5 kT"):
        check_config(load_config(_write(tmp_path, text)))


def test_tempering_run_folder_resumes_bitwise_when_extended(tmp_path):
    tempering = "\n[tempering]\nn_temperatures = 4\nmax_temperature = 3.0\nswap_every = 5\n"
    full = _write(tmp_path, DOUBLE_WELL.format(n_steps=400, n_walkers=8) + tempering, "full.toml")
    short = _write(tmp_path, DOUBLE_WELL.format(n_steps=200, n_walkers=8) + tempering, "short.toml")
    _run(full, tmp_path / "full")
    _run(short, tmp_path / "ext")
    # Extend the finished run: only n_steps changes in its resolved config.
    cfg_file = tmp_path / "ext" / "config.toml"
    cfg_file.write_text(cfg_file.read_text().replace("n_steps = 200", "n_steps = 400"))
    summary = execute_run(tmp_path / "ext", progress=False, handle_signals=False)
    assert summary["status"] == "completed" and summary["step"] == 400
    a, b = load_run(tmp_path / "full"), load_run(tmp_path / "ext")
    assert a.positions.shape == (40, 8, 1)
    np.testing.assert_array_equal(a.positions, b.positions)
    np.testing.assert_array_equal(a.fields["temperature_index"], b.fields["temperature_index"])
    t = a.fields["temperature_index"]
    # Every frame holds each temperature once per ladder, and swaps did move walkers.
    assert sorted(t[0].tolist()) == [0, 0, 1, 1, 2, 2, 3, 3]
    assert all(sorted(row.tolist()) == [0, 0, 1, 1, 2, 2, 3, 3] for row in t)
    assert (t != t[0]).any()
    assert "replica exchange: 4 temperatures" in (tmp_path / "full" / "run.log").read_text()


# --------------------------------------------------------------------------- file inputs
def test_amber_system_from_a_config_with_paths_relative_to_the_config(tmp_path, monkeypatch):
    folder = tmp_path / "inputs"
    folder.mkdir()
    for name in ("ala2.prmtop", "ala2.inpcrd"):
        shutil.copy(INPUTS / name, folder / name)
    text = ('[system]\nname = "amber"\nprmtop = "inputs/ala2.prmtop"\ninpcrd = "inputs/ala2.inpcrd"\n'
            'temperature = 310.0\n\n[integrator]\nname = "baoab"\ntimestep = 0.001\n\n'
            "[sampler]\nn_steps = 10\nn_walkers = 2\nrecord_every = 5\n")
    path = _write(tmp_path, text)
    monkeypatch.chdir(folder)  # a different working directory must not matter
    cfg = load_config(path)
    assert cfg.system["prmtop"] == str((folder / "ala2.prmtop").resolve())
    system = build_system(cfg)
    assert system.event_shape == (22, 3)
    assert system.kT == pytest.approx(310.0 * 0.0083144626, rel=1e-6)


def test_solvated_amber_config_must_choose_strip_or_a_method(tmp_path):
    text = (f'[system]\nname = "amber"\nprmtop = "{INPUTS / "ala2_solv.prmtop"}"\n'
            f'inpcrd = "{INPUTS / "ala2_solv.inpcrd"}"\n\n[integrator]\nname = "baoab"\ntimestep = 0.001\n\n'
            "[sampler]\nn_steps = 10\nn_walkers = 2\nrecord_every = 5\n")
    cfg = load_config(_write(tmp_path, text))
    with pytest.raises(ConfigError, match=r"\[system\] name = 'amber'.*solvent residues.*strip="):
        check_config(cfg)
    missing = text.replace("ala2_solv.prmtop", "nope.prmtop")
    with pytest.raises(ConfigError, match=r"\[system\] prmtop: file .*nope.prmtop does not exist"):
        load_config(_write(tmp_path, missing, "m.toml"))


# --------------------------------------------------------------------------- [output]
def test_state_csv_is_written_and_continued_on_resume(tmp_path, capsys):
    output = "\n[output]\nstate_every = 50\nstate_terminal = true\n"
    path = _write(tmp_path, DOUBLE_WELL.format(n_steps=200, n_walkers=4) + output)
    _run(path, tmp_path / "run")
    assert "potential_energy" in capsys.readouterr().out  # the terminal echo
    cfg_file = tmp_path / "run" / "config.toml"
    cfg_file.write_text(cfg_file.read_text().replace("n_steps = 200", "n_steps = 300"))
    execute_run(tmp_path / "run", progress=False, handle_signals=False)
    lines = (tmp_path / "run" / "state.csv").read_text().splitlines()
    assert lines[0].startswith("step,time_ps,potential_energy,kinetic_energy,kinetic_kT")
    steps = [int(line.split(",")[0]) for line in lines[1:]]
    assert steps == list(range(50, 301, 50))  # one header, every row once (rows follow steps)
    # time_ps is step x timestep (0.02).
    assert float(lines[-1].split(",")[1]) == pytest.approx(300 * 0.02)


def test_output_table_does_not_change_the_run_fingerprint(tmp_path):
    base = DOUBLE_WELL.format(n_steps=200, n_walkers=4)
    a = load_config(_write(tmp_path, base, "a.toml"))
    b = load_config(_write(tmp_path, base + "\n[output]\nstate_every = 10\n", "b.toml"))
    assert a.fingerprint() == b.fingerprint()
    with pytest.raises(ConfigError, match=r"\[output\] state_terminal = true needs state_every"):
        load_config(_write(tmp_path, base + "\n[output]\nstate_terminal = true\n", "c.toml"))


# --------------------------------------------------------------------------- PDB with a box
def test_pdb_with_waters_and_a_box_asks_for_strip_or_a_method(tmp_path):
    import os

    from openmm import app

    pdb = os.path.join(os.path.dirname(app.__file__), "data", "test.pdb")  # villin in a water box
    text = (f'[system]\nname = "openmm_pdb"\npdb_path = "{pdb}"\nforcefield = ["amber14-all.xml"]\n'
            'platform = "Reference"\n{extra}\n[integrator]\nname = "baoab"\ntimestep = 0.001\n\n'
            "[sampler]\nn_steps = 10\nn_walkers = 1\nrecord_every = 5\n")
    cfg = load_config(_write(tmp_path, text.replace("{extra}", "")))
    with pytest.raises(ConfigError, match=r"solvent residues Cl x2, HOH x2761 and a periodic box record.*"
                                          r"strip=.*nonbonded_method.*does not switch on PME by itself"):
        build_system(cfg)
    stripped = load_config(_write(tmp_path, text.replace("{extra}", 'strip = ["HOH", "Cl"]'), "s.toml"))
    system = build_system(stripped)
    assert system.event_shape[0] < 1000  # the protein alone (the box holds ~9000 atoms)
    nonbonded = [f for f in system.openmm_system.getForces() if type(f).__name__ == "NonbondedForce"]
    assert [f.getNonbondedMethod() for f in nonbonded] == [0]  # NoCutoff, not PME


def test_a_minimize_table_the_system_cannot_use_fails_before_the_run_folder_exists(tmp_path, capsys):
    from langevin_md import cli

    text = DOUBLE_WELL.format(n_steps=100, n_walkers=4) + '\n[minimize]\nmethod = "openmm"\n'
    run_dir = tmp_path / "run"
    assert cli.main(["run", str(_write(tmp_path, text)), "-o", str(run_dir), "--no-progress"]) == 2
    assert "[minimize]: method='openmm' needs an OpenMM-backed system" in capsys.readouterr().err
    assert not run_dir.exists()


@pytest.mark.parametrize("table", [
    'name = "gromacs"\ntop = "ala2.top"\ngro = "ala2.gro"\nnonbonded_method = "NoCutoff"\ninclude_dir = "."',
    'name = "charmm"\npsf = "ala2.psf"\nparameter_files = ["ala2.prm"]\ncoordinates = "ala2.pdb"',
])
def test_gromacs_and_charmm_systems_from_configs(tmp_path, table):
    from langevin_md.systems.molecules import ALANINE_DIPEPTIDE_PDB

    for name in ("ala2.top", "ala2.gro", "ala2.psf", "ala2.prm"):
        shutil.copy(INPUTS / name, tmp_path / name)
    shutil.copy(ALANINE_DIPEPTIDE_PDB, tmp_path / "ala2.pdb")
    text = (f"[system]\n{table}\nplatform = \"Reference\"\n\n[integrator]\nname = \"baoab\"\ntimestep = 0.001\n\n"
            "[sampler]\nn_steps = 10\nn_walkers = 2\nrecord_every = 5\n")
    cfg = load_config(_write(tmp_path, text))
    assert build_system(cfg).event_shape == (22, 3)
    paths = [cfg.system[k] for k in ("top", "gro", "psf", "coordinates", "include_dir") if k in cfg.system]
    paths += cfg.system.get("parameter_files", [])
    assert paths and all(Path(p).is_absolute() and Path(p).parent == tmp_path.resolve() or Path(p) == tmp_path.resolve()
                         for p in paths)
