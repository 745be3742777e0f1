"""HMC's leapfrog step is ``timestep`` (ps), as BAOAB's; ``step_size`` is a deprecated alias."""

from __future__ import annotations

import tomllib
import warnings

import numpy as np
import pytest
from openmm import unit

import langevin_md as lmd
from langevin_md.run.build import build_integrator
from langevin_md.run.config import parse_config
from langevin_md.integrators import HMC


def test_timestep_is_the_leapfrog_step():
    h = HMC(0.2, 3)
    assert h.timestep == 0.2 and h.step_size is None
    assert HMC(timestep=1 * unit.femtosecond, n_leapfrog=3).timestep == pytest.approx(0.001)
    assert "step_size" not in repr(h)


def test_step_size_warns_and_maps_to_timestep():
    with pytest.warns(DeprecationWarning, match=r"HMC\(step_size=\.\.\.\) is deprecated.*use HMC\(timestep=\.\.\.\)"):
        old = HMC(step_size=0.2, n_leapfrog=3)
    assert old == HMC(timestep=0.2, n_leapfrog=3) and old.timestep == 0.2 and old.step_size is None
    with pytest.warns(DeprecationWarning):
        assert HMC(step_size=2 * unit.femtosecond).timestep == pytest.approx(0.002)


def test_both_names_is_an_error():
    with pytest.raises(ValueError, match=r"timestep=0\.3 and step_size=0\.2.*give timestep only"):
        HMC(timestep=0.3, step_size=0.2)


def test_old_and_new_names_run_the_same_chain():
    system = lmd.systems.Harmonic(dim=2, k=2.0, kT=1.0)
    new = lmd.sample(system, HMC(timestep=0.5, n_leapfrog=3), n_steps=50, n_walkers=4, seed=1)
    with pytest.warns(DeprecationWarning):
        integ = HMC(step_size=0.5, n_leapfrog=3)
    old = lmd.sample(system, integ, n_steps=50, n_walkers=4, seed=1)
    np.testing.assert_array_equal(new.positions, old.positions)
    # A proposal is not physical time: HMC results carry no timestep (so no time axis).
    assert new.metadata["timestep"] is None


def test_a_config_takes_timestep_and_the_old_key():
    text = '[system]\nname = "harmonic"\n[integrator]\nname = "hmc"\n{key}\nn_leapfrog = 4\n[sampler]\nn_steps = 10\n'
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)  # the new key never warns
        new = build_integrator(parse_config(tomllib.loads(text.format(key='timestep = "1 fs"'))))
    with pytest.warns(DeprecationWarning, match=r"use HMC\(timestep"):
        old = build_integrator(parse_config(tomllib.loads(text.format(key="step_size = 0.001"))))
    assert new == old and new.timestep == pytest.approx(0.001)
