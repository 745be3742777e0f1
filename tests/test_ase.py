"""ASE interoperability: our systems as ASE calculators and ASE calculators as systems.

Includes ASE's own Langevin dynamics driven by our calculator, compared statistically with our
BAOAB on the same Lennard-Jones cluster.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("ase")

from ase import Atoms, units  # noqa: E402
from ase.calculators.emt import EMT  # noqa: E402
from ase.calculators.lj import LennardJones  # noqa: E402

import langevin_md as lmd  # noqa: E402
from langevin_md.ase_interop import ASESystem, SystemCalculator, to_atoms, write_extxyz  # noqa: E402
from langevin_md.systems.lennard_jones import LennardJonesCluster  # noqa: E402
from langevin_md.units import KJ_PER_MOL_PER_EV, NM_PER_ANGSTROM  # noqa: E402


def _perturbed(system, seed=0, spread=0.05):
    rng = np.random.default_rng(seed)
    ref = system.reference_structure()
    return ref + spread * rng.normal(size=ref.shape)


def test_calculator_passes_reduced_units_through_and_forces_are_gradients():
    system = LennardJonesCluster(5, kT=0.1)
    x = _perturbed(system)
    atoms = to_atoms(system, x)
    atoms.calc = SystemCalculator(system)
    assert atoms.calc.units == "reduced"
    e, f = system.energy_and_forces(torch.as_tensor(x)[None])
    assert atoms.get_potential_energy() == pytest.approx(float(e[0]), rel=1e-14)
    np.testing.assert_allclose(atoms.get_forces(), f[0].numpy(), rtol=1e-13)
    from ase.calculators.fd import calculate_numerical_forces

    numeric = calculate_numerical_forces(atoms, eps=1e-5)
    np.testing.assert_allclose(atoms.get_forces(), numeric, atol=1e-6)


def test_calculator_converts_molecular_units():
    from langevin_md.systems.molecules import alanine_dipeptide

    system = alanine_dipeptide(platform="Reference")
    atoms = to_atoms(system, system.positions)
    assert np.allclose(atoms.positions, system.positions / NM_PER_ANGSTROM)  # nm -> Å
    atoms.calc = SystemCalculator(system)
    assert atoms.calc.units == "molecular"
    e, f = system.energy_and_forces(torch.as_tensor(system.positions)[None])
    assert atoms.get_potential_energy() * KJ_PER_MOL_PER_EV == pytest.approx(float(e[0]), rel=1e-12)
    # eV/Å -> kJ/(mol nm) is a factor 964.85
    np.testing.assert_allclose(atoms.get_forces() * KJ_PER_MOL_PER_EV / NM_PER_ANGSTROM, f[0].numpy(),
                               rtol=1e-10, atol=1e-9)


def test_ase_system_converts_ev_to_kj_per_mol_and_matches_our_lj():
    # Argon: ε = 0.0103 eV, σ = 3.405 Å; the same cluster natively in nm and kJ/mol.
    eps_ev, sigma_a = 0.0103, 3.405
    native = LennardJonesCluster(4, epsilon=eps_ev * KJ_PER_MOL_PER_EV, sigma=sigma_a * NM_PER_ANGSTROM,
                                 confinement="none")
    x_nm = _perturbed(native, spread=0.005)
    atoms = Atoms("Ar4", positions=x_nm / NM_PER_ANGSTROM)
    system = ASESystem(atoms, LennardJones(epsilon=eps_ev, sigma=sigma_a, rc=1000.0), temperature=100.0)
    assert system.event_shape == (4, 3) and system.kT == pytest.approx(0.8314462618)
    np.testing.assert_allclose(system.masses, atoms.get_masses())
    xs = torch.as_tensor(np.stack([x_nm, x_nm * 1.01]))
    e, f = system.energy_and_forces(xs)
    e_ref, f_ref = native.energy_and_forces(xs)
    np.testing.assert_allclose(e.numpy(), e_ref.numpy(), rtol=1e-9)
    np.testing.assert_allclose(f.numpy(), f_ref.numpy(), rtol=1e-8, atol=1e-8)


def test_round_trip_ase_calculator_through_our_system_and_back():
    atoms = Atoms("Cu4", positions=[[0, 0, 0], [2.5, 0, 0], [0, 2.5, 0], [0, 0, 2.5]])
    direct = atoms.copy()
    direct.calc = EMT()
    wrapped = atoms.copy()
    wrapped.calc = SystemCalculator(ASESystem(atoms, EMT(), temperature=300.0))
    assert wrapped.get_potential_energy() == pytest.approx(direct.get_potential_energy(), rel=1e-12)
    np.testing.assert_allclose(wrapped.get_forces(), direct.get_forces(), rtol=1e-10, atol=1e-12)


def test_our_sampler_on_an_ase_system_and_extxyz_export(tmp_path):
    import ase.io

    atoms = Atoms("Cu4", positions=[[0, 0, 0], [2.5, 0, 0], [0, 2.5, 0], [0, 0, 2.5]])
    system = ASESystem(atoms, EMT(), temperature=300.0)
    r = lmd.sample(system, lmd.integrators.BAOAB(timestep=0.002, friction=5.0), n_steps=20, n_walkers=2,
                   record_every=5, seed=0)
    assert np.isfinite(r.energies).all() and r.positions.shape == (4, 2, 4, 3)
    write_extxyz(r, 1, tmp_path / "w1.extxyz")
    frames = ase.io.read(tmp_path / "w1.extxyz", ":")
    assert [a.info["step"] for a in frames] == [5, 10, 15, 20]
    assert frames[0].get_chemical_symbols() == ["Cu"] * 4
    # extxyz stores 8 decimals
    np.testing.assert_allclose(frames[-1].positions, r.positions[-1, 1] / NM_PER_ANGSTROM, atol=1e-7)
    assert frames[-1].get_potential_energy() == pytest.approx(r.energies[-1, 1] / KJ_PER_MOL_PER_EV, rel=1e-7)


def test_ase_optimiser_finds_the_lj5_minimum_with_our_calculator():
    from ase.optimize import BFGS

    system = LennardJonesCluster(5, confinement="none")
    atoms = to_atoms(system, _perturbed(system, spread=0.1))
    atoms.calc = SystemCalculator(system)
    assert BFGS(atoms, logfile=None).run(fmax=1e-6, steps=500)
    assert atoms.get_potential_energy() == pytest.approx(system.minimum_energy, abs=1e-6)


def test_calculator_refuses_non_particle_systems():
    with pytest.raises(ValueError, match=r"event_shape \(n_atoms, 3\); Harmonic has \(2,\)"):
        SystemCalculator(lmd.systems.Harmonic(dim=2))


def _mean_and_se(series: np.ndarray) -> tuple[float, float]:
    """Mean of (n_steps, n_chains) and its standard error from the integrated autocorrelation time."""
    tau = float(np.max(np.atleast_1d(lmd.analysis.integrated_autocorrelation_time(series))))
    n = series.size
    return float(series.mean()), float(series.std(ddof=1) * np.sqrt(max(tau, 1.0) / n))


@pytest.fixture
def one_torch_thread():
    """Tiny tensors gain nothing from threads, and oversubscribed CPUs make them very slow."""
    from langevin_md.threads import torch_threads

    with torch_threads(1):
        yield


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::langevin_md.analysis.ShortChainWarning")
def test_ase_langevin_with_our_calculator_matches_our_baoab(one_torch_thread):
    """ASE's Langevin (driving our calculator) and our BAOAB sample the same energy law."""
    from ase.md.langevin import Langevin

    kT, dt, gamma = 0.1, 0.02, 5.0
    system = LennardJonesCluster(5, kT=kT)
    start = system.reference_structure()

    # ASE: independent chains from the minimum in reduced units (masses 1 amu, so ASE's time
    # unit is the reduced one; ASE reads reduced energies as eV and lengths as Å).
    n_chains, n_steps, burn = 3, 2200, 200
    ase_u = np.empty((n_steps + 1, n_chains))
    for c in range(n_chains):
        atoms = to_atoms(system, start)
        atoms.calc = SystemCalculator(system)
        dyn = Langevin(atoms, timestep=dt, temperature_K=kT / units.kB, friction=gamma, fixcm=False,
                       rng=np.random.default_rng(1000 + c))
        record = iter(range(n_steps + 1))
        dyn.attach(lambda: ase_u.__setitem__((next(record), c), atoms.get_potential_energy()), interval=1)
        dyn.run(n_steps)
    m_ase, se_ase = _mean_and_se(ase_u[burn + 1:])

    def ours(kT_run, n_steps):
        s = LennardJonesCluster(5, kT=kT_run)
        r = lmd.sample(s, lmd.integrators.BAOAB(timestep=dt, friction=gamma), n_steps=n_steps, burn_in=burn,
                       n_walkers=64, seed=11, initial_positions=start)
        return _mean_and_se(r.energies)

    m, se = ours(kT, 2000)
    z = (m_ase - m) / np.hypot(se_ase, se)
    assert abs(z) <= 5, (m_ase, se_ase, m, se)
    # The same ASE data reject a wrong temperature (kT off by a factor 2 either way) at more
    # than twice the acceptance bound.
    for wrong in (2 * kT, kT / 2):
        mw, sew = ours(wrong, 600)
        assert abs(m_ase - mw) / np.hypot(se_ase, sew) > 10, (wrong, m_ase, mw)
