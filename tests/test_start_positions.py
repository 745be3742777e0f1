"""Starting positions: ångström coordinates are refused for every molecular system, not only
for OpenMMSystem's own structure, and Quantities are converted, never dropped."""

import numpy as np
import pytest
from openmm import unit

import langevin_md as lmd


@pytest.fixture(scope="module")
def alanine():
    return lmd.systems.alanine_dipeptide(engine="openmm")


def test_angstrom_initial_positions_are_refused(alanine):
    x = alanine.initial_positions(1, None)[0].numpy()
    with pytest.raises(ValueError, match="ångström"):
        lmd.sample(alanine, lmd.integrators.BAOAB(timestep=0.001, friction=1.0), n_steps=1,
                   initial_positions=10.0 * x)


def test_quantity_in_angstrom_is_converted(alanine):
    x = alanine.initial_positions(1, None)[0].numpy()
    q = unit.Quantity(10.0 * x, unit.angstrom)
    res = lmd.sample(alanine, lmd.integrators.BAOAB(timestep=0.001, friction=1.0), n_steps=1,
                     record_every=1, initial_positions=q)
    assert np.all(np.isfinite(res.energies))
