"""The batched torch force field, run by the torch executor's BAOAB, samples alanine dipeptide
like OpenMM's own ``LangevinMiddleIntegrator`` on the same openmm.System (issue 10, item 4).

Both sides integrate the same Langevin equation with the same splitting: OpenMM's
``LangevinMiddleIntegrator`` is the BAOAB ("middle") scheme (Zhang, Liu, Zhang & Leimkuhler,
J. Phys. Chem. A 123, 6056 (2019)), which is what ``lmd.integrators.BAOAB`` implements. Their
positions therefore follow the same discrete-time law, so they agree for *any* timestep, and at
every time after a common start, not only at equilibrium; what differs is only the evaluation of
U and F (torch vs OpenMM, checked to round-off in tests/forcefield) and which random numbers are
drawn. (Against the exact Boltzmann law both carry the same O(h²) configurational bias of
BAOAB, Leimkuhler & Matthews, AMRX 2013; at 1–2 fs it is far below the error bars here.)

Walkers start from the shipped C7eq structure with Maxwell–Boltzmann velocities; after a
burn-in, frames are recorded at matched times. Each compared quantity is a mean over
independent walkers of a per-walker time average, so its standard error is the spread across
walkers / √n_walkers and needs no autocorrelation model (the walkers are independent by
construction of the random streams; the OpenMM walkers share one Context whose noise stream
simply continues). The torch side uses many batched walkers, the OpenMM side a few
sequential ones.

Observables: ⟨U⟩ and the C7eq/β and αR populations (core-based assignment,
``lmd.analysis.assign_states``), in vacuum and in OBC2 implicit solvent; |z| <= 5 for the
two-sample difference. The same torch data must reject an OpenMM run at 360 K on ⟨U⟩
(|z| >= 10): ⟨U⟩ rises by ~12–15 kJ/mol, over ten standard errors. (The populations are not
used for that: in the few ps sampled here they move little with temperature.)
"""

import numpy as np
import openmm  # noqa: F401  (a hard dependency: a broken install fails here, not skips)
import pytest
from openmm import unit

import langevin_md as lmd
from langevin_md.analysis import ALANINE_DIPEPTIDE_STATES, assign_states, phi_psi, state_populations

from .stats import Z_MAX, walker_mean_and_se

pytestmark = pytest.mark.slow

T = 300.0          # K
WRONG_T = 360.0    # K
# A wrong temperature must be rejected by a wide margin: twice the agreement bound.
Z_WRONG_MIN = 2 * Z_MAX
STATES = {s.name: i for i, s in enumerate(ALANINE_DIPEPTIDE_STATES)}

# Per solvent: timestep (ps), friction (1/ps), burn-in and recording in steps, walkers of
# each side, and the OpenMM platform that is fastest for that System with one thread
# (Reference for the small vacuum System, CPU for the CustomGBForce of OBC2).
RUNS = {
    "vacuum": dict(timestep=0.002, friction=1.0, burn_in=500, n_frames=100, record_every=25,
                   torch_walkers=256, openmm_walkers=128, wrong_walkers=64, platform="Reference"),
    "implicit": dict(timestep=0.002, friction=5.0, burn_in=500, n_frames=40, record_every=25,
                     torch_walkers=64, openmm_walkers=16, wrong_walkers=12, platform="CPU"),
}


def openmm_langevin_middle(bridge, temperature, run, n_walkers, seed):
    """Raw OpenMM loop: LangevinMiddleIntegrator, ``n_walkers`` sequential walkers.

    Returns
    -------
    energies : numpy.ndarray, shape (n_frames, n_walkers)
        Potential energies in kJ/mol.
    phi, psi : numpy.ndarray, shape (n_frames, n_walkers)
        Backbone dihedrals in radians.
    """
    import mdtraj

    integrator = openmm.LangevinMiddleIntegrator(temperature * unit.kelvin, run["friction"] / unit.picosecond,
                                                 run["timestep"] * unit.picosecond)
    integrator.setRandomNumberSeed(seed)
    platform = openmm.Platform.getPlatformByName(run["platform"])
    properties = {"Threads": "1"} if run["platform"] == "CPU" else {}
    context = openmm.Context(bridge.openmm_system, integrator, platform, properties)
    n_frames = run["n_frames"]
    energies = np.empty((n_frames, n_walkers))
    xyz = np.empty((n_walkers, n_frames, bridge.positions.shape[0], 3))
    for w in range(n_walkers):
        context.setPositions(bridge.positions)
        context.setVelocitiesToTemperature(temperature * unit.kelvin, seed + 1 + w)
        integrator.step(run["burn_in"])
        for f in range(n_frames):
            integrator.step(run["record_every"])
            state = context.getState(getEnergy=True, getPositions=True)
            energies[f, w] = state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
            xyz[w, f] = state.getPositions(asNumpy=True).value_in_unit(unit.nanometer)
    phi, psi = phi_psi(mdtraj.Trajectory(xyz.reshape(-1, *xyz.shape[2:]), bridge.topology))
    return energies, phi.reshape(n_walkers, n_frames).T, psi.reshape(n_walkers, n_frames).T


def populations(phi, psi):
    """C7eq/β and αR populations with standard errors across walkers (dicts by state name)."""
    pops = state_populations(assign_states(phi, psi), n_states=len(ALANINE_DIPEPTIDE_STATES))
    return ({k: float(pops.populations[i]) for k, i in STATES.items()},
            {k: float(pops.standard_errors[i]) for k, i in STATES.items()})


def two_sample_z(a, se_a, b, se_b):
    return (a - b) / np.hypot(se_a, se_b)


@pytest.fixture(scope="module", params=sorted(RUNS))
def sampled(request):
    solvent = request.param
    run = RUNS[solvent]
    torch_ff = lmd.systems.alanine_dipeptide(solvent, temperature=T, engine="torch")
    bridge = lmd.systems.alanine_dipeptide(solvent, temperature=T, engine="openmm")
    r = lmd.sample(torch_ff, lmd.integrators.BAOAB(timestep=run["timestep"], friction=run["friction"]),
                   n_steps=run["n_frames"] * run["record_every"], n_walkers=run["torch_walkers"],
                   record_every=run["record_every"], burn_in=run["burn_in"], seed=0,
                   compile=False, threads=1)
    t_phi, t_psi = phi_psi(r)
    reference = openmm_langevin_middle(bridge, T, run, run["openmm_walkers"], seed=11)
    wrong = openmm_langevin_middle(bridge, WRONG_T, run, run["wrong_walkers"], seed=23)
    return solvent, (r.energies, t_phi, t_psi), reference, wrong


def test_mean_potential_energy_agrees_and_rejects_wrong_temperature(sampled):
    solvent, (u_t, _, _), (u_mm, _, _), (u_hot, _, _) = sampled
    mt, st = walker_mean_and_se(u_t)
    mm, sm = walker_mean_and_se(u_mm)
    mh, sh = walker_mean_and_se(u_hot)
    z = two_sample_z(mt, st, mm, sm)
    z_wrong = two_sample_z(mt, st, mh, sh)
    print(f"{solvent}: <U> torch {mt:.2f} ± {st:.2f}, OpenMM {mm:.2f} ± {sm:.2f} (z = {z:.2f}); "
          f"OpenMM {WRONG_T:g} K {mh:.2f} ± {sh:.2f} (z = {z_wrong:.1f}) kJ/mol")
    assert abs(z) <= Z_MAX, (solvent, mt, st, mm, sm, z)
    assert abs(z_wrong) >= Z_WRONG_MIN, (solvent, mt, st, mh, sh, z_wrong)


@pytest.mark.parametrize("state", ["C7eq/β", "αR"])
def test_state_populations_agree(sampled, state):
    solvent, (_, t_phi, t_psi), (_, m_phi, m_psi), _ = sampled
    p_t, se_t = populations(t_phi, t_psi)
    p_m, se_m = populations(m_phi, m_psi)
    z = two_sample_z(p_t[state], se_t[state], p_m[state], se_m[state])
    print(f"{solvent} {state}: torch {p_t[state]:.3f} ± {se_t[state]:.3f}, "
          f"OpenMM {p_m[state]:.3f} ± {se_m[state]:.3f} (z = {z:.2f})")
    # Both sides must actually resolve the state's population (not 0 ± 0 on one side).
    assert se_t[state] > 0 and se_m[state] > 0, (solvent, state, p_t, se_t, p_m, se_m)
    assert abs(z) <= Z_MAX, (solvent, state, p_t[state], se_t[state], p_m[state], se_m[state], z)
