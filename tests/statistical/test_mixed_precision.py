"""Mixed precision (float32 terms, float64 integrator state) against OpenMM and against float64.

The torch force field with ``precision="mixed"`` evaluates every term in float32 and hands
float64 energies and forces to a float64 integrator, as OpenMM's "mixed" does. These tests
run it where MD users do — alanine dipeptide, Amber ff14SB in vacuum, bonds to hydrogen
constrained, BAOAB at 2 fs — and compare with OpenMM's ``LangevinMiddleIntegrator`` (the same
scheme) on the same ``openmm.System``: ⟨U⟩, the C7eq/β and αR populations and the kinetic
temperature agree with |z| ≤ 5 (error bars as in ``test_constrained_md``), and the same data
reject OpenMM at a wrong temperature (360 K instead of 300 K; at 330 K these 64 walkers × 3 ps
give |z| ≈ 9, short of a wide margin). A frictionless run measures the
energy drift per ns, which must agree with the float64 run's from the same starts.
"""

import math

import numpy as np
import pytest

import langevin_md as lmd
from langevin_md.units import MOLAR_GAS_CONSTANT_KJ_PER_MOL_K as R

from .test_constrained_md import mean_and_se, observables, z

pytest.importorskip("openmm")
pytest.importorskip("mdtraj")

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::langevin_md.analysis.ShortChainWarning")]

Z_MAX = 5.0
TIMESTEP = 0.002     # ps
FRICTION = 5.0       # 1/ps
BURN_IN_PS = 1.0
PRODUCTION_PS = 3.0
RECORD_PS = 0.02
N_WALKERS = 64
WRONG_TEMPERATURE = 360.0


def run(system, backend, friction=FRICTION, n_walkers=N_WALKERS, production_ps=PRODUCTION_PS, burn_in_ps=BURN_IN_PS,
        seed=7):
    options = {"compile": False} if backend == "torch" else {}
    return lmd.sample(system, lmd.integrators.BAOAB(timestep=TIMESTEP, friction=friction),
                      n_steps=round(production_ps / TIMESTEP), burn_in=round(burn_in_ps / TIMESTEP),
                      n_walkers=n_walkers, record_every=max(1, round(RECORD_PS / TIMESTEP)), seed=seed,
                      backend=backend, **options)


def test_mixed_precision_agrees_with_openmm_and_rejects_a_wrong_temperature():
    bridge = lmd.systems.alanine_dipeptide(constraints="HBonds", engine="openmm")
    mixed = lmd.systems.alanine_dipeptide(constraints="HBonds", engine="torch", precision="mixed")
    assert mixed.precision == "mixed"
    hot = lmd.systems.alanine_dipeptide(constraints="HBonds", engine="openmm", temperature=WRONG_TEMPERATURE)
    runs = {"mixed": run(mixed, "torch"), "openmm": run(bridge, "openmm"), "openmm-wrong-T": run(hot, "openmm")}
    assert runs["mixed"].positions.dtype == np.float64  # the state stays float64
    obs = {k: observables(r, bridge.topology) for k, r in runs.items()}
    report = []
    for name in ("U", "C7eq/beta", "alphaR"):
        t, o = mean_and_se(obs["mixed"][name]), mean_and_se(obs["openmm"][name])
        report.append(f"{name}: mixed {t[0]:.4g} ± {t[1]:.2g}, openmm {o[0]:.4g} ± {o[1]:.2g}, z = {z(t, o):+.2f}")
        assert abs(z(t, o)) <= Z_MAX, "\n".join(report)

    dof_torch, dof_openmm = 3 * 22 - 12, 3 * 22 - 12 - 3  # OpenMM also removes the centre-of-mass motion

    def kinetic_temperature(k, dof):
        m, se = mean_and_se(k)
        return 2 * m / (dof * R), 2 * se / (dof * R)

    t_t = kinetic_temperature(runs["mixed"].kinetic_energies, dof_torch)
    t_o = kinetic_temperature(runs["openmm"].kinetic_energies, dof_openmm)
    report.append(f"T_kin: mixed {t_t[0]:.4g} ± {t_t[1]:.2g} K, openmm {t_o[0]:.4g} ± {t_o[1]:.2g} K, "
                  f"z = {z(t_t, t_o):+.2f}")
    assert abs(z(t_t, t_o)) <= Z_MAX, "\n".join(report)

    # known-wrong: OpenMM at 360 K; the same mixed data reject its ⟨U⟩ and kinetic temperature
    u_hot = mean_and_se(obs["openmm-wrong-T"]["U"])
    t_hot = kinetic_temperature(runs["openmm-wrong-T"].kinetic_energies, dof_openmm)
    z_u_hot, z_t_hot = z(mean_and_se(obs["mixed"]["U"]), u_hot), z(t_t, t_hot)
    report.append(f"vs OpenMM at {WRONG_TEMPERATURE:g} K: U z = {z_u_hot:+.1f}, T_kin z = {z_t_hot:+.1f}")
    assert abs(z_u_hot) > 10 and abs(z_t_hot) > 10, "\n".join(report)
    print("\n".join(report))


def test_mixed_precision_energy_drift_per_ns_matches_float64():
    """Frictionless BAOAB (velocity Verlet with RATTLE), 2 fs, HBonds: the total energy's
    drift per ns, a least-squares slope per walker, mixed against float64 from the same starts."""
    double = lmd.systems.alanine_dipeptide(constraints="HBonds", engine="torch")
    mixed = double.with_precision("mixed")
    n_walkers, production_ps = 32, 10.0
    slopes = {}
    for name, system in (("float64", double), ("mixed", mixed)):
        r = run(system, "torch", friction=0.0, n_walkers=n_walkers, production_ps=production_ps, burn_in_ps=0.0,
                seed=3)
        total = r.energies + r.kinetic_energies                               # (n_frames, n_walkers) kJ/mol
        t_ns = np.arange(total.shape[0]) * RECORD_PS * 1e-3
        slopes[name] = np.polyfit(t_ns, total, 1)[0]                           # (n_walkers,) kJ/mol/ns
    report = []
    for name, s in slopes.items():
        report.append(f"drift {name}: {s.mean():+.3g} ± {s.std(ddof=1) / math.sqrt(s.size):.2g} kJ/mol/ns "
                      f"(per walker sd {s.std(ddof=1):.2g})")
    d = slopes["mixed"] - slopes["float64"]
    z_d = d.mean() / (d.std(ddof=1) / math.sqrt(d.size))
    report.append(f"mixed − float64: {d.mean():+.3g} kJ/mol/ns, z = {z_d:+.2f}")
    assert abs(z_d) <= Z_MAX, "\n".join(report)
    # and the drift is small next to kT per ns (2.49 kJ/mol at 300 K)
    assert abs(slopes["mixed"].mean()) < 2.49, "\n".join(report)
    print("\n".join(report))
