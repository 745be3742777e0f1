import numpy as np
import pytest
import torch

import langevin_md as lmd
from langevin_md.systems import Harmonic

ALL = [lmd.integrators.ULA(0.1), lmd.integrators.Brownian(0.1, 1.0), lmd.integrators.MALA(0.3),
       lmd.integrators.MALA(0.3, target_accept=0.7), lmd.integrators.BAOAB(0.3, 1.0),
       lmd.integrators.OBABO(0.3, 1.0), lmd.integrators.HMC(0.3, 3),
       lmd.integrators.RandomWalkMetropolis(0.5)]


@pytest.mark.parametrize("integrator", ALL, ids=lambda i: repr(i))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_shapes_dtypes_and_reproducibility(integrator, dtype):
    system = Harmonic(dim=3, k=[1, 2, 3])
    kw = dict(n_steps=20, n_walkers=6, record_every=5, burn_in=10, seed=4, dtype=dtype)
    r = lmd.sample(system, integrator, **kw)
    assert r.positions.shape == (4, 6, 3)
    assert r.energies.shape == (4, 6)
    assert r.positions.dtype == np.dtype(dtype)
    assert list(r.steps) == [15, 20, 25, 30]
    if integrator.metropolis_adjusted:
        assert r.acceptance_rate.shape == (6,)
    else:
        assert r.acceptance_rate is None
    if integrator.has_velocities:
        assert r.kinetic_energies.shape == (4, 6)
    again = lmd.sample(system, integrator, **kw)
    assert np.array_equal(r.positions, again.positions)  # bitwise
    # A walker's chain does not depend on how many others run.
    kw["n_walkers"] = 2
    fewer = lmd.sample(system, integrator, **kw)
    assert np.array_equal(r.positions[:, :2], fewer.positions)


def test_energies_match_positions():
    system = Harmonic(dim=2, k=[1.0, 2.0])
    r = lmd.sample(system, lmd.integrators.MALA(0.5), n_steps=50, n_walkers=4, seed=0)
    x = r.positions
    np.testing.assert_allclose(r.energies, 0.5 * (x[..., 0] ** 2 + 2 * x[..., 1] ** 2), rtol=1e-12)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.cuda
@pytest.mark.parametrize("integrator", ALL, ids=lambda i: repr(i))
def test_cuda_matches_cpu_streams(integrator):
    system = Harmonic(dim=3, k=[1, 2, 3])
    rc = lmd.sample(system, integrator, n_steps=20, n_walkers=5, seed=1, device="cuda")
    rh = lmd.sample(system, integrator, n_steps=20, n_walkers=5, seed=1, device="cpu")
    np.testing.assert_allclose(rc.positions, rh.positions, rtol=1e-9, atol=1e-9)


def test_initial_positions_shared_point_and_bad_shape():
    system = Harmonic(dim=2)
    r = lmd.sample(system, lmd.integrators.ULA(0.1), n_steps=1, n_walkers=3,
                   initial_positions=[1.0, 2.0])
    assert r.positions.shape == (1, 3, 2)
    with pytest.raises(ValueError, match=r"initial_positions have shape \(3, 3\); expected \(3, 2\)"):
        lmd.sample(system, lmd.integrators.ULA(0.1), n_steps=1, n_walkers=3,
                   initial_positions=np.zeros((3, 3)))


def test_system_rejects_wrong_shape_with_a_clear_error():
    system = Harmonic(dim=2)
    with pytest.raises(ValueError, match=r"shape \(4, 3\); Harmonic expects \(n_walkers, 2\)"):
        system.energy_and_forces(torch.zeros(4, 3))
    with pytest.raises(TypeError, match="torch.Tensor"):
        system.energy_and_forces(np.zeros((4, 2)))


@pytest.mark.parametrize("make, match", [
    (lambda: lmd.integrators.ULA(step_size=0), "step_size must be a finite positive number, got 0"),
    (lambda: lmd.integrators.MALA(step_size=-1.0), "step_size must be a finite positive number, got -1.0"),
    (lambda: lmd.integrators.BAOAB(timestep=0.0), "timestep"),
    (lambda: lmd.integrators.BAOAB(timestep=0.1, friction=-1), "friction must be a finite non-negative"),
    (lambda: lmd.integrators.MALA(0.1, target_accept=1.2), "target_accept must lie strictly between 0 and 1"),
    (lambda: lmd.integrators.HMC(0.1, n_leapfrog=0), "n_leapfrog must be a positive integer, got 0"),
    (lambda: Harmonic(dim=1, kT=0), "kT must be a finite positive number, got 0"),
    (lambda: Harmonic(dim=2, k=[1, 2, 3]), r"k must be a scalar or have shape \(2,\)"),
    (lambda: lmd.sample(Harmonic(), lmd.integrators.ULA(0.1), n_steps=0), "n_steps must be a positive integer, got 0"),
    (lambda: lmd.sample(Harmonic(), lmd.integrators.ULA(0.1), n_steps=5, n_walkers=-2), "n_walkers"),
    (lambda: lmd.sample(Harmonic(), lmd.integrators.ULA(0.1), n_steps=5, dtype="float16"), "dtype"),
    (lambda: lmd.sample(Harmonic(), "ula", n_steps=5), "integrator must be a langevin_md Integrator"),
])
def test_bad_input_is_named(make, match):
    with pytest.raises((ValueError, TypeError), match=match):
        make()


def test_sum_of_systems_and_mismatch():
    a, b = Harmonic(dim=2, k=1.0), Harmonic(dim=2, k=3.0, mean=1.0)
    s = a + 0.5 * b
    x = torch.randn(5, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    e, f = s.energy_and_forces(x)
    ea, fa = a.energy_and_forces(x)
    eb, fb = b.energy_and_forces(x)
    torch.testing.assert_close(e, ea + 0.5 * eb)
    torch.testing.assert_close(f, fa + 0.5 * fb)
    with pytest.raises(ValueError, match=r"event_shape \(3,\) to Harmonic with event_shape \(2,\)"):
        a + Harmonic(dim=3)
    with pytest.raises(ValueError, match="kT=2 to Harmonic at kT=1"):
        a + Harmonic(dim=2, kT=2.0)


def test_nonfinite_state_stops_with_names_and_keeps_frames():
    system = Harmonic(dim=1, k=1.0)
    # eps/sigma^2 = 2.5 > 2: ULA is unstable and overflows to inf after a few hundred steps.
    with pytest.raises(lmd.NonFiniteStateError) as info:
        lmd.sample(system, lmd.integrators.ULA(step_size=2.5), n_steps=5000, n_walkers=3,
                   record_every=1, seed=0)
    err = info.value
    msg = str(err)
    assert "walkers [0, 1, 2]" in msg and "step size" in msg
    first, last = err.steps
    assert 0 < first <= last <= 5000
    kept = err.result
    assert kept.n_frames > 10 and np.isfinite(kept.positions).all()
    assert kept.steps[-1] <= last


def test_nonfinite_start_is_refused():
    with pytest.raises(lmd.NonFiniteStateError, match=r"starting state is not finite for walkers \[1\]"):
        lmd.sample(Harmonic(dim=1), lmd.integrators.ULA(0.1), n_steps=2, n_walkers=2,
                   initial_positions=[[0.0], [float("nan")]])


def test_constrained_system_is_refused_by_torch_executor():
    system = Harmonic(dim=1)
    system.constrained = True
    with pytest.raises(ValueError, match="backend='openmm'"):
        lmd.sample(system, lmd.integrators.BAOAB(0.1), n_steps=2)


@pytest.mark.parametrize("integrator", ALL, ids=lambda i: repr(i))
def test_state_dict_continuation_is_bitwise(integrator):
    system = Harmonic(dim=2, k=[1.0, 2.0])
    full = lmd.Sampler(system, integrator, n_walkers=4, seed=9)
    ref = full.run(60, record_every=3, burn_in=20)

    first = lmd.Sampler(system, integrator, n_walkers=4, seed=9)
    first.burn_in_end = 20
    head = first.run_to(13, record_every=3)   # interrupted during burn-in (adaptation)
    ckpt = first.state_dict()
    second = lmd.Sampler(system, integrator, n_walkers=4, seed=123)  # seed comes from ckpt
    second.load_state_dict(ckpt)
    tail = second.run_to(80, record_every=3)
    joined = np.concatenate([head.positions, tail.positions])
    assert np.array_equal(joined, ref.positions)
    assert np.array_equal(np.concatenate([head.steps, tail.steps]), ref.steps)
    if integrator.metropolis_adjusted:
        np.testing.assert_array_equal(tail.acceptance_rate, ref.acceptance_rate)


class _RecordingBAOAB(lmd.integrators.BAOAB):
    """BAOAB that asks the executor to record two per-walker fields and one summary."""

    def recorded_fields(self, state):
        return {"v2": (state.velocities ** 2).sum(-1), "right": state.positions[:, 0] > 0}

    def summary(self, state):
        return {"mean_position": state.positions.mean(0)}


def test_recorded_fields_and_summary_reach_the_result():
    r = lmd.sample(Harmonic(dim=2), _RecordingBAOAB(0.2, 1.0), n_steps=60, n_walkers=5, record_every=6, seed=2)
    assert set(r.fields) == {"v2", "right"}
    assert r.fields["v2"].shape == (10, 5) and r.fields["right"].dtype == np.bool_
    np.testing.assert_array_equal(r.fields["right"], r.positions[..., 0] > 0)
    np.testing.assert_allclose(r.integrator_summary["mean_position"], r.positions[-1].mean(0), rtol=1e-12)
    plain = lmd.sample(Harmonic(dim=2), lmd.integrators.BAOAB(0.2, 1.0), n_steps=60, n_walkers=5,
                       record_every=6, seed=2)
    assert plain.fields == {} and plain.integrator_summary == {}
    np.testing.assert_array_equal(plain.positions, r.positions)   # recording changes no draw


@pytest.mark.parametrize("kwargs, message", [
    (dict(n_steps="10"), "n_steps must be a positive integer, got '10'"),
    (dict(n_steps=10, burn_in=None), "burn_in must be a non-negative integer, got None"),
    (dict(n_steps=0), "n_steps must be a positive integer, got 0"),
])
def test_sample_names_a_bad_run_length_before_choosing_a_backend(kwargs, message):
    """backend="auto" (the default) added burn_in + n_steps for its cost model before either was
    checked: a string or None escaped as "unsupported operand type(s) for +"."""
    with pytest.raises(ValueError, match=message):
        lmd.sample(Harmonic(dim=2), lmd.integrators.MALA(), **kwargs)
