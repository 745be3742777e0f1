"""One-step checks of the integrators' building blocks against hand computations.

Each operator is applied once to a small state with numbers chosen so the expected result
can be worked out on paper (the arithmetic is written next to each assertion).
"""

import math

import pytest
import torch

from langevin_md.integrators.base import State, UnderdampedState
from langevin_md.integrators.metropolis import (
    dual_averaging_update,
    freeze_adaptation,
    init_adaptive,
    metropolis_select,
)
from langevin_md.integrators.base import StepInfo
from langevin_md.integrators.underdamped import drift, kick, ornstein_uhlenbeck
from langevin_md.random import WalkerRNG


def t(values):
    return torch.tensor(values, dtype=torch.float64)


def underdamped_state():
    # two walkers, event shape (2,)
    return UnderdampedState(positions=t([[1.0, -2.0], [0.5, 0.0]]), energy=t([3.0, 4.0]),
                            forces=t([[2.0, 4.0], [-1.0, 6.0]]), velocities=t([[0.1, 0.2], [-0.3, 0.4]]))


def test_kick_adds_tau_force_over_mass():
    s = underdamped_state()
    inv_mass = t([0.5, 0.25])  # m = (2, 4) per coordinate
    out = kick(s, 0.1, inv_mass)
    # v + 0.1 F/m: walker 0: 0.1 + 0.1·2/2 = 0.2, 0.2 + 0.1·4/4 = 0.3;
    #              walker 1: −0.3 + 0.1·(−1)/2 = −0.35, 0.4 + 0.1·6/4 = 0.55
    assert torch.allclose(out.velocities, t([[0.2, 0.3], [-0.35, 0.55]]), rtol=0, atol=1e-15)
    # positions, energy and forces untouched; the input state is not mutated
    assert out.positions is s.positions and out.forces is s.forces and out.energy is s.energy
    assert torch.equal(s.velocities, t([[0.1, 0.2], [-0.3, 0.4]]))


def test_drift_adds_tau_velocity():
    s = underdamped_state()
    out = drift(s, 0.5)
    # x + 0.5 v: (1.05, −1.9), (0.35, 0.2)
    assert torch.allclose(out.positions, t([[1.05, -1.9], [0.35, 0.2]]), rtol=0, atol=1e-15)
    assert out.velocities is s.velocities
    # the cached forces are now stale by design: drift does not evaluate them
    assert out.forces is s.forces


def test_ornstein_uhlenbeck_is_c_v_plus_scaled_noise():
    s = underdamped_state()
    gamma, tau = 2.0, 0.3
    c = math.exp(-gamma * tau)
    v_thermal = t([0.5, 2.0])  # sqrt(kT/m) per coordinate
    out = ornstein_uhlenbeck(s, c, v_thermal, WalkerRNG(7, 2))
    # The same counter-based stream, replayed, gives the ξ the operator drew.
    xi = WalkerRNG(7, 2).normal((2,), dtype=torch.float64)
    expected = c * s.velocities + math.sqrt(1 - c * c) * v_thermal * xi
    assert torch.allclose(out.velocities, expected, rtol=0, atol=1e-14)
    # first walker, first coordinate written out: c·0.1 + sqrt(1 − c²)·0.5·ξ
    assert out.velocities[0, 0].item() == pytest.approx(c * 0.1 + math.sqrt(1 - c * c) * 0.5 * xi[0, 0].item(),
                                                        abs=1e-14)
    assert out.positions is s.positions


def test_frictionless_ornstein_uhlenbeck_draws_nothing():
    s = underdamped_state()
    rng = WalkerRNG(7, 2)
    assert ornstein_uhlenbeck(s, 1.0, t([1.0, 1.0]), rng) is s
    # the stream was not advanced: the next draw is the stream's first
    assert torch.equal(rng.normal((2,), dtype=torch.float64), WalkerRNG(7, 2).normal((2,), dtype=torch.float64))


def test_metropolis_select_accepts_iff_log_u_below_log_ratio():
    current = State(t([[0.0], [1.0], [2.0], [3.0]]), t([0.0, 1.0, 2.0, 3.0]), t([[0.0], [-1.0], [-2.0], [-3.0]]))
    proposal = State(t([[10.0], [11.0], [12.0], [13.0]]), t([10.0, 11.0, 12.0, 13.0]),
                     t([[-10.0], [-11.0], [-12.0], [-13.0]]))
    log_ratio = t([0.5, math.log(0.3), math.log(0.3), float("nan")])
    uniform = t([0.99, 0.2, 0.4, 0.01])
    # walker 0: ratio > 1, always accepted; walker 1: u = 0.2 < 0.3 accepted; walker 2:
    # u = 0.4 > 0.3 rejected; walker 3: a NaN ratio (zero-density proposal) is rejected.
    new, info = metropolis_select(current, proposal, log_ratio, uniform)
    assert info.accepted.tolist() == [True, True, False, False]
    assert torch.allclose(info.acceptance_probability, t([1.0, 0.3, 0.3, 0.0]), rtol=0, atol=1e-15)
    assert new.positions[:, 0].tolist() == [10.0, 11.0, 2.0, 3.0]
    assert new.energy.tolist() == [10.0, 11.0, 2.0, 3.0]
    assert new.forces[:, 0].tolist() == [-10.0, -11.0, -2.0, -3.0]


def test_dual_averaging_first_step_by_hand():
    s0 = State(t([[0.0], [0.0]]), t([0.0, 0.0]), t([[0.0], [0.0]]))
    s = init_adaptive(s0, 0.1)
    alpha = t([0.9, 0.2])
    target, gamma, t0, kappa = 0.6, 0.05, 10.0, 0.75
    out = dual_averaging_update(s, StepInfo(acceptance_probability=alpha), target, gamma, t0, kappa)
    # t = 1: H̄ = (1 − 1/11)·0 + (δ − α)/11;  log ε = μ − √1/γ · H̄ with μ = log(10 ε₀) = log 1 = 0;
    # log ε̄ = 1^{−κ} log ε + 0 = log ε.
    h_bar = (target - alpha) / 11.0  # (−0.3/11, 0.4/11)
    log_eps = 0.0 - h_bar / gamma    # (+0.5454..., −0.7272...): too-high acceptance grows ε
    assert torch.allclose(out.error_avg, h_bar, rtol=0, atol=1e-15)
    assert torch.allclose(out.step_size, torch.exp(log_eps), rtol=1e-14, atol=0)
    assert torch.allclose(out.log_step_avg, log_eps, rtol=1e-14, atol=0)
    assert out.adapt_count == 1
    # both start near μ = log(10 ε₀), the shrinkage target; the walker accepting too often
    # gets the larger step
    assert out.step_size[0] > 1.0 > out.step_size[1]


def test_dual_averaging_second_step_and_freeze_by_hand():
    s = init_adaptive(State(t([[0.0]]), t([0.0]), t([[0.0]])), 0.1)
    s1 = dual_averaging_update(s, StepInfo(acceptance_probability=t([0.9])), 0.6)
    s2 = dual_averaging_update(s1, StepInfo(acceptance_probability=t([0.5])), 0.6)
    # t = 2, w = 1/12: H̄₂ = (11/12) H̄₁ + 0.1/12 with H̄₁ = −0.3/11, i.e. H̄₂ = (−0.3 + 0.1)/12;
    # log ε₂ = −√2 H̄₂ / 0.05; log ε̄₂ = 2^{−0.75} log ε₂ + (1 − 2^{−0.75}) log ε₁.
    h2 = (-0.3 + 0.1) / 12.0
    log_eps1 = 0.3 / 11.0 / 0.05
    log_eps2 = -math.sqrt(2.0) * h2 / 0.05
    eta = 2.0 ** -0.75
    log_avg2 = eta * log_eps2 + (1 - eta) * log_eps1
    assert s2.error_avg.item() == pytest.approx(h2, abs=1e-15)
    assert s2.step_size.item() == pytest.approx(math.exp(log_eps2), rel=1e-14)
    assert s2.log_step_avg.item() == pytest.approx(log_avg2, rel=1e-14)
    # freezing fixes the step at the averaged value ε̄, not the last iterate
    assert freeze_adaptation(s2).step_size.item() == pytest.approx(math.exp(log_avg2), rel=1e-14)


@pytest.mark.parametrize("k", [1, 2, 3, 4, 5, 9])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_sum_event_is_bitwise_torch_sum(k, dtype):
    """Short events are summed by column adds (fast); they must equal torch's reduction bit for
    bit, signed zeros included, or a walker's chain would depend on the code path."""
    from langevin_md.integrators.base import sum_event

    g = torch.Generator().manual_seed(k)
    scales = torch.logspace(-8, 8, k, dtype=torch.float64)[torch.randperm(k, generator=g)]
    t = (torch.randn(20001, k, generator=g, dtype=torch.float64) * scales).to(dtype)
    t[:3] = -0.0
    t[3, 0] = 0.0
    got, want = sum_event(t), t.sum(-1)
    assert torch.equal(got, want) and torch.equal(torch.signbit(got), torch.signbit(want))
    assert torch.equal(sum_event(t.reshape(20001, 1, k)), want)


@pytest.mark.parametrize("shape", [(9,), (400, 1), (400, 2), (400, 3), (400, 4), (40, 2, 3), (8, 22, 3)])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.int64, torch.bool])
def test_select_walkers_is_bitwise_torch_where(shape, dtype):
    """The Metropolis select reinterprets short rows as one element; it must copy the exact
    bits torch.where copies (NaN, ±inf and −0 included), whatever the event shape and dtype."""
    from langevin_md.integrators.base import select_walkers, walker_view

    g = torch.Generator().manual_seed(len(shape))
    if dtype == torch.bool:
        new, old = torch.rand(shape, generator=g) < 0.5, torch.rand(shape, generator=g) < 0.5
    elif dtype == torch.int64:
        new, old = torch.randint(-9, 9, shape, generator=g), torch.randint(-9, 9, shape, generator=g)
    else:
        new, old = torch.randn(shape, generator=g, dtype=dtype), torch.randn(shape, generator=g, dtype=dtype)
        new.view(-1)[:3] = torch.tensor([math.nan, -0.0, math.inf], dtype=dtype)
        old.view(-1)[:3] = torch.tensor([-0.0, math.nan, -math.inf], dtype=dtype)
    take = torch.rand(shape[0], generator=g) < 0.5
    take[0] = True
    want = torch.where(walker_view(take, len(shape)), new, old)
    got = select_walkers(take, new, old)
    assert got.shape == want.shape and got.dtype == want.dtype
    bits = {torch.float64: torch.int64, torch.float32: torch.int32}.get(dtype)
    assert torch.equal(got.view(bits), want.view(bits)) if bits else torch.equal(got, want)
    assert not torch.equal(got, old) or bool(take.all())  # a real selection took place


def test_select_walkers_keeps_gradients_and_odd_views():
    """The fast path must not drop autograd history, nor fail on views that start mid-row."""
    from langevin_md.integrators.base import select_walkers, walker_view

    take = torch.tensor([True, False, True])
    new = torch.randn(3, 2, dtype=torch.float64, requires_grad=True)
    old = torch.randn(3, 2, dtype=torch.float64)
    out = select_walkers(take, new, old)
    out.sum().backward()
    assert torch.equal(new.grad, walker_view(take, 2).expand(3, 2).to(torch.float64))
    base = torch.randn(11, dtype=torch.float32)
    odd_new, odd_old = base[1:7].view(3, 2), base[5:11].view(3, 2)  # storage offsets 1 and 5
    want = torch.where(walker_view(take, 2), odd_new, odd_old)
    assert torch.equal(select_walkers(take, odd_new, odd_old), want)


def test_evolve_builds_what_replace_builds():
    """The hot-path copy must give the same state as dataclasses.replace, leaving the original."""
    import dataclasses

    from langevin_md.integrators.base import evolve

    x, e, f, v = torch.zeros(3, 2), torch.zeros(3), torch.ones(3, 2), torch.full((3, 2), 2.0)
    state = UnderdampedState(x, e, f, velocities=v)
    new_v = torch.full((3, 2), 5.0)
    got, want = evolve(state, velocities=new_v), dataclasses.replace(state, velocities=new_v)
    assert type(got) is UnderdampedState and got == want
    assert got.velocities is new_v and got.positions is x and state.velocities is v
    with pytest.raises(dataclasses.FrozenInstanceError):
        got.positions = f
