"""Lennard-Jones clusters: forces, confinement, ASE starting structures, known minima."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
import torch

from langevin_md.random import WalkerRNG
from langevin_md.systems.lennard_jones import LJ_GLOBAL_MINIMA, LennardJonesCluster

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _configs(system, n=8, seed=0, spread=0.15):
    """Perturbed reference structures, with two atoms pushed beyond any wall."""
    rng = np.random.default_rng(seed)
    ref = system.reference_structure()
    x = ref + spread * rng.normal(size=(n, *ref.shape))
    x[:, 0] += 1.5 * system.confinement_radius * np.array([1.0, 0.3, -0.2])
    x[:, 1] -= 1.2 * system.confinement_radius * np.array([0.1, 1.0, 0.4])
    return torch.as_tensor(x)


@pytest.mark.parametrize("confinement", ["wall", "harmonic", "none"])
@pytest.mark.parametrize("device", DEVICES)
def test_forces_match_autograd(confinement, device):
    system = LennardJonesCluster(13, epsilon=1.3, sigma=0.9, confinement=confinement)
    x = _configs(system).to(device).requires_grad_(True)
    energy, forces = system.energy_and_forces(x)
    (grad,) = torch.autograd.grad(energy.sum(), x)
    assert energy.shape == (8,) and forces.shape == x.shape and forces.device == x.device
    torch.testing.assert_close(forces, -grad, rtol=1e-10, atol=1e-10 * grad.abs().max().item())
    # Newton's third law: interactions and confinement are internal, the net force is zero.
    assert forces.sum(1).abs().max() < 1e-9 * forces.abs().max()


def test_wall_acts_only_outside_and_pair_energy_is_exact():
    system = LennardJonesCluster(2, epsilon=2.0, sigma=1.5)
    r = np.array([1.2, 2.0 ** (1 / 6) * 1.5, 3.0])
    x = torch.zeros(3, 2, 3, dtype=torch.float64)
    x[:, 1, 0] = torch.as_tensor(r)
    e, f = system.energy_and_forces(x)
    lj = 4 * 2.0 * ((1.5 / r) ** 12 - (1.5 / r) ** 6)
    np.testing.assert_allclose(e.numpy(), lj, rtol=1e-12)
    assert math.isclose(e[1].item(), -2.0, rel_tol=1e-12) and f[1].abs().max() < 1e-12
    # Two atoms 2R + 2 apart are each 1 beyond the wall: it adds 2 · (k/2) · 1².
    far = torch.zeros(1, 2, 3, dtype=torch.float64)
    far[0, 1, 0] = 2.0 * system.confinement_radius + 2.0
    bare = LennardJonesCluster(2, epsilon=2.0, sigma=1.5, confinement="none")
    extra = system.energy(far) - bare.energy(far)
    assert math.isclose(extra.item(), 2 * 0.5 * system.confinement_stiffness * 1.0**2, rel_tol=1e-12)


def test_float32_and_shape_errors():
    system = LennardJonesCluster(13)
    x = _configs(system, spread=0.02)
    e64, f64 = system.energy_and_forces(x)
    e32, f32 = system.energy_and_forces(x.float())
    assert e32.dtype == f32.dtype == torch.float32
    torch.testing.assert_close(e32.double(), e64, rtol=1e-4, atol=1e-3)
    torch.testing.assert_close(f32.double(), f64, rtol=1e-4, atol=1e-3 * f64.abs().max().item())
    assert len(system._cache) == 2
    with pytest.raises(ValueError, match=r"expects \(n_walkers, 13, 3\)"):
        system.energy_and_forces(torch.zeros(4, 12, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"expects \(n_walkers, 13, 3\)"):
        system.energy_and_forces(torch.zeros(13, 3, dtype=torch.float64))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(n_atoms=1), "n_atoms"),
        (dict(n_atoms=4.0), "n_atoms"),
        (dict(n_atoms=4, epsilon=0), "epsilon"),
        (dict(n_atoms=4, sigma=-1), "sigma"),
        (dict(n_atoms=4, kT=0), "kT"),
        (dict(n_atoms=4, confinement="box"), "confinement"),
        (dict(n_atoms=4, confinement_radius=0.0), "confinement_radius"),
        (dict(n_atoms=4, confinement_stiffness=-1.0), "confinement_stiffness"),
    ],
)
def test_bad_parameters(kwargs, message):
    with pytest.raises(ValueError, match=message):
        LennardJonesCluster(**kwargs)


@pytest.mark.parametrize("n_atoms", [13, 55])
def test_icosahedra_relax_to_the_known_global_minimum(n_atoms):
    system = LennardJonesCluster(n_atoms, epsilon=1.0, sigma=1.0)
    ref = system.reference_structure()
    assert ref.shape == (n_atoms, 3)
    d = np.linalg.norm(ref[:, None] - ref[None], axis=-1)[np.triu_indices(n_atoms, 1)]
    assert math.isclose(d.min(), 2 ** (1 / 6), rel_tol=1e-12)
    _, energy = system.minimize(ref)
    assert abs(energy - system.minimum_energy) < 1e-5
    assert system.minimum_energy == LJ_GLOBAL_MINIMA[n_atoms]


def test_minimum_energy_scales_with_epsilon_and_is_none_when_unknown():
    scaled = LennardJonesCluster(13, epsilon=0.996, sigma=0.3405)
    _, energy = scaled.minimize(scaled.reference_structure())
    assert math.isclose(energy, -44.326801 * 0.996, rel_tol=1e-7)
    assert LennardJonesCluster(23).minimum_energy is None


@pytest.mark.parametrize("n_atoms, exact", [(2, True), (3, True), (5, True), (8, True), (12, True),
                                             (7, False), (20, False), (38, False)])
def test_non_magic_sizes_get_compact_structures(n_atoms, exact):
    system = LennardJonesCluster(n_atoms)
    ref = system.reference_structure()
    assert ref.shape == (n_atoms, 3)
    assert np.abs(ref.mean(0)).max() < 1e-12
    _, energy = system.minimize(ref)
    if exact:
        assert abs(energy - system.minimum_energy) < 1e-5
    else:  # a compact local minimum, within 10 % of the global one
        assert system.minimum_energy - 1e-6 <= energy <= 0.9 * system.minimum_energy


def test_initial_positions_are_the_structure_plus_small_noise():
    system = LennardJonesCluster(13)
    x = system.initial_positions(16, WalkerRNG(5, 16))
    assert x.shape == (16, 13, 3) and x.dtype == torch.float64
    noise = x - torch.as_tensor(system.reference_structure())
    assert 0.01 < noise.std().item() < 0.03
    assert torch.isfinite(system.energy(x)).all() and (system.energy(x) < -30).all()
    assert system.masses.shape == (13,) and (system.masses == 1).all()


def test_ase_is_imported_lazily():
    code = ("import sys, langevin_md.systems.lennard_jones as m; "
            "m.LennardJonesCluster(13).energy_and_forces(__import__('torch').zeros(1, 13, 3) + "
            "__import__('torch').arange(39.).reshape(1, 13, 3)); print('ase' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
