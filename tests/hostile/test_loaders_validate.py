"""Loaders validate before they allocate: model files and saved force fields.

Every file here is a real safetensors (or torch) file, crafted the way an attacker or a
damaged disk would make it. The loader must refuse it with a ValueError naming the file and
the offending field, before building anything large and before torch fails somewhere deep.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from langevin_md.systems.torch_forcefield import TorchForceField, load_forcefield
from langevin_md.learned.io import load_model, save_model
from langevin_md.learned.models import EnergyMLP

META = "langevin_md.architecture"


# --------------------------------------------------------------------------- model files
def _model_file(tmp_path, kwargs: dict, tensors: dict, name="model.safetensors"):
    path = tmp_path / name
    save_file(tensors, str(path), metadata={META: json.dumps({"class": "EnergyMLP", "kwargs": kwargs})})
    return path


def test_tiny_file_claiming_a_huge_model_is_refused_before_building(tmp_path):
    # A couple of hundred bytes: one small tensor, a header saying hidden = 200000 (160 GB).
    path = _model_file(tmp_path, {"event_shape": [2], "hidden": 200000, "n_layers": 3},
                       {"shift": torch.zeros(2)})
    assert path.stat().st_size < 300
    with pytest.raises(ValueError, match=rf"{path.name}.*{META}.*200000"):
        load_model(path)


def test_architecture_disagreeing_with_stored_shapes_names_the_tensor(tmp_path):
    model = EnergyMLP((2,), hidden=8, n_layers=2)
    good = tmp_path / "good.safetensors"
    save_model(model, good)
    with safe_open(str(good), framework="pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    path = _model_file(tmp_path, {"event_shape": [2], "hidden": 3000, "n_layers": 2}, tensors)
    with pytest.raises(ValueError, match=r"model\.safetensors.*net\.0\.weight.*\(3000, 3\).*\(8, 3\)"):
        load_model(path)
    # a header with more layers than the file has tensors: refused before building modules
    path = _model_file(tmp_path, {"event_shape": [2], "hidden": 8, "n_layers": 10_000_000}, tensors,
                       name="deep.safetensors")
    with pytest.raises(ValueError, match=r"deep\.safetensors.*n_layers=10000000"):
        load_model(path)
    # the legitimate file still loads
    assert load_model(good).hidden == 8


def test_torch_format_and_non_json_header_are_checked_too(tmp_path):
    path = tmp_path / "model.pt"
    torch.save({"architecture": json.dumps({"class": "EnergyMLP",
                                            "kwargs": {"event_shape": [2], "hidden": 200000}}),
                "state_dict": {"shift": torch.zeros(2)}}, path)
    with pytest.raises(ValueError, match=r"model\.pt.*200000"):
        load_model(path)
    bad = tmp_path / "bad.safetensors"
    save_file({"shift": torch.zeros(2)}, str(bad), metadata={META: "{not json"})
    with pytest.raises(ValueError, match=rf"bad\.safetensors.*{META}.*not valid JSON"):
        load_model(bad)


# --------------------------------------------------------------------------- saved force fields
FORMAT = "langevin_md.forcefield"


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A real saved force field: harmonic bonds and a custom bond through a 1-D spline table."""
    openmm = pytest.importorskip("openmm")
    system = openmm.System()
    for _ in range(4):
        system.addParticle(12.0)
    bonds = openmm.HarmonicBondForce()
    bonds.addBond(0, 1, 0.15, 1000.0)
    bonds.addBond(2, 3, 0.15, 1000.0)
    system.addForce(bonds)
    custom = openmm.CustomCompoundBondForce(2, "f(distance(p1, p2))")
    custom.addTabulatedFunction("f", openmm.Continuous1DFunction(list(np.linspace(0, 1, 20) ** 2), 0.0, 2.0))
    custom.addBond([1, 2])
    system.addForce(custom)
    positions = np.array([[0, 0, 0], [0.15, 0, 0], [0.3, 0, 0], [0.45, 0, 0]], dtype=float)
    ff = TorchForceField.from_openmm(system, None, positions, 300.0)
    path = tmp_path_factory.mktemp("ff") / "ff.safetensors"
    ff.save(path)
    with safe_open(str(path), framework="pt") as f:
        header = json.loads(f.metadata()[FORMAT])
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    return path, header, tensors


def _write(tmp_path, header, tensors, name="evil.safetensors", raw_header=None):
    path = tmp_path / name
    save_file(tensors, str(path), metadata={FORMAT: raw_header if raw_header is not None else json.dumps(header)})
    return path


def _bond_term(header) -> int:
    return next(k for k, t in enumerate(header["terms"]) if "atoms" in t["buffers"] and "functions" not in t["spec"])


def _spline_key(tensors) -> str:
    return next(k for k in tensors if k.endswith("second_derivatives"))


def test_legit_saved_force_field_loads(saved):
    path, header, tensors = saved
    ff = load_forcefield(path)
    e, _ = ff.energy_and_forces(torch.from_numpy(ff.positions).unsqueeze(0))
    assert torch.isfinite(e).all()


def _case(name, header, tensors):
    """Return (header, tensors, field regex) for one crafted file."""
    header = json.loads(json.dumps(header))
    tensors = dict(tensors)
    k = _bond_term(header)
    atoms = f"terms.{k}.atoms"
    if name == "index_out_of_range":
        t = tensors[atoms].clone()
        t[0, 0] = 4
        tensors[atoms] = t
        return header, tensors, rf"'{atoms}'.*atom index 4.*\[0, 4\)"
    if name == "index_minus_one":
        t = tensors[atoms].clone()
        t[0, 0] = -1
        tensors[atoms] = t
        return header, tensors, rf"'{atoms}'.*atom index -1"
    if name == "float_indices":
        tensors[atoms] = tensors[atoms].double() + 0.7
        return header, tensors, rf"'{atoms}'.*F64.*integer"
    if name == "spline_length":
        key = _spline_key(tensors)
        tensors[key] = tensors[key][:-3].clone()
        return header, tensors, rf"'{key}'.*shape \(17,\).*expected \(20\)"
    if name == "missing_terms":
        del header["terms"]
        return header, tensors, r"'terms' is missing"
    if name == "missing_buffer":
        del tensors[atoms]
        return header, tensors, rf"terms\[{k}\]\.buffers.*'{atoms}' is missing"
    if name == "masses_shape":
        tensors["masses"] = tensors["masses"][:2].clone()
        return header, tensors, r"'masses'.*shape \(2,\)"
    if name == "n_atoms_type":
        header["n_atoms"] = "4"
        return header, tensors, r"'n_atoms'.*integer"
    raise AssertionError(name)


@pytest.mark.parametrize("name", ["index_out_of_range", "index_minus_one", "float_indices", "spline_length",
                                  "missing_terms", "missing_buffer", "masses_shape", "n_atoms_type"])
def test_crafted_saved_force_field_names_file_and_field(tmp_path, saved, name):
    header, tensors, field = _case(name, saved[1], saved[2])
    path = _write(tmp_path, header, tensors)
    with pytest.raises(ValueError, match=rf"evil\.safetensors.*{field}"):
        load_forcefield(path)


@pytest.mark.parametrize("raw", ["{not json", "[1, 2]", "[" * 100_000 + "]" * 100_000])
def test_non_json_header_names_the_file(tmp_path, saved, raw):
    path = _write(tmp_path, None, saved[2], raw_header=raw)
    with pytest.raises(ValueError, match=rf"evil\.safetensors.*header '{FORMAT}'"):
        load_forcefield(path)


@pytest.mark.parametrize("cut", ["half", "empty"])
def test_a_truncated_torch_model_file_is_a_clear_error(tmp_path, cut):
    """A .pt file cut short (a copy interrupted, a full disk) is named as broken: torch's zip
    reader raised a RuntimeError (EOFError when empty) that escaped as a traceback."""
    path = tmp_path / "model.pt"
    save_model(EnergyMLP((2,), hidden=8), path)
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2] if cut == "half" else b"")
    with pytest.raises(ValueError, match=r"model\.pt.*not a readable torch file"):
        load_model(path)
