"""Constrained alanine dipeptide: the torch executor against OpenMM (BAOAB = LangevinMiddleIntegrator).

Same ``openmm.System`` on both sides (Amber ff14SB in vacuum, bonds to hydrogen constrained,
optionally hydrogen masses repartitioned to 4 amu), same scheme (BAOAB as OpenMM's
``LangevinMiddleIntegrator``; OBABO as the OpenMM executor's CustomIntegrator), timestep and
friction, same start (the shipped C7eq structure). The torch side runs the batched torch force
field with SHAKE/RATTLE; the OpenMM side runs one Context per walker. Both are the same Markov
chain in law, so every average over the same window agrees: ⟨U⟩, the C7eq/β and αR
populations, and the kinetic temperature once each side's velocity degrees of freedom are
counted (torch: 3N − K; OpenMM also removes the centre-of-mass momentum: 3N − K − 3).

Error bars: sd·sqrt(τ/(n_frames·n_walkers)) with τ from
:func:`langevin_md.analysis.integrated_autocorrelation_time`, or the spread of the walkers'
own means if that is larger (walkers are independent, so this needs no autocorrelation model).

Known-wrong answers the same data reject:

* ⟨U⟩ of flexible bonds to hydrogen: each of the K constrained bonds would add kT/2 of
  harmonic energy (equipartition), +15 kJ/mol here;
* a kinetic temperature from 3N degrees of freedom (constraints not counted), 18 % low; this
  is also what step-end velocities with unprojected normal components would show.
"""

import math

import numpy as np
import pytest

import langevin_md as lmd
from langevin_md.analysis.thermo import degrees_of_freedom
from langevin_md.integrators.constraints import constraints_of
from langevin_md.units import MOLAR_GAS_CONSTANT_KJ_PER_MOL_K as R

pytest.importorskip("openmm")
pytest.importorskip("mdtraj")

# each chain is short next to τ (150 frames, τ ≈ 6): the τ-based error is then flagged as
# possibly small, which is why mean_and_se also takes the spread across independent walkers
pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::langevin_md.analysis.ShortChainWarning")]

Z_MAX = 5.0
FRICTION = 5.0      # 1/ps: equilibrates the energy of the minimised start within ~1 ps
BURN_IN_PS = 1.0
PRODUCTION_PS = 3.0
RECORD_PS = 0.02
N_WALKERS = 64


def dihedral(x, idx):
    """Dihedral angle in degrees of atoms ``idx`` over frames and walkers, x: (..., n_atoms, 3)."""
    b0 = x[..., idx[0], :] - x[..., idx[1], :]
    b1 = x[..., idx[2], :] - x[..., idx[1], :]
    b2 = x[..., idx[3], :] - x[..., idx[2], :]
    b1 = b1 / np.linalg.norm(b1, axis=-1, keepdims=True)
    v = b0 - (b0 * b1).sum(-1, keepdims=True) * b1
    w = b2 - (b2 * b1).sum(-1, keepdims=True) * b1
    return np.degrees(np.arctan2((np.cross(b1, v) * w).sum(-1), (v * w).sum(-1)))


def observables(result, topology):
    """⟨U⟩ series and basin indicators, each (n_frames, n_walkers)."""
    import mdtraj

    frame = mdtraj.Trajectory(result.positions[0, :1], topology)
    phi_idx = mdtraj.compute_phi(frame)[0][0]
    psi_idx = mdtraj.compute_psi(frame)[0][0]
    phi = dihedral(result.positions, phi_idx)
    psi = dihedral(result.positions, psi_idx)
    alpha_r = (phi < 0) & (psi > -120) & (psi < 50)
    c7eq_beta = (phi < 0) & ~alpha_r
    return {"U": result.energies, "alphaR": alpha_r.astype(float), "C7eq/beta": c7eq_beta.astype(float)}


def mean_and_se(series):
    """Mean and standard error of a (n_frames, n_walkers) series (see the module docstring)."""
    x = np.asarray(series, dtype=np.float64)
    tau = lmd.analysis.integrated_autocorrelation_time(x)
    se_tau = x.std() * math.sqrt(max(tau, 1.0) / x.size)
    se_walkers = x.mean(0).std(ddof=1) / math.sqrt(x.shape[1])
    return float(x.mean()), float(max(se_tau, se_walkers))


def z(a, b):
    return (a[0] - b[0]) / math.hypot(a[1], b[1])


@pytest.fixture(scope="module")
def hbonds():
    return lmd.systems.alanine_dipeptide(constraints="HBonds", engine="openmm")


@pytest.mark.parametrize("scheme,timestep,hydrogen_mass", [
    (lmd.integrators.BAOAB, 0.002, None), (lmd.integrators.BAOAB, 0.004, 4.0), (lmd.integrators.OBABO, 0.002, None)],
    ids=["BAOAB-2fs-HBonds", "BAOAB-4fs-HBonds-HMR", "OBABO-2fs-HBonds"])
def test_torch_executor_agrees_with_openmm(hbonds, scheme, timestep, hydrogen_mass):
    from langevin_md.systems.hmr import with_hydrogen_mass

    bridge = hbonds if hydrogen_mass is None else with_hydrogen_mass(hbonds, hydrogen_mass)
    ff = bridge.to_torch()
    constraints = constraints_of(ff)
    assert constraints is not None and len(constraints) == bridge.openmm_system.getNumConstraints() == 12
    np.testing.assert_array_equal(ff.masses, bridge.masses)

    # BAOAB runs as OpenMM's LangevinMiddleIntegrator, OBABO as a CustomIntegrator
    integrator = scheme(timestep=timestep, friction=FRICTION)
    runs = {}
    for backend, system in (("torch", ff), ("openmm", bridge)):
        # the OpenMM executor has no compile option; torch runs eagerly (short run)
        options = {"compile": False} if backend == "torch" else {}
        runs[backend] = lmd.sample(
            system, integrator, n_steps=round(PRODUCTION_PS / timestep), burn_in=round(BURN_IN_PS / timestep),
            n_walkers=N_WALKERS, record_every=max(1, round(RECORD_PS / timestep)), seed=7, backend=backend,
            **options)

    obs = {k: observables(r, bridge.topology) for k, r in runs.items()}
    report = []
    for name in ("U", "C7eq/beta", "alphaR"):
        t, o = mean_and_se(obs["torch"][name]), mean_and_se(obs["openmm"][name])
        report.append(f"{name}: torch {t[0]:.4g} ± {t[1]:.2g}, openmm {o[0]:.4g} ± {o[1]:.2g}, z = {z(t, o):+.2f}")
        assert abs(z(t, o)) <= Z_MAX, "\n".join(report)
    # both basins are really visited, so the populations test something
    assert 0.1 < mean_and_se(obs["openmm"]["alphaR"])[0] < 0.9

    # known-wrong: flexible bonds to hydrogen would hold K·kT/2 more potential energy
    t_u, o_u = mean_and_se(obs["torch"]["U"]), mean_and_se(obs["openmm"]["U"])
    wrong_u = (o_u[0] + 0.5 * len(constraints) * bridge.kT, o_u[1])
    assert abs(z(t_u, wrong_u)) > 10, report

    # kinetic temperature with each executor's own velocity degrees of freedom
    n_atoms = bridge.event_shape[0]
    dof_torch = 3 * n_atoms - len(constraints)              # no centre-of-mass removal in torch
    dof_openmm = degrees_of_freedom(bridge.openmm_system)   # OpenMM's CMMotionRemover takes 3 more
    assert (dof_torch, dof_openmm) == (54, 51)

    def kinetic_temperature(k, dof):
        m, se = mean_and_se(k)
        return 2 * m / (dof * R), 2 * se / (dof * R)

    t_t = kinetic_temperature(runs["torch"].kinetic_energies, dof_torch)
    t_o = kinetic_temperature(runs["openmm"].kinetic_energies, dof_openmm)
    report.append(f"T_kin: torch {t_t[0]:.4g} ± {t_t[1]:.2g} K, openmm {t_o[0]:.4g} ± {t_o[1]:.2g} K, z = {z(t_t, t_o):+.2f}")
    assert abs(z(t_t, t_o)) <= Z_MAX, "\n".join(report)
    if scheme is lmd.integrators.OBABO:
        # OBABO ends on a full O step: its step-end velocities are thermal (exact on a
        # harmonic well), so the kinetic temperature is the thermostat's
        z_300 = (t_t[0] - bridge.temperature) / t_t[1]
        report.append(f"T_kin torch vs {bridge.temperature:g} K: z = {z_300:+.2f}")
        assert abs(z_300) <= Z_MAX, "\n".join(report)
    else:
        # BAOAB's step-end velocities run a little cold at finite h (on a harmonic mode by the
        # factor 1 − h²ω²/4), the same on both sides; the thermostat's 300 K is near, not exact
        assert 0.85 * 300 < t_t[0] < 1.01 * 300, report
    # known-wrong: 3N degrees of freedom (constraints not counted) is 18 % colder
    wrong = kinetic_temperature(runs["torch"].kinetic_energies, 3 * n_atoms)
    assert abs(z(wrong, t_o)) > 10, report
    print("\n".join(report))
