"""Features that meet: replica exchange around a preconditioned scheme, and the OpenMM
executor refusing what it cannot compile rather than silently dropping it."""

import numpy as np
import pytest

import langevin_md as lmd
from langevin_md.integrators import ULA, ReplicaExchange, geometric_ladder


def test_replica_exchange_wraps_preconditioned_ula():
    system = lmd.systems.Harmonic(dim=2, k=[1.0, 100.0], kT=1.0)
    rex = ReplicaExchange(inner=ULA(step_size=0.01, preconditioner="diagonal"),
                          ladder=geometric_ladder(2, 2.0), swap_every=5)
    res = lmd.sample(system, rex, n_steps=100, burn_in=100, n_walkers=8, seed=0)
    index = res.fields["temperature_index"]
    assert index.shape == (100, 8)
    # every frame holds each rung once per ladder
    assert (np.sort(index.reshape(100, 4, 2), axis=-1) == [0, 1]).all()
    assert np.isfinite(res.energies).all()


def test_openmm_executor_refuses_a_preconditioner():
    system = lmd.systems.alanine_dipeptide(engine="openmm")
    with pytest.raises(ValueError, match="preconditioner"):
        lmd.sample(system, ULA(step_size=1e-5, preconditioner="diagonal"), n_steps=2, backend="openmm")
