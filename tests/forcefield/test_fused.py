"""The fused numba kernels equal the torch terms (1e-12, float64) and OpenMM Reference.

The torch terms are the exact, differentiable reference; ``kernels="torch"`` must reproduce
them bit for bit, and the default (``"auto"``) must use the kernels only where they apply
(CPU, no gradient) and leave every term they do not recognise to torch.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from langevin_md.forcefield.fused import fusable_kinds
from langevin_md.systems import TorchForceField
from langevin_md.threads import torch_threads
from tests.forcefield.helpers import alanine, configurations, create_system, errors, reference_energy_forces

openmm = pytest.importorskip("openmm")
pytest.importorskip("numba")

EXACT = 1e-12  # fused against torch, float64, relative
TOL = 1e-6  # against OpenMM Reference, as tests/forcefield/test_standard_forces.py

SOLVENTS = {"vacuum": ("amber14-all.xml",), "obc2": ("amber14-all.xml", "implicit/obc2.xml")}


@pytest.fixture(scope="session")
def alanine_systems():
    """{solvent: (openmm.System, TorchForceField, configurations (6, 22, 3) nm)}."""
    out = {}
    for name, files in SOLVENTS.items():
        system, _, positions = create_system("alanine", files)
        # the structure, small perturbations, and large ones (atoms inside others' GB spheres)
        x = np.concatenate([configurations(positions, 3, 0.01, seed=1), configurations(positions, 2, 0.05, seed=2)[1:]])
        out[name] = (system, TorchForceField.from_openmm(system, temperature=300.0), x)
    return out


def _relative(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.abs(a - b).max() / np.abs(b).max())


@pytest.mark.parametrize("solvent", list(SOLVENTS))
def test_fused_equals_torch_terms_in_float64(alanine_systems, solvent):
    _, ff, x = alanine_systems[solvent]
    xt = torch.tensor(x)
    fused = ff.with_kernels("fused")
    e, f = fused.energy_and_forces(xt)
    assert fused.kernels_used == "fused"
    e0, f0 = ff.module(xt)  # the torch terms themselves
    assert _relative(e, e0) < EXACT and _relative(f, f0) < EXACT, (_relative(e, e0), _relative(f, f0))
    # every term of alanine dipeptide (amber14, with or without OBC2) has a kernel
    assert len(fusable_kinds(ff.module)) == len(ff.module.terms)


@pytest.mark.parametrize("solvent", list(SOLVENTS))
def test_fused_equals_openmm_reference(alanine_systems, solvent):
    system, ff, x = alanine_systems[solvent]
    e, f = ff.with_kernels("fused").energy_and_forces(torch.tensor(x))
    e_err, f_err = errors(e.numpy(), f.numpy(), *reference_energy_forces(system, x))
    assert e_err < TOL and f_err < TOL, (e_err, f_err)


def test_float32_kernels_are_close(alanine_systems):
    _, ff, x = alanine_systems["obc2"]
    e0, f0 = ff.module(torch.tensor(x))
    fused = ff.with_kernels("fused")
    e, f = fused.energy_and_forces(torch.tensor(x, dtype=torch.float32))
    assert e.dtype == torch.float32 and fused.kernels_used == "fused"
    assert _relative(e, e0) < 1e-5 and _relative(f, f0) < 1e-5
    mixed = fused.with_precision("mixed")  # float32 evaluation, float64 results
    e, f = mixed.energy_and_forces(torch.tensor(x))
    assert e.dtype == torch.float64 and _relative(f, f0) < 1e-5


def test_results_do_not_depend_on_threads(alanine_systems):
    _, ff, x = alanine_systems["obc2"]
    xt = torch.tensor(np.repeat(x, 8, axis=0))  # 48 walkers
    fused = ff.with_kernels("fused")
    with torch_threads(1):  # serial driver, numba's pool unused
        e1, f1 = fused.energy_and_forces(xt)
    with torch_threads(2):
        e2, f2 = fused.energy_and_forces(xt)
    assert torch.equal(e1, e2) and torch.equal(f1, f2)


def test_numba_threads_follow_torch():
    import numba

    from langevin_md.forcefield.fused.module import numba_threads

    with torch_threads(1):
        assert numba_threads(1000) == 1
    with torch_threads(2):
        assert numba_threads(1) == 1  # one walker: no pool
        assert numba_threads(1000) == min(2, numba.config.NUMBA_NUM_THREADS)


def test_auto_uses_kernels_only_without_gradients(alanine_systems):
    _, ff, x = alanine_systems["vacuum"]
    assert ff.kernels == "auto"
    xt = torch.tensor(x)
    ff.energy_and_forces(xt)
    assert ff.kernels_used == "fused"
    xg = xt.clone().requires_grad_(True)
    ff.energy_and_forces(xg)
    assert ff.kernels_used == "torch"
    # energy() stays the differentiable torch path
    (grad,) = torch.autograd.grad(ff.energy(xg).sum(), xg)
    _, f0 = ff.module(xt)
    assert torch.allclose(-grad, f0, rtol=1e-10, atol=1e-8)


def test_torch_kernels_reproduce_the_torch_path_bitwise(alanine_systems):
    _, ff, x = alanine_systems["obc2"]
    xt = torch.tensor(x)
    torch_ff = ff.with_kernels("torch")
    e, f = torch_ff.energy_and_forces(xt)
    e0, f0 = ff.module(xt)
    assert torch_ff.kernels_used == "torch" and torch.equal(e, e0) and torch.equal(f, f0)


@pytest.mark.parametrize("options, fused", [
    ({"implicitSolventKappa": 1.0}, False),  # salt: exp(-kappa*f) in the expressions, not recognised
    ({"sasaMethod": None, "solventDielectric": 80.0, "soluteDielectric": 2.0}, True),  # no ACE term
], ids=["salt-stays-in-torch", "no-surface-term-fused"])
def test_obc2_variants(options, fused):
    """Only the exact OBC2 expressions are fused; anything else is evaluated by the torch term."""
    from openmm import app

    topology, positions = alanine()
    system = app.ForceField("amber14-all.xml", "implicit/obc2.xml").createSystem(
        topology, nonbondedMethod=app.NoCutoff, constraints=None, **options)
    ff = TorchForceField.from_openmm(system, temperature=300.0)
    assert ("custom_gb" in fusable_kinds(ff.module)) == fused
    x = configurations(positions, 2, 0.01, seed=3)
    e, f = ff.energy_and_forces(torch.tensor(x))
    assert ff.kernels_used == "fused"  # the other terms still are
    e0, f0 = ff.module(torch.tensor(x))
    assert _relative(e, e0) < EXACT and _relative(f, f0) < EXACT
    e_err, f_err = errors(e.numpy(), f.numpy(), *reference_energy_forces(system, x))
    assert e_err < TOL and f_err < TOL, (e_err, f_err)


def test_cutoff_pairs_stay_in_torch():
    system, _, positions = create_system("alanine", ("amber14-all.xml",), "CutoffNonPeriodic", 0.6)
    ff = TorchForceField.from_openmm(system, temperature=300.0)
    assert "lj_coulomb_pairs" not in fusable_kinds(ff.module)
    x = configurations(positions, 2, 0.01, seed=4)
    e, f = ff.energy_and_forces(torch.tensor(x))
    e0, f0 = ff.module(torch.tensor(x))
    assert _relative(e, e0) < EXACT and _relative(f, f0) < EXACT


def test_bad_kernels_are_refused_by_name(alanine_systems):
    _, ff, _ = alanine_systems["vacuum"]
    with pytest.raises(ValueError, match="'numba-gpu'"):
        ff.with_kernels("numba-gpu")


def test_torch_compile_traces_the_torch_terms(alanine_systems):
    """Inside torch.compile the torch terms are traced (a numba call would break the graph)."""
    _, ff, x = alanine_systems["vacuum"]
    xt = torch.tensor(x)
    compiled = torch.compile(ff.energy_and_forces, backend="eager", fullgraph=True)
    e, f = compiled(xt)
    e0, f0 = ff.module(xt)
    assert torch.allclose(e, e0, rtol=1e-12, atol=0) and torch.allclose(f, f0, rtol=0, atol=1e-12 * f0.abs().max())


def test_cmap_and_a_second_torsion_force():
    """ff19SB's CMAP stays in torch; two PeriodicTorsionForces of different orders are packed together."""
    system, _, positions = create_system("alanine", ("amber19-all.xml",))
    extra = openmm.PeriodicTorsionForce()
    extra.addTorsion(4, 6, 8, 14, 6, 0.3, 1.5)  # periodicity 6: longer than any of ff19SB's
    extra.addTorsion(6, 8, 14, 16, 1, -0.7, 2.0)
    system.addForce(extra)
    ff = TorchForceField.from_openmm(system, temperature=300.0)
    kinds = fusable_kinds(ff.module)
    cmap = [t.kind for t in ff.module.terms if "cmap" in t.kind]
    assert cmap and not set(cmap) & set(kinds) and kinds.count("periodic_torsion") == 2
    x = configurations(positions, 2, 0.01, seed=5)
    e, f = ff.energy_and_forces(torch.tensor(x))
    assert ff.kernels_used == "fused"
    e0, f0 = ff.module(torch.tensor(x))
    assert _relative(e, e0) < EXACT and _relative(f, f0) < EXACT
    e_err, f_err = errors(e.numpy(), f.numpy(), *reference_energy_forces(system, x))
    assert e_err < TOL and f_err < TOL, (e_err, f_err)


def test_fused_force_field_refuses_other_dtypes(alanine_systems):
    from langevin_md.forcefield.fused.module import FusedForceField

    _, ff, x = alanine_systems["vacuum"]
    fused = FusedForceField(ff.module)
    with pytest.raises(ValueError, match="torch.float32"):
        fused(torch.tensor(x, dtype=torch.float32))
    with pytest.raises(TypeError, match="ForceFieldModule"):
        FusedForceField(ff)


def test_vectorisable_angle_is_atan2_to_three_ulp():
    """bonded.angle_of replaces libm's atan2 in the angle kernel; every branch of its reduction
    (y ≤ |x| or not, t above tan(π/8) or not, x < 0) within 3 ulp over twelve decades."""
    import math

    from langevin_md.forcefield.fused.bonded import angle_of

    rng = np.random.default_rng(7)
    y = np.abs(rng.normal(size=20000)) * 10.0 ** rng.uniform(-4, 4, 20000)
    x = rng.normal(size=20000) * 10.0 ** rng.uniform(-4, 4, 20000)
    y = np.concatenate([y, [0.0, 1.0, 1.0, 1.0, 0.41421356237309503, 1e-300]])
    x = np.concatenate([x, [1.0, 0.0, 1.0, -1.0, 1.0, -1.0]])
    got = np.array([angle_of(a, b) for a, b in zip(y, x)])
    want = np.array([math.atan2(a, b) for a, b in zip(y, x)])
    ulp = np.abs(got - want) / np.spacing(np.maximum(np.abs(want), 1e-300))
    assert ulp.max() <= 3.0
