"""Force matching recovers known potentials; wrong mapped-force rules are refused and rejected."""

import io

import numpy as np
import pytest
import torch

import langevin_md as lmd
from langevin_md.training.cg_map import CGMap
from langevin_md.training.force_matching import fit_forces, force_matching_loss
from langevin_md.learned.models import EnergyMLP

K_BOND, K_EXT, KT = 50.0, 4.0, 2.5
MASSES = np.array([1.0, 3.0, 1.0, 3.0])  # two beads of two atoms, unequal masses


def two_atom_beads(n, seed=0):
    """Exact draws and forces of U = Σ_beads k_b/2 |a − b|² + k_e/2 |R|², R = (a + 3b)/4.

    In (R, r = a − b) the energy separates, so R ~ N(0, kT/k_e), r ~ N(0, kT/k_b) exactly;
    the PMF of each bead is k_e/2 |R|² and its exact mean force −k_e R.
    """
    g = np.random.default_rng(seed)
    R = g.normal(0, np.sqrt(KT / K_EXT), (n, 2, 3))
    r = g.normal(0, np.sqrt(KT / K_BOND), (n, 2, 3))
    a, b = R + 0.75 * r, R - 0.25 * r
    x = np.stack([a[:, 0], b[:, 0], a[:, 1], b[:, 1]], axis=1)
    Fa, Fb = -K_BOND * r - 0.25 * K_EXT * R, K_BOND * r - 0.75 * K_EXT * R
    f = np.stack([Fa[:, 0], Fb[:, 0], Fa[:, 1], Fb[:, 1]], axis=1)
    return x, f


class Stiffness(torch.nn.Module):
    """U = k/2 Σ_I |R_I|² with one learned stiffness k."""

    def __init__(self):
        super().__init__()
        self.k = torch.nn.Parameter(torch.tensor(1.0, dtype=torch.float64))

    def forward(self, R):
        return 0.5 * self.k * (R * R).sum((-1, -2))


def fitted_stiffness(R, f):
    model = Stiffness()
    fit_forces(model, R, f, epochs=300, learning_rate=0.1, patience=300, progress=False)
    return float(model.k.detach())


def test_sum_rule_recovers_the_pmf_and_wrong_rules_are_rejected():
    x, F = two_atom_beads(4000)
    cg = CGMap.centre_of_mass([[0, 1], [2, 3]], MASSES)
    R, f = cg.map_positions(x), cg.map_forces(F)
    np.testing.assert_allclose(cg.bead_masses(MASSES), [4.0, 4.0])
    # sum rule: the bond forces cancel exactly, so k is recovered to optimiser precision
    k = fitted_stiffness(R, f)
    assert abs(k - K_EXT) < 0.02 * K_EXT, k
    # named wrong answers: averaging forces (d = 1/2) fits k_e/2; weighting forces by the
    # centre-of-mass weights (d = c) fits k_e (1/16 + 9/16) = 0.625 k_e plus bond noise
    avg = 0.5 * (F[:, 0::2] + F[:, 1::2])
    com_w = 0.25 * F[:, 0::2] + 0.75 * F[:, 1::2]
    for wrong, expect in ((avg, 0.5 * K_EXT), (com_w, 0.625 * K_EXT)):
        k_wrong = fitted_stiffness(R, wrong)
        assert abs(k_wrong - expect) < 0.05 * K_EXT, (k_wrong, expect)
        assert abs(k_wrong - K_EXT) > 0.3 * K_EXT
    # and the map refuses to be built with those force weights
    c = cg.weights
    with pytest.raises(ValueError, match="averaging forces is wrong"):
        CGMap(c, force_weights=0.5 * (c != 0))
    with pytest.raises(ValueError, match="δ_IJ"):
        CGMap(c, force_weights=c)


def test_selection_map_forces_are_the_selected_atoms():
    x, F = two_atom_beads(5)
    cg = CGMap.selection([1, 2], 4)
    np.testing.assert_array_equal(cg.map_positions(x), x[:, [1, 2]])
    np.testing.assert_array_equal(cg.map_forces(F), F[:, [1, 2]])
    t = torch.as_tensor(x, dtype=torch.float32)
    assert cg.map_positions(t).dtype == torch.float32


@pytest.mark.parametrize("build, match", [
    (lambda: CGMap([[0.5, 0.4]]), "sum to 0.9"),
    (lambda: CGMap([[0.5, 0.5, 0], [0, 0.5, 0.5]]), "atom 1 belongs to more than one bead"),
    (lambda: CGMap.selection([0, 7], 4), r"out of range for 4 atoms"),
    (lambda: CGMap.selection([0, 0], 4), "repeat"),
    (lambda: CGMap.selection([0], 4).map_positions(np.zeros((2, 3, 3))), r"\(n_frames, 4, 3\)"),
])
def test_bad_maps_are_refused(build, match):
    with pytest.raises(ValueError, match=match):
        build()


def test_force_matching_recovers_muller_brown_energy_differences():
    """Energies learned from forces (no energies seen) match the exact minima differences.

    Stated error: 0.25 kT (8 % of the 3.3 kT spread of the minima), from the residual force
    error of a 32-wide net trained for seconds, integrated along paths between minima.
    Named wrong answer: the halved forces of an averaging rule (ΔU/2, off by ≥ 0.96 kT).
    """
    mb = lmd.systems.MullerBrown(kT=1.0, energy_scale=0.05)
    res = lmd.sample(mb, lmd.integrators.ULA(step_size=1e-3), n_steps=4000, n_walkers=256,
                     record_every=400, seed=1)
    x = torch.as_tensor(res.positions[2:].reshape(-1, 2))
    _, f = mb.energy_and_forces(x)
    torch.manual_seed(0)
    model = EnergyMLP((2,), hidden=32, n_layers=2, kT=1.0)
    log = io.StringIO()
    out = fit_forces(model, x.numpy(), f.numpy(), epochs=1500, learning_rate=1e-2, patience=300,
                     stream=log, progress_interval=0.0)
    assert "force matching: epoch 1/1500" in log.getvalue() and "(done)" in log.getvalue()
    assert out.best_validation_loss < 0.01 * float((f ** 2).mean())
    with torch.no_grad():
        u = model(torch.as_tensor(mb.minima, dtype=torch.float32)).double().numpy()
    learned, exact = u[1:] - u[0], mb.minimum_energies[1:] - mb.minimum_energies[0]
    assert np.all(np.abs(learned - exact) < 0.25), (learned, exact)
    assert np.max(np.abs(learned - 0.5 * exact)) > 5 * 0.25


def test_loss_and_fit_validate_inputs(tmp_path):
    model = Stiffness()
    R = torch.zeros(4, 2, 3, dtype=torch.float64)
    with pytest.raises(ValueError, match="differ in shape"):
        force_matching_loss(model, R, torch.zeros(4, 2, 2, dtype=torch.float64))
    with pytest.raises(ValueError, match="forces must have the shape"):
        fit_forces(model, R.numpy(), np.zeros((4, 3, 3)))
    with pytest.raises(ValueError, match="NaN"):
        fit_forces(model, R.numpy(), np.full((4, 2, 3), np.nan))
    with pytest.raises(ValueError, match="epochs"):
        fit_forces(model, R.numpy(), R.numpy(), epochs=0)
    x, F = two_atom_beads(64)
    cg = CGMap.centre_of_mass([[0, 1], [2, 3]], MASSES)
    png = tmp_path / "curve.png"
    fit_forces(model, cg.map_positions(x), cg.map_forces(F), epochs=5, progress=False, loss_curve=png)
    assert png.stat().st_size > 1000


def test_dsm_fit_writes_progress_lines_and_a_loss_curve_off_a_terminal(tmp_path):
    from langevin_md.training import fit, geometric_sigmas

    torch.manual_seed(0)
    model = EnergyMLP((2,), hidden=8, n_layers=1)
    data = np.random.default_rng(0).normal(size=(400, 2))
    log = io.StringIO()  # not a terminal
    res = fit(model, data, geometric_sigmas(1.0, 0.1, 3), epochs=4, batch_size=128, stream=log,
              progress_interval=0.0, loss_curve=tmp_path / "dsm.png", threads=1)
    lines = log.getvalue().splitlines()
    assert lines[0].startswith("DSM: epoch 1/4  train ") and lines[-1].endswith("(done)")
    assert len(res.validation_loss) == 4 and (tmp_path / "dsm.png").stat().st_size > 1000
    quiet = io.StringIO()
    fit(model, data, [1.0, 0.1], epochs=2, stream=quiet, progress=False)
    assert quiet.getvalue() == ""
