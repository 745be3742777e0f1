"""OpenMMSystem: energies and forces against raw OpenMM Contexts, −∇U, batching, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

openmm = pytest.importorskip("openmm")
from openmm import app, unit  # noqa: E402

from langevin_md.systems.molecules import (  # noqa: E402
    ALANINE_DIPEPTIDE_PDB,
    CATALOGUE,
    alanine_dipeptide,
    list_systems,
)
from langevin_md.systems.openmm_system import OpenMMSystem  # noqa: E402
from langevin_md.systems.platforms import available_platforms  # noqa: E402
from langevin_md.units import kT_from_temperature  # noqa: E402

HAVE_OPENCL = "OpenCL" in available_platforms()
opencl = [
    pytest.mark.opencl,
    pytest.mark.skipif(not HAVE_OPENCL, reason="OpenMM's OpenCL platform is not available (no OpenCL ICD/PoCL)"),
]
FORCEFIELDS = {"vacuum": ("amber14-all.xml",), "implicit": ("amber14-all.xml", "implicit/obc2.xml")}
# Raw-Context settings per platform; OpenCL in double so the comparison is tight.
PLATFORMS = [
    pytest.param("Reference", None, id="Reference"),
    pytest.param("CPU", None, id="CPU"),
    pytest.param("OpenCL", "double", id="OpenCL", marks=opencl),
]


def _pdb():
    return app.PDBFile(ALANINE_DIPEPTIDE_PDB)


def _raw_context(solvent, platform, precision):
    """A Context built by hand, the way an OpenMM user would, without our code."""
    pdb = _pdb()
    system = app.ForceField(*FORCEFIELDS[solvent]).createSystem(pdb.topology, nonbondedMethod=app.NoCutoff)
    props = {} if precision is None else {"Precision": precision}
    return openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName(platform), props)


def _raw_energy_forces(context, positions_nm):
    energies, forces = [], []
    for pos in positions_nm:
        context.setPositions(pos * unit.nanometer)
        state = context.getState(getEnergy=True, getForces=True)
        energies.append(state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole))
        forces.append(state.getForces(asNumpy=True).value_in_unit(unit.kilojoule_per_mole / unit.nanometer))
    return np.array(energies), np.array(forces)


def _walkers(system, n, scale=0.005, seed=0):
    rng = np.random.default_rng(seed)
    x0 = system.positions
    return torch.from_numpy(x0 + scale * rng.standard_normal((n,) + x0.shape))


@pytest.fixture(scope="module")
def reference_systems():
    return {s: alanine_dipeptide(s, platform="Reference") for s in ("vacuum", "implicit")}


# --------------------------------------------------------------------------- against raw OpenMM
@pytest.mark.parametrize("solvent", ["vacuum", "implicit"])
@pytest.mark.parametrize("platform, precision", PLATFORMS)
def test_matches_raw_context(solvent, platform, precision, reference_systems):
    system = alanine_dipeptide(solvent, platform=platform, precision=precision)
    assert system.platform_name == platform
    x = _walkers(system, 3)
    energy, forces = system.energy_and_forces(x)
    raw_e, raw_f = _raw_energy_forces(_raw_context(solvent, platform, precision), x.numpy())
    assert energy.shape == (3,) and forces.shape == (3, 22, 3)
    if platform == "Reference":  # deterministic double precision: the same numbers
        np.testing.assert_allclose(energy.numpy(), raw_e, rtol=1e-12, atol=1e-9)
        np.testing.assert_allclose(forces.numpy(), raw_f, rtol=1e-12, atol=1e-9)
    else:  # multi-threaded/parallel summation order differs between two Contexts
        np.testing.assert_allclose(energy.numpy(), raw_e, rtol=1e-6, atol=1e-4)
        np.testing.assert_allclose(forces.numpy(), raw_f, rtol=1e-5, atol=1e-5 * np.abs(raw_f).max())
    # and every platform agrees with Reference (double) to its precision
    ref_e, ref_f = reference_systems[solvent].energy_and_forces(x)
    np.testing.assert_allclose(energy.numpy(), ref_e.numpy(), atol=1e-2)
    scale = np.abs(ref_f.numpy()).max()
    np.testing.assert_allclose(forces.numpy(), ref_f.numpy(), atol=1e-4 * scale)


@pytest.mark.parametrize("solvent", ["vacuum", "implicit"])
def test_forces_are_minus_gradient(solvent, reference_systems):
    system = reference_systems[solvent]
    x0 = _walkers(system, 1, scale=0.01, seed=1)
    _, f0 = system.energy_and_forces(x0)
    rng = np.random.default_rng(2)
    h = 1e-5  # nm; central differences in float64 on the double-precision Reference platform
    coords = [(int(rng.integers(22)), int(rng.integers(3))) for _ in range(6)]
    batch = x0.repeat(2 * len(coords), 1, 1)
    for k, (i, d) in enumerate(coords):
        batch[2 * k, i, d] += h
        batch[2 * k + 1, i, d] -= h
    e = system.energy(batch).numpy()
    fd = -(e[0::2] - e[1::2]) / (2 * h)
    analytic = np.array([f0[0, i, d].item() for i, d in coords])
    np.testing.assert_allclose(analytic, fd, rtol=1e-5, atol=1e-3)


def test_batched_walkers_are_independent(reference_systems):
    system = reference_systems["vacuum"]
    x = _walkers(system, 5, scale=0.01, seed=3)
    energy, forces = system.energy_and_forces(x)
    assert len(set(np.round(energy.numpy(), 8))) == 5
    for i in range(5):
        e_i, f_i = system.energy_and_forces(x[i : i + 1])
        assert e_i.item() == energy[i].item()
        assert torch.equal(f_i[0], forces[i])
    # returned tensors are fresh: a later call does not overwrite earlier results
    kept = forces.clone()
    system.energy_and_forces(_walkers(system, 5, seed=4))
    assert torch.equal(kept, forces)


def test_dtype_and_nonfinite_walkers(reference_systems):
    system = reference_systems["vacuum"]
    x = _walkers(system, 3)
    e32, f32 = system.energy_and_forces(x.float())
    assert e32.dtype == torch.float32 and f32.dtype == torch.float32
    x[1, 4, 0] = float("nan")
    energy, forces = system.energy_and_forces(x)
    assert torch.isnan(energy[1]) and torch.isnan(forces[1]).all()
    assert torch.isfinite(energy[[0, 2]]).all() and torch.isfinite(forces[[0, 2]]).all()


def test_attributes(reference_systems):
    system = reference_systems["vacuum"]
    assert system.event_shape == (22, 3)
    assert system.kT == pytest.approx(kT_from_temperature(300.0))
    assert system.masses.shape == (22,) and system.masses.dtype == np.float64
    assert system.masses.sum() == pytest.approx(144.17, abs=0.05)  # C6H12N2O2 (with H = 1.008)
    assert system.topology.n_atoms == 22 and system.topology.n_residues == 3
    assert not system.constrained
    assert system.positions.shape == (22, 3)
    x = system.initial_positions(4, None)
    assert x.shape == (4, 22, 3) and x.dtype == torch.float64 and x.device.type == "cpu"
    assert torch.equal(x[3], torch.from_numpy(system.positions))
    warm = alanine_dipeptide("vacuum", temperature=350.0 * unit.kelvin, platform="Reference")
    assert warm.kT == pytest.approx(kT_from_temperature(350.0))


def test_make_context_and_constraints():
    system = alanine_dipeptide("vacuum", platform="CPU", constraints="HBonds")
    assert system.constrained
    context = system.make_context(openmm.VerletIntegrator(0.001))
    assert context.getPlatform().getName() == "CPU"
    e = context.getState(getEnergy=True).getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
    assert e == pytest.approx(system.energy(system.initial_positions(1)).item(), abs=1e-3)


def test_from_xml_round_trip(tmp_path, reference_systems):
    ref = reference_systems["implicit"]
    path = tmp_path / "system.xml"
    path.write_text(openmm.XmlSerializer.serialize(ref.openmm_system))
    loaded = OpenMMSystem.from_xml(path, ALANINE_DIPEPTIDE_PDB, platform="Reference")
    x = _walkers(ref, 2)
    np.testing.assert_array_equal(loaded.energy(x).numpy(), ref.energy(x).numpy())
    pdb = _pdb()
    via_topology = OpenMMSystem.from_xml(path, pdb.topology, positions=pdb.positions, platform="Reference")
    assert via_topology.event_shape == (22, 3)
    with pytest.raises(ValueError, match="positions are required"):
        OpenMMSystem.from_xml(path, pdb.topology, platform="Reference")


def test_catalogue():
    names = [name for name, _ in list_systems()]
    assert {"alanine_dipeptide_vacuum", "alanine_dipeptide_implicit", "lj_fluid"} <= set(names)
    lj = CATALOGUE["lj_fluid"].factory(temperature=120.0, platform="Reference")
    e, f = lj.energy_and_forces(lj.initial_positions(1))
    assert lj.event_shape == (125, 3) and torch.isfinite(e).all()
    assert torch.allclose(f.sum(dim=1), torch.zeros(1, 3, dtype=f.dtype), atol=1e-6)  # Newton's third law


# --------------------------------------------------------------------------- bad input
def _raw_vacuum_system():
    pdb = _pdb()
    return app.ForceField("amber14-all.xml").createSystem(pdb.topology, nonbondedMethod=app.NoCutoff), pdb


def test_count_mismatch_names_both_counts():
    system, pdb = _raw_vacuum_system()
    positions = np.asarray(pdb.positions.value_in_unit(unit.nanometer))[:21]
    with pytest.raises(ValueError, match=r"21 particles.*22"):
        OpenMMSystem(system, pdb.topology, positions, platform="Reference")
    system.addParticle(1.0)
    with pytest.raises(ValueError, match=r"22 atoms.*23 particles"):
        OpenMMSystem(system, pdb.topology, pdb.positions, platform="Reference")


def test_angstrom_positions_detected():
    system, pdb = _raw_vacuum_system()
    angstrom = np.asarray(pdb.positions.value_in_unit(unit.angstrom))
    with pytest.raises(ValueError, match="ångström.*divide by 10"):
        OpenMMSystem(system, pdb.topology, angstrom, platform="Reference")
    # the same numbers as a Quantity in Å are converted, not refused
    ok = OpenMMSystem(system, pdb.topology, angstrom * unit.angstrom, platform="Reference")
    np.testing.assert_allclose(ok.positions, angstrom / 10)


def test_missing_template_names_residues(tmp_path):
    pdb = _pdb()
    modeller = app.Modeller(pdb.topology, pdb.positions)
    modeller.delete([a for a in modeller.topology.atoms() if a.element.symbol == "H"])
    path = tmp_path / "no_hydrogens.pdb"
    with open(path, "w") as fh:
        app.PDBFile.writeFile(modeller.topology, modeller.positions, fh)
    with pytest.raises(ValueError, match="no template for residue") as info:
        OpenMMSystem.from_pdb(path, forcefield=("amber14-all.xml",), platform="Reference")
    for name in ("ACE", "ALA", "NME"):
        assert name in str(info.value)
    assert "addHydrogens" in str(info.value)


SCRIPT_FF = """<ForceField>
 <Script>
pass  # OpenMM exec()s this text
 </Script>
</ForceField>
"""


def test_script_in_forcefield_refused_unless_trusted(tmp_path):
    script = tmp_path / "script.xml"
    script.write_text(SCRIPT_FF)
    with pytest.raises(ValueError, match="Script.*trusted=True"):
        OpenMMSystem.from_pdb(ALANINE_DIPEPTIDE_PDB, forcefield=("amber14-all.xml", str(script)), platform="Reference")
    # an innocent-looking file that includes the scripted one is refused too
    wrapper = tmp_path / "wrapper.xml"
    wrapper.write_text('<ForceField>\n <Include file="script.xml"/>\n</ForceField>\n')
    with pytest.raises(ValueError, match="script.xml"):
        OpenMMSystem.from_pdb(ALANINE_DIPEPTIDE_PDB, forcefield=("amber14-all.xml", str(wrapper)), platform="Reference")
    ok = OpenMMSystem.from_pdb(
        ALANINE_DIPEPTIDE_PDB, forcefield=("amber14-all.xml", str(script)), platform="Reference", trusted=True
    )
    assert ok.event_shape == (22, 3)


def test_script_in_serialized_system_refused(tmp_path, reference_systems):
    text = openmm.XmlSerializer.serialize(reference_systems["vacuum"].openmm_system)
    path = tmp_path / "system.xml"
    path.write_text(text.replace("<Forces>", "<Script>import os</Script>\n<Forces>", 1))
    with pytest.raises(ValueError, match="Script"):
        OpenMMSystem.from_xml(path, ALANINE_DIPEPTIDE_PDB, platform="Reference")


def test_zero_mass_refused():
    system, pdb = _raw_vacuum_system()
    system.setParticleMass(4, 0.0)
    with pytest.raises(ValueError, match=r"zero mass.*4 \(ACE:C\)"):
        OpenMMSystem(system, pdb.topology, pdb.positions, platform="Reference")


def test_bad_arguments():
    system, pdb = _raw_vacuum_system()
    with pytest.raises(TypeError, match="openmm.System"):
        OpenMMSystem("system.xml", pdb.topology, pdb.positions)
    with pytest.raises(ValueError, match="solvent"):
        alanine_dipeptide("explicit")
    with pytest.raises(ValueError, match="constraints"):
        OpenMMSystem.from_pdb(ALANINE_DIPEPTIDE_PDB, constraints="hbonds")
    with pytest.raises(FileNotFoundError, match="missing.pdb"):
        OpenMMSystem.from_pdb("missing.pdb")
    with pytest.raises(FileNotFoundError, match="no_such_ff.xml"):
        OpenMMSystem.from_pdb(ALANINE_DIPEPTIDE_PDB, forcefield=("no_such_ff.xml",))
