"""CG bead models: Boltzmann-inverted priors, sampling by every integrator, safe files."""

import json
import struct

import numpy as np
import pytest
import torch

import langevin_md as lmd
from langevin_md.systems.cg_model import CGEnergy, CGModel
from langevin_md.systems.cg_terms import bond_angles, chain_terms, dihedral_angles
from langevin_md.training.cg_priors import boltzmann_inversion

KT = 2.5


def random_chain(n_frames, r0, k_bond, seed=0):
    """5-bead chains with bond lengths ~ N(r0, kT/k) exactly and random bond directions.

    A free chain's bond vectors are independent, so the exact Boltzmann inversion of the
    bond-length histogram is ½ k (r − r0)² (up to the r² Jacobian, which the random
    directions build in; with kT/k ≪ r0² it shifts the mean by O(kT/(k r0)) only).
    """
    g = np.random.default_rng(seed)
    lengths = g.normal(r0, np.sqrt(KT / k_bond), (n_frames, 4))
    u = g.normal(size=(n_frames, 4, 3))
    u /= np.linalg.norm(u, axis=-1, keepdims=True)
    steps = lengths[..., None] * u
    return np.concatenate([np.zeros((n_frames, 1, 3)), np.cumsum(steps, axis=1)], axis=1)


def small_model(R, hidden=16, n_layers=2, seed=0):
    torch.manual_seed(seed)
    energy = CGEnergy(boltzmann_inversion(R, KT, n_fourier=2), hidden=hidden, n_layers=n_layers, kT=KT)
    energy.set_data_statistics(torch.as_tensor(R[:200]))
    return CGModel(energy, KT, [12.0, 14.0, 12.0, 12.0, 14.0], R[0])


def test_boltzmann_inversion_recovers_bond_stiffness():
    n, r0, k = 20000, 0.15, 40000.0
    R = random_chain(n, r0, k)
    prior = boltzmann_inversion(R, KT)
    k_hat = prior.bond_k.numpy()
    se = k * np.sqrt(2.0 / n)  # k = kT/Var: relative SE of a variance is sqrt(2/n)
    assert np.all(np.abs(k_hat - k) < 5 * se), (k_hat, se)
    assert np.all(np.abs(prior.bond_r0.numpy() - r0) < 5 * np.sqrt(KT / k / n) + KT / (k * r0))
    # named wrong answer: k = 2kT/Var (the ½ of ½k(r − r0)² dropped) is far outside the error bar
    assert np.all(np.abs(k_hat - 2 * k) > 20 * se)
    # chain defaults, and repulsion only between beads not joined by a bond or an angle
    assert prior.bonds.tolist() == chain_terms(5)["bonds"].tolist()
    assert sorted(map(tuple, prior.repulsion.tolist())) == [(0, 3), (0, 4), (1, 4)]


def test_dihedral_fourier_prior_matches_inverted_histogram():
    """The fitted series reproduces −kT ln p(φ) up to a constant where φ is sampled."""
    R = random_chain(30000, 0.15, 40000.0, seed=2)
    prior = boltzmann_inversion(R, KT, n_fourier=3)
    phi = dihedral_angles(torch.as_tensor(R), prior.dihedrals).numpy()[:, 0]
    # random directions give a flat dihedral law: every coefficient is ~0 (noise ~ kT/sqrt(n))
    assert np.abs(prior.dihedral_cos.numpy()).max() < 0.1 * KT
    assert np.abs(phi).max() <= np.pi


@pytest.mark.parametrize("integrator", [
    lmd.integrators.BAOAB(timestep=0.002, friction=5.0),
    lmd.integrators.ULA(step_size=1e-6),
    lmd.integrators.MALA(step_size=1e-6),
])
def test_every_integrator_samples_a_cg_model(integrator):
    R = random_chain(2000, 0.15, 40000.0)
    model = small_model(R)
    res = lmd.sample(model, integrator, n_steps=40, n_walkers=8, record_every=10, seed=0)
    assert res.positions.shape == (4, 8, 5, 3)
    assert np.isfinite(res.positions).all() and np.isfinite(res.energies).all()


def test_energy_is_prior_plus_network_and_forces_are_its_gradient():
    R = random_chain(300, 0.15, 40000.0)
    model = small_model(R)
    x = torch.as_tensor(R[:6])
    e, f = model.energy_and_forces(x)
    parts = model.energy_components(x)
    torch.testing.assert_close(parts["prior"] + parts["network"], e)
    assert parts["network"].abs().max() > 0
    h = 1e-6
    dx = torch.zeros_like(x)
    dx[:, 2, 1] = h
    fd = -(model.energy(x + dx) - model.energy(x - dx)) / (2 * h)
    torch.testing.assert_close(fd, f[:, 2, 1], rtol=1e-5, atol=1e-4)


def test_topology_lets_the_molecular_analysis_compute_phi_psi():
    ala = lmd.systems.alanine_dipeptide(solvent="vacuum")
    beads = [4, 6, 8, 10, 16]  # C, N, CA, C, N
    x = np.asarray(ala.initial_positions(1, None))[0][beads]
    R = np.repeat(x[None], 50, 0) + np.random.default_rng(0).normal(0, 0.005, (50, 5, 3))
    energy = CGEnergy(boltzmann_inversion(R, KT, n_fourier=1), hidden=8, n_layers=1, kT=KT)
    model = CGModel(energy, KT, np.full(5, 13.0), x, ala.topology.subset(beads))
    res = lmd.sample(model, lmd.integrators.BAOAB(timestep=0.001, friction=5.0), n_steps=20, n_walkers=3,
                     record_every=10, seed=0)
    phi, psi = lmd.analysis.phi_psi(res)
    assert phi.shape == (2, 3)
    # the same angles as our own dihedral of (C, N, CA, C) and (N, CA, C, N)
    ref = dihedral_angles(torch.as_tensor(res.positions[:, 0]), torch.tensor([[0, 1, 2, 3], [1, 2, 3, 4]]))
    np.testing.assert_allclose(phi[:, 0], ref[:, 0].numpy(), atol=1e-5)
    np.testing.assert_allclose(psi[:, 0], ref[:, 1].numpy(), atol=1e-5)


def test_save_load_round_trip_is_exact(tmp_path):
    R = random_chain(300, 0.15, 40000.0)
    model = small_model(R)
    path = model.save(tmp_path / "cg.safetensors")
    back = CGModel.load(path)
    x = torch.as_tensor(R[:7])
    torch.testing.assert_close(back.energy_and_forces(x), model.energy_and_forces(x), rtol=0, atol=0)
    np.testing.assert_array_equal(back.masses, model.masses)
    assert back.kT == model.kT


def _rewrite_header(path, edit):
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    edit(header)
    new = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(new)) + new + raw[8 + n:])


def test_load_checks_the_header_before_reading(tmp_path):
    R = random_chain(300, 0.15, 40000.0)
    path = tmp_path / "cg.safetensors"
    small_model(R).save(path)

    def huge(h):
        meta = json.loads(h["__metadata__"]["langevin_md.cg_model"])
        meta["hidden"] = 10 ** 9
        h["__metadata__"]["langevin_md.cg_model"] = json.dumps(meta)

    _rewrite_header(path, huge)
    with pytest.raises(ValueError, match=r"'hidden' must be an integer in \[1, 4096\]"):
        CGModel.load(path)

    small_model(R, hidden=16).save(path)

    def wider(h):
        meta = json.loads(h["__metadata__"]["langevin_md.cg_model"])
        meta["hidden"] = 32
        h["__metadata__"]["langevin_md.cg_model"] = json.dumps(meta)

    _rewrite_header(path, wider)
    with pytest.raises(ValueError, match="the header implies shape"):
        CGModel.load(path)
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 7)
    with pytest.raises(ValueError, match="not a readable safetensors file"):
        CGModel.load(tmp_path / "junk.safetensors")
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(ValueError, match="not written by CGModel.save"):
        CGModel.load(tmp_path / "other.safetensors")


def test_bad_inputs_name_the_value():
    R = random_chain(50, 0.15, 40000.0)
    with pytest.raises(ValueError, match="out of range for 5 beads"):
        boltzmann_inversion(R, KT, bonds=[[0, 9]])
    with pytest.raises(ValueError, match=r"shape \(n_frames >= 2, n_beads >= 2, 3\)"):
        boltzmann_inversion(R[:, :, :2], KT)
    energy = CGEnergy(boltzmann_inversion(R, KT), hidden=4, n_layers=1, kT=KT)
    with pytest.raises(ValueError, match=r"reference_positions must be finite with shape \(5, 3\)"):
        CGModel(energy, KT, np.ones(5), np.zeros((4, 3)))
    assert bond_angles(torch.as_tensor(R[:2]), torch.tensor([[0, 1, 2]])).shape == (2, 1)


def test_sum_of_systems_reports_each_term():
    a, b = lmd.systems.Harmonic(dim=2, k=1.0), lmd.systems.DoubleWell(dim=2)
    s = a + 0.5 * b
    x = torch.randn(4, 2, dtype=torch.float64)
    parts = s.energy_components(x)
    assert [w for w, _, _ in parts] == [1.0, 0.5]
    torch.testing.assert_close(sum(w * e for w, _, e in parts), s.energy(x))
    torch.testing.assert_close(parts[1][2], b.energy(x))
