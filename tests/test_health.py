"""sample() warns when a sampler did not move, even where its numbers look right."""

import warnings

import numpy as np
import pytest

import langevin_md as lmd


def test_hmc_at_zero_acceptance_is_warned():
    # HMC with an absurd step rejects everything; walkers started at exact draws would still
    # reproduce the target's moments, which is exactly why the motion itself is checked.
    system = lmd.systems.Harmonic(dim=2, k=1.0, kT=1.0)
    with pytest.warns(RuntimeWarning, match="acceptance .* below 0.05"):
        res = lmd.sample(system, lmd.integrators.HMC(timestep=50.0, n_leapfrog=5), n_steps=50,
                         n_walkers=16, record_every=5, seed=0)
    assert res.acceptance_rate.mean() < 0.05


def test_healthy_run_gives_no_warning():
    system = lmd.systems.Harmonic(dim=2, k=1.0, kT=1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        res = lmd.sample(system, lmd.integrators.MALA(step_size=0.5), n_steps=50, n_walkers=16,
                         record_every=5, seed=0)
    assert np.isfinite(res.energies).all()
