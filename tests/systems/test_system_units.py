"""System.units: the one answer to "is this system molecular?"."""

import pytest
import torch

import langevin_md as lmd
from langevin_md.ase_interop import ASESystem
from langevin_md.systems.torch_forcefield import TorchForceField
from langevin_md.systems.openmm_system import OpenMMSystem
from langevin_md.systems.torch_models import TorchEnergy
from langevin_md.units import kT_from_temperature, temperature_from_kT


class _Zero(torch.nn.Module):
    def forward(self, x):
        return x.sum(dim=(-1, -2)) * 0.0


def test_reduced_and_molecular_systems_say_so():
    assert lmd.systems.Harmonic(dim=2).units == "reduced"
    assert lmd.systems.MullerBrown().units == "reduced"
    assert OpenMMSystem.units == TorchForceField.units == ASESystem.units == "molecular"
    alanine = lmd.systems.alanine_dipeptide(solvent="vacuum", temperature=300.0)
    assert alanine.units == "molecular"


def test_a_sum_takes_its_terms_units():
    assert (lmd.systems.Harmonic(dim=2) + lmd.systems.Harmonic(dim=2, k=2.0)).units == "reduced"
    alanine = lmd.systems.alanine_dipeptide(solvent="vacuum", temperature=300.0)
    # A learned bias declares "reduced" but is trained in kJ/mol: the force field's units win.
    bias = TorchEnergy(_Zero(), event_shape=(22, 3), kT=alanine.kT)
    assert bias.units == "reduced"
    assert (alanine + bias).units == (bias + alanine).units == "molecular"


def test_one_temperature_conversion_round_trips():
    assert temperature_from_kT(kT_from_temperature(300.0)) == pytest.approx(300.0, rel=1e-12)
