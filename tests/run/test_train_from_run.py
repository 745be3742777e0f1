"""`langevin-md train` reads run folders: force matching on recorded forces recovers a known
potential, and the model it writes is what a `[prior]` loads."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import langevin_md as lmd
from langevin_md import cli
from langevin_md.run.build import build_system
from langevin_md.run.config import load_config
from langevin_md.training import load_model

# The setting of tests/learned/test_force_matching.py, as a run config: frames every 400 ULA
# steps after 800 steps of burn-in, 256 walkers, 2,048 frames with their forces.
RUN = """\
[system]
name = "muller_brown"
kT = 1.0
energy_scale = 0.05

[integrator]
name = "ula"
step_size = 1e-3

[sampler]
n_steps = 3200
burn_in = 800
n_walkers = 256
record_every = 400
seed = 1
checkpoint_every = 4000

[output]
forces = {forces}
"""

TRAIN = """\
[data]
run = "run"

[model]
hidden = 32
layers = 2

[force_matching]
epochs = 1500
learning_rate = 1e-2
patience = 300
seed = 0
progress = false

[output]
dir = "model"
"""


def _run(tmp_path, forces: bool = True):
    (tmp_path / "run.toml").write_text(RUN.format(forces="true" if forces else "false"))
    assert cli.main(["run", str(tmp_path / "run.toml"), "--output", str(tmp_path / "run"), "--no-progress"]) == 0


def test_force_matching_from_a_run_folder_recovers_muller_brown_energy_differences(tmp_path, capsys):
    """Stated error 0.25 kT, as in tests/learned/test_force_matching.py (energies never seen,
    only recorded forces). Named wrong answer: half the exact differences (what an averaging
    force rule fits), off by >= 0.96 kT."""
    _run(tmp_path)
    (tmp_path / "train.toml").write_text(TRAIN)
    assert cli.main(["train", str(tmp_path / "train.toml")]) == 0
    err = capsys.readouterr().err
    assert "force matching) saved to" in err
    report = json.loads((tmp_path / "model" / "training.json").read_text())
    assert report["settings"]["objective"] == "force_matching" and report["settings"]["frames"] == 2048
    model = load_model(tmp_path / "model" / "model.safetensors")
    mb = lmd.systems.MullerBrown(kT=1.0, energy_scale=0.05)
    with torch.no_grad():
        u = model(torch.as_tensor(mb.minima, dtype=next(model.parameters()).dtype)).double().numpy()
    learned, exact = u[1:] - u[0], mb.minimum_energies[1:] - mb.minimum_energies[0]
    assert np.all(np.abs(learned - exact) < 0.25), (learned, exact)
    assert np.max(np.abs(learned - 0.5 * exact)) > 5 * 0.25
    # the model is what a [prior] with features = "positions" loads
    cfg = tmp_path / "with_prior.toml"
    cfg.write_text(RUN.format(forces="false") + '\n[prior]\nmodel = "model/model.safetensors"\n'
                   'features = "positions"\nweight = 1.0\n')
    system = build_system(load_config(cfg))
    x = torch.as_tensor(mb.minima)
    np.testing.assert_allclose(system.recorded_energies(x)["U_prior"].numpy(), u, rtol=1e-6)


def test_force_matching_needs_recorded_forces_and_dsm_reads_runs(tmp_path, capsys):
    _run(tmp_path, forces=False)
    (tmp_path / "train.toml").write_text(TRAIN)
    assert cli.main(["train", str(tmp_path / "train.toml")]) == 2
    assert "has no recorded forces (fields/forces)" in capsys.readouterr().err
    (tmp_path / "dsm.toml").write_text('[data]\nrun = "run"\n[model]\nhidden = 8\nlayers = 1\n'
                                       '[schedule]\nsigma_max = 0.5\nsigma_min = 0.05\nn_sigmas = 3\n'
                                       '[training]\nepochs = 2\nprogress = false\n[output]\ndir = "dsm"\n')
    assert cli.main(["train", str(tmp_path / "dsm.toml")]) == 0
    assert json.loads((tmp_path / "dsm" / "training.json").read_text())["best_epoch"] >= 0


@pytest.mark.parametrize("extra, message", [
    ("[schedule]\nsigma_max = 1.0\nsigma_min = 0.1\n", "[force_matching] replaces denoising score matching"),
    ("[cg]\natoms = [0, 1]\n", "[cg] atoms = [0, 1]: expected a list of at least two atom indices below 0"),
])
def test_bad_force_matching_configs(tmp_path, capsys, extra, message):
    _run(tmp_path)
    (tmp_path / "train.toml").write_text(TRAIN + extra)
    assert cli.main(["train", str(tmp_path / "train.toml")]) == 2
    assert message in capsys.readouterr().err


ALANINE = """\
[system]
name = "alanine_dipeptide_vacuum"

[integrator]
name = "baoab"
timestep = 0.001
friction = 5.0

[sampler]
n_steps = 200
n_walkers = 8
record_every = 10
seed = 2
checkpoint_every = 200

[output]
forces = true
"""

BACKBONE = [4, 6, 8, 10, 16]  # C(ACE), N, Cα, C (ALA), N(NME): CGnet's five beads


def test_a_cg_model_trained_from_a_run_folder_is_a_prior_and_a_cg_model(tmp_path, capsys):
    (tmp_path / "aa.toml").write_text(ALANINE)
    assert cli.main(["run", str(tmp_path / "aa.toml"), "--output", str(tmp_path / "run"), "--no-progress"]) == 0
    (tmp_path / "train.toml").write_text(
        '[data]\nrun = "run"\n[model]\nhidden = 8\nlayers = 1\n[force_matching]\nepochs = 5\nprogress = false\n'
        f'[cg]\natoms = {BACKBONE}\nn_fourier = 2\n[output]\ndir = "cg"\n')
    assert cli.main(["train", str(tmp_path / "train.toml")]) == 0
    cg = lmd.systems.CGModel.load(tmp_path / "cg" / "model.safetensors")
    assert cg.event_shape == (5, 3) and [a.name for a in cg.topology.atoms] == ["C", "N", "CA", "C", "N"]
    np.testing.assert_allclose(cg.masses, [12.011, 14.007, 12.011, 12.011, 14.007], rtol=1e-3)
    cfg = tmp_path / "with_cg.toml"
    cfg.write_text(ALANINE + f'\n[prior]\nmodel = "cg/model.safetensors"\nfeatures = "cg"\natoms = {BACKBONE}\n'
                   'weight = 0.5\n')
    system = build_system(load_config(cfg))
    x = torch.as_tensor(np.asarray(lmd.load_run(tmp_path / "run").positions[-1]))
    expected = 0.5 * cg.energy_and_forces(x[:, BACKBONE, :])[0]
    np.testing.assert_allclose(system.recorded_energies(x)["U_prior"].numpy(), expected.numpy(), rtol=1e-9)
    # atoms of the wrong count are refused by name
    cfg.write_text(cfg.read_text().replace(f"atoms = {BACKBONE}", "atoms = [4, 6, 8]"))
    from langevin_md.errors import ConfigError

    with pytest.raises(ConfigError, match=r"the CG model has 5 beads but atoms lists 3 atoms"):
        build_system(load_config(cfg))


@pytest.mark.parametrize("name", ["training.json", "loss_curve.png"])
def test_force_matching_never_writes_through_a_link_in_its_output_folder(tmp_path, capsys, name):
    """The force-matching path wrote training.json with open() and the loss curve with
    savefig, both following a link planted in [output] dir (the DSM path checked them)."""
    (tmp_path / "run.toml").write_text(RUN.format(forces="true").replace("n_steps = 3200", "n_steps = 400")
                                       .replace("n_walkers = 256", "n_walkers = 4")
                                       .replace("burn_in = 800", "burn_in = 0"))
    assert cli.main(["run", str(tmp_path / "run.toml"), "--output", str(tmp_path / "run"), "--no-progress"]) == 0
    (tmp_path / "train.toml").write_text(TRAIN.replace("epochs = 1500", "epochs = 2"))
    victim = tmp_path / "precious"
    victim.write_bytes(b"the user's own file\n")
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / name).symlink_to(victim)
    capsys.readouterr()
    assert cli.main(["train", str(tmp_path / "train.toml")]) != 0
    assert victim.read_bytes() == b"the user's own file\n"
    assert "symbolic link" in capsys.readouterr().err


def test_a_loss_curve_is_never_drawn_through_a_link(tmp_path):
    from langevin_md.safe_paths import UnsafePathError
    from langevin_md.training.progress import plot_loss_curve

    victim = tmp_path / "precious"
    victim.write_bytes(b"mine\n")
    (tmp_path / "curve.png").symlink_to(victim)
    with pytest.raises(UnsafePathError, match="symbolic link"):
        plot_loss_curve([1.0, 0.5], [1.1, 0.6], tmp_path / "curve.png")
    assert victim.read_bytes() == b"mine\n"
