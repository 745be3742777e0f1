"""``engine`` and ``hydrogen_mass`` mean the same in every molecular builder (issue 24, item 3).

Before: ``openmm_pdb`` and the other input builders refused both keys, and ``backend =
"openmm"`` with a built-in molecule was refused ("needs an OpenMMSystem, got
TorchForceField") instead of building the engine that backend needs.
"""

from __future__ import annotations

import numpy as np
import pytest

from langevin_md.errors import ConfigError
from langevin_md.executors.openmm import OpenMMSampler
from langevin_md.systems.torch_forcefield import TorchForceField
from langevin_md.run import build
from langevin_md.run.config import parse_config
from langevin_md.systems import inputs
from langevin_md.systems.molecules import ALANINE_DIPEPTIDE_PDB, alanine_dipeptide, lennard_jones_fluid
from langevin_md.systems.openmm_system import OpenMMSystem

pytest.importorskip("openmm")

VACUUM = ("amber14-all.xml",)


def _hydrogen_masses(system) -> np.ndarray:
    # The shipped structure's hydrogens are the atoms whose name starts with H.
    from openmm import app

    names = [a.name for a in app.PDBFile(ALANINE_DIPEPTIDE_PDB).topology.atoms()]
    return np.asarray(system.masses)[[n.startswith("H") for n in names]]


def test_from_pdb_in_the_api_takes_engine_and_hydrogen_mass():
    ff = inputs.from_pdb(ALANINE_DIPEPTIDE_PDB, VACUUM, engine="torch", hydrogen_mass=3.0)
    assert isinstance(ff, TorchForceField)
    assert np.allclose(_hydrogen_masses(ff), 3.0)
    bridge = inputs.from_pdb(ALANINE_DIPEPTIDE_PDB, VACUUM)  # files default to OpenMM, as before
    assert isinstance(bridge, OpenMMSystem) and np.allclose(_hydrogen_masses(bridge), 1.008)
    # The same molecule from the catalogue and from the file: the same energy, either engine.
    ala = alanine_dipeptide(engine="torch", hydrogen_mass=3.0)
    x = ala.initial_positions(2)
    assert np.allclose(np.asarray(ff.energy(x)), np.asarray(ala.energy(x)), rtol=1e-10)
    assert np.array_equal(np.asarray(ff.masses), np.asarray(ala.masses))
    with pytest.raises(ValueError, match=r"engine must be one of \('auto', 'torch', 'openmm'\), got 'jax'"):
        inputs.from_pdb(ALANINE_DIPEPTIDE_PDB, VACUUM, engine="jax")


def test_lj_fluid_takes_the_keys():
    fluid = lennard_jones_fluid(engine="openmm", hydrogen_mass=3.0)
    assert isinstance(fluid, OpenMMSystem)
    assert np.allclose(fluid.masses, 39.948)  # argon has no hydrogens: nothing to repartition
    with pytest.raises(ValueError, match=r"engine must be one of .* got 'OpenMM'"):
        lennard_jones_fluid(engine="OpenMM")


def _config(system: dict, backend: str = "torch") -> dict:
    return {"system": system, "integrator": {"name": "baoab", "timestep": 0.002, "friction": 1.0},
            "sampler": {"backend": backend, "n_steps": 10, "n_walkers": 1, "record_every": 5}}


def test_openmm_pdb_in_a_config_takes_engine_and_hydrogen_mass():
    cfg = parse_config(_config({"name": "openmm_pdb", "pdb_path": ALANINE_DIPEPTIDE_PDB, "forcefield": list(VACUUM),
                                "engine": "torch", "hydrogen_mass": 3.0}))
    system = build.build_system(cfg)
    assert isinstance(system, TorchForceField) and np.allclose(_hydrogen_masses(system), 3.0)


def test_backend_openmm_builds_the_openmm_engine_unless_the_system_is_pinned_to_torch():
    table = {"name": "alanine_dipeptide_vacuum", "constraints": "HBonds"}
    cfg = parse_config(_config(dict(table), backend="openmm"))
    assert cfg.system["engine"] == "auto"
    system = build.build_system(cfg)
    assert isinstance(system, OpenMMSystem) and system.constrained
    assert isinstance(build.build_sampler(cfg, system), OpenMMSampler)
    # Under the torch backend "auto" still means the batched torch force field.
    assert isinstance(build.build_system(parse_config(_config(dict(table)))), TorchForceField)
    pinned = parse_config(_config(dict(table, engine="torch"), backend="openmm"))
    with pytest.raises(ConfigError, match=r'engine = "torch" cannot run with \[sampler\] backend = "openmm"'):
        build.build_system(pinned)


def test_the_api_names_the_engine_key_when_a_torch_force_field_meets_backend_openmm(tmp_path):
    import langevin_md as lmd
    from langevin_md.systems import load_forcefield

    ff = alanine_dipeptide(engine="torch")
    baoab = lmd.integrators.BAOAB(timestep=0.002, friction=1.0)
    # Compiled from an openmm.System in this process: OpenMM steps that same System.
    assert lmd.sample(ff, baoab, n_steps=1, backend="openmm").metadata["backend"] == "openmm"
    # Loaded from a file, it has no openmm.System behind it: the error names the way out.
    ff.save(tmp_path / "ff.safetensors")
    loaded = load_forcefield(tmp_path / "ff.safetensors")
    with pytest.raises(TypeError, match=r"build the molecule with engine='openmm'"):
        lmd.sample(loaded, baoab, n_steps=1, backend="openmm")
