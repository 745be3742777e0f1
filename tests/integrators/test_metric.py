"""The preconditioner (metric) object, its estimator, settings, and bitwise checkpoints."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import langevin_md as lmd
from langevin_md.integrators import HMC, MALA, ULA, Metric, PreconditionedState, estimate_metric
from langevin_md.integrators.metric import (accumulate_metric, as_metric_matrix, check_preconditioner,
                                            initial_metric_fields, metric_factor)
from langevin_md.io.checkpoint import load_checkpoint, save_checkpoint
from langevin_md.systems.mixture import GaussianMixture


def _spd(d, seed=0):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(d, d))
    return a @ a.T + d * np.eye(d)


@pytest.mark.parametrize("dense", [False, True])
def test_metric_operations_match_dense_linear_algebra(dense):
    d = 6
    m_np = _spd(d) if dense else np.random.default_rng(1).uniform(0.5, 3.0, d)
    full = m_np if dense else np.diag(m_np)
    metric = Metric.from_matrix(torch.as_tensor(m_np))
    L = np.linalg.cholesky(full)
    v = torch.as_tensor(np.random.default_rng(2).normal(size=(5, 2, 3)))  # event_shape (2, 3)
    rows = v.numpy().reshape(5, d)
    assert np.allclose(metric.factor.numpy() @ metric.factor.numpy().T if dense else metric.factor.numpy() ** 2, m_np)
    assert np.allclose(metric.apply(v).numpy().reshape(5, d), rows @ full.T)
    assert np.allclose(metric.apply_sqrt(v).numpy().reshape(5, d), rows @ L.T)
    assert np.allclose(metric.solve_sqrt(v).numpy().reshape(5, d), np.linalg.solve(L, rows.T).T)
    assert np.allclose(metric.solve_sqrt_transpose(v).numpy().reshape(5, d), np.linalg.solve(L.T, rows.T).T)
    assert np.allclose(metric.quadratic(v).numpy(), np.einsum("ni,ij,nj->n", rows, full, rows))
    assert np.allclose(metric.inverse_quadratic(v).numpy(),
                       np.einsum("ni,ij,nj->n", rows, np.linalg.inv(full), rows))
    assert np.allclose(metric.to_dense(), full)
    assert metric.apply(v).shape == v.shape


def test_bad_metrics_are_refused_with_clear_messages():
    with pytest.raises(ValueError, match="positive"):
        metric_factor(torch.tensor([1.0, -1.0]))
    with pytest.raises(ValueError, match="symmetric"):
        metric_factor(torch.tensor([[1.0, 0.5], [0.0, 1.0]], dtype=torch.float64))
    with pytest.raises(ValueError, match="positive definite"):
        metric_factor(torch.tensor([[1.0, 2.0], [2.0, 1.0]], dtype=torch.float64))
    with pytest.raises(ValueError, match=r"shape \(3,\) .* \(3, 3\)"):
        as_metric_matrix(np.ones(4), 3)
    with pytest.raises(ValueError, match="'diagonal', 'dense'"):
        check_preconditioner("diagnoal")
    with pytest.raises(ValueError, match="shape"):
        check_preconditioner(np.ones((2, 3)))
    with pytest.raises(TypeError, match="preconditioner"):
        check_preconditioner(object())
    with pytest.raises(ValueError, match="metric_window"):
        MALA(0.1, preconditioner="dense", metric_window=0)


def test_preconditioner_settings_are_normalised(tmp_path):
    assert MALA(0.1, preconditioner="None").preconditioner is None
    assert ULA(0.1, preconditioner=" Dense ").preconditioner == "dense"
    m = HMC(0.1, preconditioner=np.array([[2.0, 0.5], [0.5, 1.0]]))
    assert m.preconditioner == ((2.0, 0.5), (0.5, 1.0))
    hash(m)  # frozen settings stay hashable values
    path = tmp_path / "m.npy"
    np.save(path, np.array([1.0, 4.0]))
    system = GaussianMixture([[0.0, 0.0]])
    state = MALA(0.1, preconditioner=str(path)).init(system, torch.zeros(3, 2, dtype=torch.float64), None)
    assert torch.equal(state.metric, torch.tensor([1.0, 4.0], dtype=torch.float64))
    assert torch.equal(state.metric_factor, torch.tensor([1.0, 2.0], dtype=torch.float64))
    with pytest.raises(ValueError, match=r"shape \(2,\)"):
        MALA(0.1, preconditioner=[1.0, 2.0, 3.0]).init(system, torch.zeros(3, 2, dtype=torch.float64), None)


@pytest.mark.parametrize("kind", ["diagonal", "dense"])
def test_estimator_is_the_documented_shrinkage(kind):
    x = torch.as_tensor(np.random.default_rng(3).normal(size=(40, 4)) * [1.0, 2.0, 0.1, 5.0])
    s = np.cov(x.numpy().T)
    lam = 5.0 / (40 + 5.0)
    expect = ((1 - lam) * np.diag(s) + lam * np.diag(s).mean() if kind == "diagonal"
              else (1 - lam) * s + lam * np.diag(np.diag(s)))
    assert np.allclose(estimate_metric(x, kind).numpy(), expect, rtol=1e-12)
    # Fewer samples than dimensions: the dense estimate is still positive definite.
    few = torch.as_tensor(np.random.default_rng(4).normal(size=(3, 8)))
    metric_factor(estimate_metric(few, "dense"))


def test_windows_double_and_pool_walkers_and_steps():
    system = GaussianMixture([[0.0, 0.0]])
    pos = torch.as_tensor(np.random.default_rng(5).normal(size=(6, 2)))
    base = MALA().init(system, pos, None)
    state = PreconditionedState(base.positions, base.energy, base.forces,
                                **initial_metric_fields("dense", pos))
    seen = []
    changes = []
    for step in range(1, 8):
        state = PreconditionedState(**{**state.__dict__, "positions": pos * step})
        seen.append(pos * step)
        state, changed = accumulate_metric(state, window=1)
        changes.append(changed)
        if step == 3:  # windows of 1 and 2 steps: the second one pools steps 2 and 3
            assert np.allclose(state.metric.numpy(), estimate_metric(torch.cat(seen[1:3]), "dense").numpy())
    assert changes == [True, False, True, False, False, False, True]  # windows end at 1, 3, 7
    assert state.metric_windows == 3 and state.metric_window_steps == 0


def _gaussian():
    cov = np.array([[1.0, 0.27], [0.27, 0.09]])
    return GaussianMixture([[0.0, 0.0]], covariances=[cov])


@pytest.mark.parametrize("integrator", [
    MALA(0.2, target_accept=0.6, preconditioner="dense", metric_window=4),
    HMC(0.3, 3, target_accept=0.7, preconditioner="diagonal", metric_window=4),
    ULA(0.02, preconditioner="dense", metric_window=4),
], ids=repr)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_checkpoint_round_trip_mid_window_is_bitwise(tmp_path, integrator, dtype):
    """A checkpoint inside an open adaptation window, and one in production, both continue bitwise."""
    system = _gaussian()
    full = lmd.Sampler(system, integrator, n_walkers=8, seed=11, dtype=dtype)
    full.burn_in_end = 20  # windows close at steps 4 and 12; the third (12-28) is cut off
    ref = full.run_to(50, record_every=3)
    assert ref.integrator_summary["metric"].shape in ((2,), (2, 2))
    assert not np.array_equal(ref.integrator_summary["metric"], np.eye(2))
    assert not np.array_equal(ref.integrator_summary["metric"], np.ones(2))

    sampler = lmd.Sampler(system, integrator, n_walkers=8, seed=11, dtype=dtype)
    sampler.burn_in_end = 20
    parts = []
    for i, stop in enumerate((9, 33, 50)):  # mid-window during burn-in, then in production
        parts.append(sampler.run_to(stop, record_every=3))
        path = save_checkpoint(tmp_path / f"c{i}.npz", sampler.state_dict())
        sampler = lmd.Sampler(system, integrator, n_walkers=8, seed=11, dtype=dtype)
        sampler.load_state_dict(load_checkpoint(path)[0])
    assert np.array_equal(np.concatenate([p.positions for p in parts]), ref.positions)
    assert np.array_equal(sampler.integrator_summary()["metric"], ref.integrator_summary["metric"])
    if ref.step_sizes is not None:
        assert np.array_equal(parts[-1].step_sizes, ref.step_sizes)


def test_unpreconditioned_states_are_unchanged():
    system = _gaussian()
    pos = torch.zeros(3, 2, dtype=torch.float64)
    assert type(ULA(0.1).init(system, pos, None)) is lmd.integrators.State
    state = MALA(0.1).init(system, pos, None)
    assert state.metric is None and state.metric_sum is None
    assert MALA(0.1).summary(state) == {}


RUN_CONFIG = """\
[system]
name = "harmonic"
dim = 3
k = [1.0, 10.0, 100.0]

[integrator]
name = "mala"
step_size = 0.001
target_accept = 0.6
preconditioner = "dense"
metric_window = 10

[sampler]
n_steps = 90
n_walkers = 6
record_every = 5
seed = 4
checkpoint_every = 25
burn_in = 60
"""


def test_run_folder_resumed_inside_an_adaptation_window_is_bitwise(tmp_path):
    """`[integrator] preconditioner = "dense"` from a config. A run stopped inside the third
    adaptation window (checkpoint at step 50; windows close at 10, 30 and would at 70, past
    the burn-in of 60), resumed, then extended, equals one uninterrupted run bitwise."""
    from langevin_md.run.config import load_config
    from langevin_md.io.checkpoint import list_checkpoints
    from langevin_md.run.folder import create_run, load_run
    from langevin_md.run.session import execute_run

    config = tmp_path / "pc.toml"
    config.write_text(RUN_CONFIG)
    short = tmp_path / "short.toml"
    short.write_text(RUN_CONFIG.replace("n_steps = 90", "n_steps = 5"))
    ref, crashed = tmp_path / "ref", tmp_path / "crashed"
    create_run(load_config(config), ref)
    execute_run(ref, progress=False, handle_signals=False)
    create_run(load_config(short), crashed)
    execute_run(crashed, progress=False, handle_signals=False)
    checkpoints = list_checkpoints(crashed / "checkpoints")
    first = load_checkpoint(checkpoints[0])[0]
    assert first["step"] == 50 and first["state"]["metric_window_steps"] == 20
    for p in checkpoints[1:]:
        p.unlink()
    execute_run(crashed, progress=False, handle_signals=False)   # resume inside the window
    cfg = crashed / "config.toml"
    cfg.write_text(cfg.read_text().replace("n_steps = 5", "n_steps = 90"))
    execute_run(crashed, progress=False, handle_signals=False)   # extend the finished run
    a, b = load_run(ref), load_run(crashed)
    assert np.array_equal(a.steps, b.steps)
    assert np.array_equal(a.positions, b.positions)
    assert a.integrator_summary["metric"].shape == (3, 3)
    assert np.array_equal(a.integrator_summary["metric"], b.integrator_summary["metric"])


def test_preconditioned_ula_law_reduces_to_the_known_cases():
    from langevin_md import laws

    # d = 1, M = 1: the scalar law σ²/(1 − ε/(2σ²)).
    c = laws.preconditioned_ula_stationary_covariance(0.3, [[2.0]], [1.0])
    assert c[0, 0] == pytest.approx(laws.ula_stationary_variance(0.3, 2.0), rel=1e-12)
    # M = Σ: A = (1 − ε) I, C = Σ/(1 − ε/2).
    sigma = _spd(4, seed=7)
    c = laws.preconditioned_ula_stationary_covariance(0.4, sigma, sigma)
    assert np.allclose(c, sigma / 0.8, rtol=1e-10)
    # The fixed point of C = A C Aᵀ + 2εM holds for a general pair.
    m = _spd(4, seed=8) / 10
    a = laws.preconditioned_ula_contraction(0.05, sigma, m)
    c = laws.preconditioned_ula_stationary_covariance(0.05, sigma, m)
    assert np.allclose(a @ c @ a.T + 0.1 * m, c, rtol=1e-10)
    with pytest.raises(ValueError, match="unstable"):
        laws.preconditioned_ula_stationary_covariance(3.0, sigma, sigma)
    with pytest.raises(ValueError, match="positive definite"):
        laws.preconditioned_ula_stationary_covariance(0.1, sigma, -sigma)
