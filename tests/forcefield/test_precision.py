"""The torch force field's precision choice: "double" (exact, the default) and "mixed"."""

import pytest
import torch

import langevin_md as lmd

pytest.importorskip("openmm")


@pytest.fixture(scope="module")
def double():
    return lmd.systems.alanine_dipeptide(solvent="implicit", constraints="HBonds", engine="torch")


def perturbed(system, n=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = system.initial_positions(n)
    return x + 0.01 * torch.randn(x.shape, generator=g, dtype=x.dtype)


def test_double_is_the_default_and_unchanged(double):
    assert double.precision == "double"
    x = perturbed(double)
    e_ref, f_ref = double.module(x)  # the float64 terms, called directly
    e, f = double.with_kernels("torch").energy_and_forces(x)
    assert torch.equal(e, e_ref) and torch.equal(f, f_ref)
    # the default evaluation (fused kernels, tests/forcefield/test_fused.py) agrees to rounding
    e, f = double.energy_and_forces(x)
    assert torch.allclose(e, e_ref, rtol=1e-12, atol=0) and torch.allclose(f, f_ref, rtol=0, atol=1e-12 * f_ref.abs().max())


def test_mixed_evaluates_in_float32_and_returns_float64(double):
    mixed = double.with_precision("mixed")
    assert mixed.module is double.module and mixed.constraints is double.constraints
    x = perturbed(double)
    e, f = mixed.energy_and_forces(x)
    assert e.dtype == f.dtype == torch.float64
    # exactly the float32 evaluation, widened
    e32, f32 = double.energy_and_forces(x.float())
    assert torch.equal(e, e32.double()) and torch.equal(f, f32.double())
    assert torch.equal(mixed.energy(x), double.energy(x.float()).double())
    # and within float32 round-off of float64 (forces of order 10³ kJ/mol/nm here)
    e64, f64 = double.energy_and_forces(x)
    assert float((e - e64).abs().max()) < 1e-2
    assert float((f - f64).abs().max()) < 1e-4 * float(f64.abs().max())
    # float32 positions are evaluated as they are
    e_in32, _ = mixed.energy_and_forces(x.float())
    assert e_in32.dtype == torch.float32


def test_mixed_precision_from_the_builder_and_saved(double, tmp_path):
    mixed = lmd.systems.alanine_dipeptide(solvent="implicit", constraints="HBonds", engine="torch", precision="mixed")
    assert mixed.precision == "mixed" and "mixed" in repr(mixed)
    mixed.save(tmp_path / "ff.safetensors")
    from langevin_md.systems import load_forcefield

    loaded = load_forcefield(tmp_path / "ff.safetensors")
    assert loaded.precision == "mixed"
    x = perturbed(double)
    assert torch.equal(loaded.energy_and_forces(x)[1], mixed.energy_and_forces(x)[1])


def test_bad_precision_is_refused_by_name(double):
    with pytest.raises(ValueError, match="'single'"):
        double.with_precision("single")
    with pytest.raises(ValueError, match="'half'"):
        lmd.systems.alanine_dipeptide(engine="torch", precision="half")
