"""TorchForceField as a System: batches, dtypes, priors, engines, save/load without OpenMM."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

import langevin_md as lmd
from langevin_md.systems import TorchForceField, load_forcefield
from langevin_md.systems.molecules import alanine_dipeptide, choose_engine
from tests.forcefield.helpers import configurations, create_system, errors, reference_energy_forces

openmm = pytest.importorskip("openmm")


@pytest.fixture(scope="module")
def bridge():
    return alanine_dipeptide("vacuum", platform="Reference")


@pytest.fixture(scope="module")
def ff(bridge):
    return bridge.to_torch()


def _walkers(system, n, scale=0.01, seed=0):
    rng = np.random.default_rng(seed)
    return torch.from_numpy(system.positions + scale * rng.standard_normal((n,) + system.positions.shape))


def test_to_torch_matches_the_bridge_batched(bridge, ff):
    assert ff.event_shape == (22, 3)
    assert ff.kT == pytest.approx(bridge.kT)
    np.testing.assert_array_equal(ff.masses, bridge.masses)
    assert ff.topology.n_atoms == 22 and ff.topology.n_residues == 3
    x = _walkers(bridge, 7)
    e, f = ff.energy_and_forces(x)
    e_ref, f_ref = bridge.energy_and_forces(x)
    assert e.shape == (7,) and f.shape == (7, 22, 3) and e.dtype == torch.float64
    np.testing.assert_allclose(e.numpy(), e_ref.numpy(), rtol=1e-10)
    np.testing.assert_allclose(f.numpy(), f_ref.numpy(), rtol=1e-8, atol=1e-8)


def test_float32_in_float32_out_and_initial_positions(ff):
    x = ff.initial_positions(3).float()
    e, f = ff.energy_and_forces(x)
    assert e.dtype == torch.float32 and f.dtype == torch.float32
    e64, _ = ff.energy_and_forces(x.double())
    np.testing.assert_allclose(e.double().numpy(), e64.numpy(), rtol=1e-5)
    with pytest.raises(ValueError, match=r"\(n_walkers, 22, 3\)"):
        ff.energy_and_forces(torch.zeros(3, 21, 3))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.cuda
def test_cuda_matches_cpu(ff):
    x = _walkers(ff, 64)
    e, f = ff.energy_and_forces(x.cuda())
    e0, f0 = ff.energy_and_forces(x)
    np.testing.assert_allclose(e.cpu().numpy(), e0.numpy(), rtol=1e-10)
    np.testing.assert_allclose(f.cpu().numpy(), f0.numpy(), rtol=1e-8, atol=1e-8)


def test_energy_is_differentiable_and_matches_forces(ff):
    x = _walkers(ff, 4).requires_grad_(True)
    e = ff.energy(x)
    (g,) = torch.autograd.grad(e.sum(), x)
    _, f = ff.energy_and_forces(x.detach())
    np.testing.assert_allclose(-g.numpy(), f.numpy(), rtol=1e-8, atol=1e-7)


def test_sum_with_a_learned_prior_in_one_graph(ff):
    """ff + 0.5·prior: energies and forces add; the prior's parameters get gradients."""

    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(66, 8), torch.nn.Tanh(),
                              torch.nn.Linear(8, 1), torch.nn.Flatten(0)).double()
    prior = lmd.systems.TorchEnergy(net, (22, 3), ff.kT, ff.masses)
    total = ff + 0.5 * prior
    x = _walkers(ff, 5)
    e, f = total.energy_and_forces(x)
    e_ff, f_ff = ff.energy_and_forces(x)
    e_p, f_p = prior.energy_and_forces(x)
    np.testing.assert_allclose(e.detach().numpy(), (e_ff + 0.5 * e_p).detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(f.detach().numpy(), (f_ff + 0.5 * f_p).detach().numpy(), rtol=1e-12, atol=1e-9)
    # one graph: U = ff + 0.5·prior differentiates to the summed forces and reaches the weights
    xg = x.clone().requires_grad_(True)
    u = ff.energy(xg) + 0.5 * net(xg)
    (g,) = torch.autograd.grad(u.sum(), xg, retain_graph=True)
    np.testing.assert_allclose(-g.numpy(), f.detach().numpy(), rtol=1e-8, atol=1e-7)
    u.sum().backward()
    assert net[1].weight.grad is not None and torch.isfinite(net[1].weight.grad).all()


def test_engine_rule():
    torch_ff = alanine_dipeptide("vacuum")
    assert isinstance(torch_ff, TorchForceField)
    assert type(alanine_dipeptide("vacuum", engine="openmm")).__name__ == "OpenMMSystem"
    # an OpenMM-only option selects the bridge under "auto"
    assert type(alanine_dipeptide("vacuum", platform="Reference")).__name__ == "OpenMMSystem"
    # constraints no longer need OpenMM: the torch force field carries the same list
    constrained = alanine_dipeptide("vacuum", constraints="HBonds")
    assert isinstance(constrained, TorchForceField) and constrained.constrained
    with pytest.raises(ValueError, match="engine must be one of"):
        alanine_dipeptide("vacuum", engine="gpu")


def test_auto_engine_keeps_the_bridge_for_unsupported_forces(bridge):
    bridge.openmm_system.addForce(openmm.AndersenThermostat(300.0, 1.0))
    try:
        assert choose_engine(bridge, "auto") == "openmm"
        with pytest.raises(ValueError, match="AndersenThermostat"):
            bridge.to_torch()
    finally:
        bridge.openmm_system.removeForce(bridge.openmm_system.getNumForces() - 1)


def test_samples_with_the_torch_executor(ff):
    # backend="auto" may run a force field compiled from an openmm.System on OpenMM: pinned here
    result = lmd.sample(ff, lmd.integrators.BAOAB(timestep=0.001, friction=1.0), n_steps=20, n_walkers=8,
                        record_every=10, seed=1, backend="torch")
    assert result.metadata["backend"] == "torch" and result.positions.shape == (2, 8, 22, 3)
    assert np.isfinite(result.energies).all()


# --------------------------------------------------------------------------- save / load
def test_save_load_roundtrip_without_openmm(tmp_path):
    """Saved with CMAP, GBSA and cutoff terms; loaded in a process where ``import openmm`` fails."""
    system, topology, positions = create_system("alanine", ("amber99sbildn.xml", "amber99_obc.xml"),
                                                "CutoffNonPeriodic", 0.6)
    cmap = openmm.CMAPTorsionForce()
    cmap.addMap(12, np.random.default_rng(0).normal(0.0, 3.0, 144))
    cmap.addTorsion(0, 4, 6, 8, 14, 6, 8, 14, 16)
    system.addForce(cmap)
    ff = TorchForceField.from_openmm(system, topology, positions, temperature=310.0)
    path = tmp_path / "ff.safetensors"
    ff.save(path)
    x = configurations(positions, 3, 0.01, 2)
    np.save(tmp_path / "x.npy", x)
    script = textwrap.dedent(f"""
        import sys
        sys.modules["openmm"] = None  # any import of openmm now raises ImportError
        import numpy as np, torch
        from langevin_md.systems import load_forcefield
        ff = load_forcefield({str(path)!r})
        assert "openmm" not in [m for m in sys.modules if sys.modules[m] is not None]
        e, f = ff.energy_and_forces(torch.from_numpy(np.load({str(tmp_path / 'x.npy')!r})))
        np.save({str(tmp_path / 'e.npy')!r}, e.numpy()); np.save({str(tmp_path / 'f.npy')!r}, f.numpy())
        print(ff.temperature, ff.topology.n_atoms, [t.kind for t in ff.module.terms])
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "310.0 22" in out.stdout and "cmap_torsion" in out.stdout and "gbsa_obc2" in out.stdout
    ref_e, ref_f = reference_energy_forces(system, x)
    e_err, f_err = errors(np.load(tmp_path / "e.npy"), np.load(tmp_path / "f.npy"), ref_e, ref_f)
    assert e_err < 1e-10 and f_err < 1e-10


def test_saved_file_has_no_pickle_and_loads_here(tmp_path, ff):
    path = tmp_path / "ala.safetensors"
    ff.save(path)
    data = path.read_bytes()
    assert b"__reduce__" not in data and not data.startswith(b"\x80")  # not a pickle stream
    loaded = load_forcefield(path)
    x = _walkers(ff, 3)
    np.testing.assert_array_equal(loaded.energy_and_forces(x)[0].numpy(), ff.energy_and_forces(x)[0].numpy())
    np.testing.assert_array_equal(loaded.initial_positions(2).numpy(), ff.initial_positions(2).numpy())
    bad = tmp_path / "bad.safetensors"
    from safetensors.torch import save_file

    save_file({"a": torch.zeros(1)}, str(bad))
    with pytest.raises(ValueError, match="not a langevin_md force field"):
        load_forcefield(bad)


@pytest.mark.slow
def test_torch_compile_of_the_whole_step(ff):
    """BAOAB + force field + prior compiled into one graph gives the eager trajectory."""
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(66, 8), torch.nn.Tanh(),
                              torch.nn.Linear(8, 1), torch.nn.Flatten(0)).double()
    system = ff + 0.1 * lmd.systems.TorchEnergy(net, (22, 3), ff.kT, ff.masses)
    kw = dict(n_steps=20, n_walkers=16, record_every=20, seed=3, dtype="float64")
    integrator = lmd.integrators.BAOAB(timestep=0.001, friction=1.0)
    eager = lmd.sample(system, integrator, **kw)
    compiled = lmd.sample(system, integrator, compile=True, **kw)
    np.testing.assert_allclose(compiled.positions, eager.positions, rtol=1e-9, atol=1e-9)


@pytest.mark.slow
def test_torch_compile_of_force_field_plus_prior(ff):
    dtype = torch.float64
    """torch.compile traces the force field and a prior together, with the eager numbers."""
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(66, 8), torch.nn.Tanh(),
                              torch.nn.Linear(8, 1), torch.nn.Flatten(0)).to(dtype)
    system = ff + 0.1 * lmd.systems.TorchEnergy(net, (22, 3), ff.kT, ff.masses)
    x = _walkers(ff, 32).to(dtype)
    compiled = torch.compile(system.energy_and_forces, dynamic=False)
    e, f = compiled(x)
    e0, f0 = system.energy_and_forces(x)
    tol = 1e-9 if dtype == torch.float64 else 1e-3
    np.testing.assert_allclose(e.detach().numpy(), e0.detach().numpy(), rtol=tol, atol=tol)
    np.testing.assert_allclose(f.detach().numpy(), f0.detach().numpy(), rtol=tol, atol=tol * 100)
