"""``[prior]`` in run configs: runs through the CLI on both molecular engines, records U_ff and
U_prior apart, resumes bitwise after SIGKILL, refuses bad tables by name; ``[output] forces``."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import langevin_md as lmd
from langevin_md import cli
from langevin_md.io.checkpoint import list_checkpoints, load_checkpoint
from langevin_md.run.build import build_system
from langevin_md.run.config import load_config
from langevin_md.run.folder import load_run
from langevin_md.training import EnergyMLP, save_model

from tests.io.helpers import run_cli, trajectory_arrays
from tests.run.test_crash_resume import _reference, _start, _wait_for_checkpoint

ALANINE = """\
[system]
name = "alanine_dipeptide_vacuum"
engine = "{engine}"

[integrator]
name = "baoab"
timestep = 0.001
friction = 5.0

[sampler]
n_steps = 40
n_walkers = 4
record_every = 10
seed = 1
checkpoint_every = 20

[output]
forces = true

[prior]
model = "prior.safetensors"
features = "phi_psi"
weight = 0.5
"""

MULLER_BROWN = """\
[system]
name = "muller_brown"
kT = 20.0

[integrator]
name = "baoab"
timestep = 2e-3
friction = 1.0

[sampler]
n_steps = {n_steps}
n_walkers = {n_walkers}
record_every = 7
seed = 3
checkpoint_every = 500

[output]
forces = true

[prior]
model = "{model}"
features = "positions"
weight = 0.25
"""


def _model(path: Path, event_shape, periodic: bool, seed: int = 0) -> Path:
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        net = EnergyMLP(event_shape, hidden=8, n_layers=1, periodic=periodic, kT=2.5).double()
    # non-zero output layer so the prior is not flat
    with torch.no_grad():
        net.net[-1].weight.normal_(0.0, 2.0)
    save_model(net, path)
    return path


@pytest.mark.parametrize("engine", ["torch", "openmm"])
def test_a_prior_config_runs_on_both_engines_and_records_U_ff_and_U_prior(tmp_path, engine, capsys):
    model = _model(tmp_path / "prior.safetensors", (2,), periodic=True)
    cfg = tmp_path / "run.toml"
    cfg.write_text(ALANINE.format(engine=engine))
    assert cli.main(["run", str(cfg), "--output", str(tmp_path / "run"), "--no-progress"]) == 0
    r = load_run(tmp_path / "run")
    assert set(r.fields) == {"U_ff", "U_prior", "forces"}
    # U_ff is the force field alone at those positions, computed again here without the prior
    config = load_config(tmp_path / "run" / "config.toml")
    assert config.prior["model"] == str(model.resolve())  # stored absolute
    system = build_system(config)
    ff = system.forcefield
    x = torch.as_tensor(r.positions.reshape(-1, 22, 3))
    u_ff = ff.energy_and_forces(x)[0].numpy().reshape(r.energies.shape)
    np.testing.assert_allclose(r.fields["U_ff"], u_ff, rtol=1e-9, atol=1e-6)
    # U_prior is λ times the network at (φ, ψ) from mdtraj, an independent feature code
    from langevin_md.analysis.molecular import phi_psi
    from langevin_md.training import load_model

    phi, psi = phi_psi(r)
    net = load_model(model).double()
    with torch.no_grad():
        u_net = net(torch.as_tensor(np.stack([phi, psi], -1).reshape(-1, 2))).numpy().reshape(r.energies.shape)
    np.testing.assert_allclose(r.fields["U_prior"], 0.5 * u_net, rtol=1e-6, atol=1e-6)
    assert not np.allclose(r.fields["U_prior"], u_net, rtol=1e-3)  # the unweighted prior is a wrong answer
    np.testing.assert_allclose(r.fields["U_ff"] + r.fields["U_prior"], r.energies, rtol=1e-12, atol=1e-9)
    # forces of the summed system at the recorded positions
    f = system.energy_and_forces(x)[1].numpy().astype(np.float32).reshape(r.fields["forces"].shape)
    np.testing.assert_allclose(r.fields["forces"], f, rtol=1e-5, atol=1e-3)


def test_forces_recorded_and_loaded_equal_the_systems_forces(tmp_path):
    model = _model(tmp_path / "p.safetensors", (2,), periodic=False)
    cfg = tmp_path / "mb.toml"
    cfg.write_text(MULLER_BROWN.format(n_steps=200, n_walkers=4, model=model.name))
    assert cli.main(["run", str(cfg), "--output", str(tmp_path / "run"), "--no-progress"]) == 0
    r = load_run(tmp_path / "run")
    forces = r.fields["forces"]
    assert forces.dtype == np.float32 and forces.shape == r.positions.shape
    system = build_system(load_config(tmp_path / "run" / "config.toml"))
    for frame in (0, len(r.steps) - 1):
        expected = system.energy_and_forces(torch.as_tensor(r.positions[frame]))[1].numpy()
        np.testing.assert_array_equal(forces[frame], expected.astype(np.float32))
        # the force field's forces alone (without λ·prior) are a named wrong answer
        wrong = system.forcefield.energy_and_forces(torch.as_tensor(r.positions[frame]))[1].numpy()
        assert not np.allclose(forces[frame], wrong, rtol=1e-3)


def test_sample_results_carry_the_same_fields():
    ff = lmd.systems.MullerBrown(kT=20.0)
    prior = lmd.systems.MullerBrown(kT=20.0)
    r = lmd.sample(lmd.systems.ForceFieldWithPrior(ff, prior, 0.5), lmd.integrators.BAOAB(timestep=2e-3),
                   n_steps=30, n_walkers=3, record_every=10, record_forces=True)
    assert set(r.fields) == {"U_ff", "U_prior", "forces"}
    np.testing.assert_allclose(r.fields["U_prior"], 0.5 * r.fields["U_ff"], rtol=1e-12)
    np.testing.assert_allclose(r.fields["U_ff"] + r.fields["U_prior"], r.energies, rtol=1e-12)


def _bad(tmp_path: Path, prior_table: str, *expected: str, system: str = "alanine_dipeptide_vacuum") -> None:
    _model(tmp_path / "wide.safetensors", (3,), periodic=True)
    _model(tmp_path / "phipsi.safetensors", (2,), periodic=True)
    cfg = tmp_path / "bad.toml"
    cfg.write_text(ALANINE.format(engine="torch").split("[prior]")[0].replace("alanine_dipeptide_vacuum", system)
                   + "[prior]\n" + prior_table)
    out = tmp_path / "run"
    proc = run_cli("run", cfg, "--output", out, "--no-progress")
    assert proc.returncode == 2, proc.stderr
    for text in expected:
        assert text in proc.stderr, (text, proc.stderr)
    assert not out.exists()  # no half-made run folder


@pytest.mark.parametrize("table, expected", [
    ('model = "missing.safetensors"\nfeatures = "phi_psi"\n',
     ("[prior] model: file", "missing.safetensors does not exist", "expects an energy model of input width 2")),
    ('model = "wide.safetensors"\nfeatures = "phi_psi"\n',
     ("[prior] model = ", "wide.safetensors", "its input shape is (3,), but the features have shape (2,)")),
    ('model = "phipsi.safetensors"\nfeatures = "dihedrals"\n',
     ("[prior] features = 'dihedrals' is not known", "'phi_psi'", "'cg'")),
    ('model = "phipsi.safetensors"\nfeatures = "phi_psi"\nwieght = 2\n', ("[prior] unknown key 'wieght'",)),
    ('features = "phi_psi"\n', ("[prior] is missing required key 'model'",)),
    ('model = "phipsi.safetensors"\nfeatures = "cg"\n', ("[prior] atoms = None", "features = \"cg\" needs atoms")),
    ('model = "phipsi.safetensors"\nfeatures = "positions"\n',
     ("phipsi.safetensors", "its input shape is (2,), but the features have shape (22, 3)")),
])
def test_bad_prior_tables_are_refused_by_name_before_a_run_folder_exists(tmp_path, table, expected):
    _bad(tmp_path, table, *expected)


def test_a_prior_needs_the_torch_executor(tmp_path):
    _model(tmp_path / "p.safetensors", (2,), periodic=True)
    cfg = tmp_path / "c.toml"
    cfg.write_text(ALANINE.format(engine="openmm").replace("[sampler]\n", '[sampler]\nbackend = "openmm"\n')
                   .replace("prior.safetensors", "p.safetensors"))
    proc = run_cli("run", cfg, "--output", tmp_path / "run", "--no-progress")
    assert proc.returncode == 2 and '[prior] needs [sampler] backend = "torch"' in proc.stderr
    assert not (tmp_path / "run").exists()


def test_sigkill_with_a_prior_then_resume_is_bitwise_identical(tmp_path):
    _model(tmp_path / "p.safetensors", (2,), periodic=False)
    cfg = tmp_path / "mb.toml"
    cfg.write_text(MULLER_BROWN.format(n_steps=6000, n_walkers=32, model="p.safetensors"))
    run_dir = tmp_path / "killed"
    proc = _start(cfg, run_dir)
    _wait_for_checkpoint(proc, run_dir)
    time.sleep(np.random.default_rng(20261207).uniform(0.0, 1.0))
    assert proc.poll() is None, "the run finished before it could be killed; make it longer"
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    killed_at = load_checkpoint(list_checkpoints(run_dir / "checkpoints")[-1])[0]["step"]
    assert 0 < killed_at < 6000
    run_cli("resume", run_dir, "--no-progress", check_rc=0)
    ref = _reference(tmp_path, cfg)
    a, b = load_run(run_dir), load_run(ref)
    assert np.array_equal(a.positions, b.positions) and np.array_equal(a.energies, b.energies)
    assert set(a.fields) == {"U_ff", "U_prior", "forces"}
    for name in a.fields:
        assert a.fields[name].dtype == b.fields[name].dtype
        assert np.array_equal(a.fields[name], b.fields[name]), name  # bitwise
    assert trajectory_arrays(run_dir).keys() == trajectory_arrays(ref).keys()


def test_the_openmm_executor_records_forces_too(tmp_path):
    cfg = tmp_path / "omm.toml"
    cfg.write_text(ALANINE.format(engine="openmm").split("[prior]")[0]
                   .replace("[sampler]\n", '[sampler]\nbackend = "openmm"\n').replace("n_walkers = 4", "n_walkers = 2"))
    assert cli.main(["run", str(cfg), "--output", str(tmp_path / "run"), "--no-progress"]) == 0
    r = load_run(tmp_path / "run")
    assert set(r.fields) == {"forces"} and r.fields["forces"].dtype == np.float32
    system = build_system(load_config(tmp_path / "run" / "config.toml"))
    expected = system.energy_and_forces(torch.as_tensor(r.positions[-1]))[1].numpy()
    # float32 storage of forces up to ~2e3 kJ/mol/nm: agreement to float32 rounding
    np.testing.assert_allclose(r.fields["forces"][-1], expected, rtol=1e-6, atol=1e-3)


def test_a_changed_model_file_is_refused_on_resume(tmp_path):
    model = _model(tmp_path / "p.safetensors", (2,), periodic=False)
    cfg = tmp_path / "mb.toml"
    cfg.write_text(MULLER_BROWN.format(n_steps=100, n_walkers=2, model=model.name))
    assert cli.main(["run", str(cfg), "--output", str(tmp_path / "run"), "--no-progress"]) == 0
    assert "sha256 = " in (tmp_path / "run" / "config.toml").read_text()
    _model(model, (2,), periodic=False, seed=1)  # another network in the same file
    proc = run_cli("resume", tmp_path / "run", "--no-progress")
    assert proc.returncode == 2 and "the model file changed since this config was written" in proc.stderr


def test_a_prior_under_the_default_backend_runs_on_torch(tmp_path):
    """[sampler] backend defaults to "auto", and "auto" can only mean torch for a [prior]: such a
    config was refused ('[prior] needs backend = "torch", got backend = 'auto'')."""
    from langevin_md.run.build import resolve_backend

    _model(tmp_path / "prior.safetensors", (2,), periodic=False)
    cfg_path = tmp_path / "run.toml"
    cfg_path.write_text(MULLER_BROWN.format(n_steps=10, n_walkers=2, model="prior.safetensors"))
    cfg = load_config(cfg_path)
    assert cfg.sampler["backend"] == "auto"
    system = build_system(cfg)
    resolve_backend(cfg, system, lmd.run.build.build_integrator(cfg, system))
    assert cfg.sampler["backend"] == "torch" and "[prior]" in cfg.backend_reason
