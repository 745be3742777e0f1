"""Replica exchange mechanics: pairing schemes, label bookkeeping, per-walker temperature,
checkpoints and shards (the statistics are in tests/statistical/test_tempering.py)."""

from dataclasses import replace

import numpy as np
import pytest
import torch

import langevin_md as lmd
from langevin_md.integrators import (BAOAB, HMC, MALA, OBABO, SGLD, ULA, Brownian, RandomWalkMetropolis,
                                     ReplicaExchange, geometric_ladder, with_temperature)
from langevin_md.io.checkpoint import load_checkpoint, save_checkpoint
from langevin_md.random import WalkerRNG
from langevin_md.systems import Harmonic


def flat_state(integ, n_ladders, seed=0):
    """A replica state on a constant-energy target, where every attempted swap is accepted."""
    system = Harmonic(dim=1, k=1.0, kT=1.0)
    n = n_ladders * integ.n_temperatures
    rng = WalkerRNG(seed, n)
    state = integ.init(system, torch.zeros(n, 1, dtype=torch.float64), rng)
    return system, replace(state, energy=torch.zeros(n, dtype=torch.float64)), rng


# --------------------------------------------------------------------------- settings
def test_geometric_ladder():
    assert geometric_ladder(3, 4.0) == pytest.approx((1.0, 2.0, 4.0))
    assert geometric_ladder(5, 10.0)[0] == 1.0
    with pytest.raises(ValueError, match="n_temperatures"):
        geometric_ladder(1, 4.0)
    with pytest.raises(ValueError, match="max_ratio"):
        geometric_ladder(4, 0.5)


@pytest.mark.parametrize("kwargs, match", [
    (dict(ladder=(2.0, 3.0)), "start at"), (dict(ladder=(1.0, 3.0, 2.0)), "increasing"),
    (dict(ladder=(1.0,)), "at least 2"), (dict(swap_every=0), "swap_every"),
    (dict(scheme="even-odd"), "scheme"),
])
def test_bad_settings_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ReplicaExchange(BAOAB(), **kwargs)


def test_unsupported_inner_schemes_are_refused():
    with pytest.raises(TypeError, match="SGLD"):
        ReplicaExchange(SGLD())
    with pytest.raises(TypeError, match="inner"):
        ReplicaExchange("BAOAB")


def test_walkers_must_form_whole_ladders():
    integ = ReplicaExchange(BAOAB(), ladder=geometric_ladder(4, 2.0))
    system = Harmonic(dim=1)
    with pytest.raises(ValueError, match="multiple of the number of temperatures"):
        integ.init(system, torch.zeros(6, 1, dtype=torch.float64), WalkerRNG(0, 6))
    with pytest.raises(ValueError, match="whole ladders"):  # a shard starting mid-ladder
        integ.init(system, torch.zeros(4, 1, dtype=torch.float64), WalkerRNG(0, range(2, 6)))
    integ.init(system, torch.zeros(4, 1, dtype=torch.float64), WalkerRNG(0, range(4, 8)))


# --------------------------------------------------------------------------- pairing
def test_deterministic_even_odd_moves_labels_ballistically():
    # With every swap accepted, DEO sends the label that starts at rung 0 straight up the
    # ladder, one rung per round, and back down: a round trip every 2 n_T rounds.
    n_T = 4
    integ = ReplicaExchange(BAOAB(), ladder=geometric_ladder(n_T, 3.0), scheme="deterministic")
    _, state, rng = flat_state(integ, n_ladders=2)
    path = []
    for r in range(2 * n_T + 1):
        state = integ.swap(state, rng, r)
        path.append(state.rung[[0, 4]].tolist())
    assert [p[0] for p in path] == [1, 2, 3, 3, 2, 1, 0, 0, 1]
    assert all(p[0] == p[1] for p in path)  # ladders are identical and independent
    attempts = integ.summary(state)["swap_attempts"]
    # Pairs (0,1) and (2,3) on even rounds (5 of them), pair (1,2) on odd rounds (4).
    assert attempts.tolist() == [[5, 4, 5], [5, 4, 5]]
    # Walker 0 (rung 0 → 3 → 0 by round 6) and walker 1 (down to 0 at round 0, up to 3 at
    # round 4, back to 0 at round 8) complete a trip each; walkers 2 and 3 are on their way.
    assert integ.summary(state)["round_trips"].tolist() == [2, 2]
    # kT follows the label.
    assert torch.equal(state.kT, state.ladder[torch.arange(8) - torch.arange(8) % n_T + state.rung])


def test_stochastic_even_odd_picks_one_parity_per_ladder_and_round():
    n_T = 5
    integ = ReplicaExchange(BAOAB(), ladder=geometric_ladder(n_T, 3.0), scheme="stochastic")
    _, state, rng = flat_state(integ, n_ladders=64)
    seen = set()
    for r in range(20):
        before = state.rung.reshape(64, n_T)
        state = integ.swap(state, rng, r)
        after = state.rung.reshape(64, n_T)
        for ladder in range(64):
            up = after[ladder] - before[ladder] == 1
            lower = set(before[ladder][up].tolist())  # lower rungs of the swapped pairs
            assert lower
            assert len({k % 2 for k in lower}) == 1  # only even or only odd pairs moved
            seen.update(k % 2 for k in lower)
    assert seen == {0, 1}
    att = integ.summary(state)["swap_attempts"]
    # Each round attempts either the even pairs (0,1),(2,3) or the odd ones (1,2),(3,4).
    assert torch.equal(att[:, 0], att[:, 2]) and torch.equal(att[:, 1], att[:, 3])
    assert torch.equal(att[:, 0] + att[:, 1], torch.full((64,), 20))


def test_swap_rescales_velocities_and_hands_over_temperature_fields():
    integ = ReplicaExchange(BAOAB(), ladder=(1.0, 4.0))
    system, state, rng = flat_state(integ, n_ladders=1)
    state = replace(state, velocities=torch.tensor([[1.0], [1.0]], dtype=torch.float64))
    new = integ.swap(state, rng, 0)
    assert new.rung.tolist() == [1, 0]
    assert new.kT.tolist() == [4.0, 1.0]
    assert new.velocities[:, 0].tolist() == pytest.approx([2.0, 0.5])

    mala = ReplicaExchange(MALA(0.1), ladder=(1.0, 4.0))
    system, state, rng = flat_state(mala, n_ladders=1)
    state = replace(state, step_size=torch.tensor([0.1, 0.7], dtype=torch.float64))
    new = mala.swap(state, rng, 0)
    assert new.step_size.tolist() == [0.7, 0.1]  # walker 0 now at the hot rung: its step size


def test_mala_step_sizes_adapt_per_rung():
    # A hot rung (kT 9x) of a harmonic well needs a ~9x larger MALA step for the same
    # acceptance; per-rung adaptation finds it, and swaps keep each step with its rung.
    system = Harmonic(dim=4, k=1.0, kT=1.0)
    integ = ReplicaExchange(MALA(0.1, target_accept=0.6), ladder=(1.0, 3.0, 9.0), swap_every=2)
    s = lmd.Sampler(system, integ, n_walkers=3 * 16, seed=3)
    s.run(10, burn_in=600)
    state = s.state
    by_rung = [state.step_size[state.rung == k] for k in range(3)]
    ratio = by_rung[2].mean() / by_rung[0].mean()
    assert 4.0 < float(ratio) < 20.0, [float(b.mean()) for b in by_rung]


def test_every_integrator_takes_per_walker_temperatures():
    # Each scheme at kT = (1, 4) on a harmonic well, as a batch: the kT-4 walker's spread is
    # twice the other's (a crude check; exactness is tested statistically elsewhere).
    system = Harmonic(dim=1, k=1.0, kT=1.0)
    for integ in [BAOAB(0.5, 1.0), OBABO(0.5, 1.0), ULA(0.05), Brownian(0.05, 1.0), MALA(0.5),
                  HMC(0.5, 3), RandomWalkMetropolis(1.5), SGLD(0.05)]:
        n = 2000
        rng = WalkerRNG(1, n)
        state = integ.init(system, torch.zeros(n, 1, dtype=torch.float64), rng)
        kT = torch.tensor([1.0, 4.0], dtype=torch.float64).repeat(n // 2)
        state = with_temperature(system, state, kT)
        for _ in range(300):
            state, _ = integ.step(system, state, rng)
        x = state.positions[:, 0].reshape(-1, 2)
        ratio = float(x[:, 1].std() / x[:, 0].std())
        assert 1.7 < ratio < 2.3, (integ, ratio)
        assert torch.equal(state.kT, kT)


def test_with_temperature_rescales_velocities_and_checks_input():
    system = Harmonic(dim=2)
    integ = BAOAB()
    rng = WalkerRNG(0, 3)
    s = integ.init(system, torch.zeros(3, 2, dtype=torch.float64), rng)
    t = with_temperature(system, s, [1.0, 4.0, 9.0])
    assert torch.allclose(t.velocities, s.velocities * torch.tensor([[1.0], [2.0], [3.0]], dtype=torch.float64))
    back = with_temperature(system, t, None)
    assert back.kT is None and torch.allclose(back.velocities, s.velocities)
    with pytest.raises(ValueError, match="shape"):
        with_temperature(system, s, [1.0, 2.0])
    with pytest.raises(ValueError, match="positive"):
        with_temperature(system, s, [1.0, -2.0, 1.0])


# --------------------------------------------------------------------------- ladder adaptation
def test_ladder_adaptation_equalises_acceptance_and_freezes():
    # A geometric ladder on a 16-d well has equal acceptances already; start from a badly
    # spaced one (two rungs crowded at the top) and check adaptation spreads them out.
    system = Harmonic(dim=16, k=1.0, kT=1.0)
    bad = (1.0, 1.05, 1.1, 6.0, 6.3)
    integ = ReplicaExchange(BAOAB(0.5, 2.0), ladder=bad, swap_every=2, adapt_ladder=True)
    s = lmd.Sampler(system, integ, n_walkers=5 * 8, seed=5)
    s.run(400, burn_in=1600)
    summ = integ.summary(s.state)
    ladder = summ["ladder_kT"]
    assert torch.allclose(ladder[:, 0], torch.ones(8, dtype=torch.float64))
    assert torch.allclose(ladder[:, -1], torch.full((8,), 6.3, dtype=torch.float64))
    acc = summ["swap_acceptance"]
    fixed = ReplicaExchange(BAOAB(0.5, 2.0), ladder=bad, swap_every=2)
    s2 = lmd.Sampler(system, fixed, n_walkers=5 * 8, seed=5)
    s2.run(400, burn_in=1600)
    acc_fixed = fixed.summary(s2.state)["swap_acceptance"]
    assert float(acc.min(1).values.mean()) > float(acc_fixed.min(1).values.mean()) + 0.2
    # Frozen in production: the ladder did not move in the 400 production steps.
    before = ladder.clone()
    s.run_to(s.step + 100)
    assert torch.equal(integ.summary(s.state)["ladder_kT"], before)


# --------------------------------------------------------------------------- reporting
def test_recorded_fields_and_summary_through_the_executor():
    system = Harmonic(dim=2)
    integ = ReplicaExchange(BAOAB(0.3, 1.0), ladder=geometric_ladder(3, 3.0), swap_every=3)
    s = lmd.Sampler(system, integ, n_walkers=6, seed=0)
    fields = integ.recorded_fields(s.state)
    assert fields["temperature_index"].tolist() == [0, 1, 2, 0, 1, 2]
    assert fields["kT"].shape == (6,)
    s.run(30, burn_in=10)
    summ = integ.summary(s.state)
    assert summ["swap_attempts"].shape == (2, 2) and summ["ladder_kT"].shape == (2, 3)
    assert summ["steps"].tolist() == [30, 30]
    assert summ["swap_rounds"].tolist() == [10, 10]  # at steps 12, 15, ..., 39
    # Each round (every 3 steps) attempts one parity: 10 rounds -> 5 + 5 over the two pairs.
    assert summ["swap_attempts"].sum(1).tolist() == [10, 10]
    # Every ladder's rungs are a permutation of 0..n_T-1.
    rungs = s.state.rung.reshape(2, 3).sort(1).values
    assert torch.equal(rungs, torch.arange(3).expand(2, 3))


# --------------------------------------------------------------------------- checkpoints, shards
@pytest.mark.parametrize("inner", [BAOAB(0.3, 1.0), MALA(0.3, target_accept=0.6), ULA(0.1)], ids=repr)
def test_checkpoint_round_trip_is_bitwise(tmp_path, inner):
    system = Harmonic(dim=3, k=[1.0, 2.0, 4.0])
    integ = ReplicaExchange(inner, ladder=geometric_ladder(3, 4.0), swap_every=4, scheme="stochastic",
                            adapt_ladder=True)
    full = lmd.Sampler(system, integ, n_walkers=6, seed=7)
    full.burn_in_end = 20
    ref = full.run_to(60, record_every=3)

    first = lmd.Sampler(system, integ, n_walkers=6, seed=7)
    first.burn_in_end = 20
    a = first.run_to(31, record_every=3)
    path = save_checkpoint(tmp_path / "c.npz", first.state_dict())
    second = lmd.Sampler(system, integ, n_walkers=6, seed=7)
    sd, _ = load_checkpoint(path)
    second.load_state_dict(sd)
    b = second.run_to(60, record_every=3)
    assert np.array_equal(np.concatenate([a.positions, b.positions]), ref.positions)
    for name in ("rung", "ladder", "kT", "swap_acceptance_sum", "round_trips"):
        assert torch.equal(getattr(second.state, name), getattr(full.state, name)), name
    assert second.state.steps_done == full.state.steps_done


def test_a_shard_of_whole_ladders_runs_exactly_as_in_the_full_run():
    system = Harmonic(dim=2)
    integ = ReplicaExchange(BAOAB(0.3, 1.0), ladder=geometric_ladder(4, 4.0), swap_every=2,
                            scheme="stochastic")
    full = lmd.Sampler(system, integ, n_walkers=12, seed=11)
    full.run(40, burn_in=10)
    shard = lmd.Sampler(system, integ, n_walkers=4, first_walker=4, seed=11)
    shard.run(40, burn_in=10)
    assert torch.equal(shard.state.positions, full.state.positions[4:8])
    assert torch.equal(shard.state.rung, full.state.rung[4:8])
    assert torch.equal(shard.state.swap_accepts, full.state.swap_accepts[4:8])


# --------------------------------------------------------------------------- targets
class _Quadratic(torch.nn.Module):
    """A learned-energy stand-in: U(x) = Σ a x² with a trainable a, evaluated by autograd."""

    def __init__(self):
        super().__init__()
        self.a = torch.nn.Parameter(torch.tensor(0.5, dtype=torch.float64))

    def forward(self, x):
        return (self.a * x * x).sum(-1)


def test_learned_energy_targets_run_under_replica_exchange():
    from langevin_md.systems.torch_models import TorchEnergy

    system = TorchEnergy(_Quadratic(), (3,), kT=1.0)
    integ = ReplicaExchange(MALA(0.3), ladder=(1.0, 2.0), swap_every=2)
    r = lmd.sample(system, integ, n_steps=50, n_walkers=4, seed=0)
    assert r.fields["temperature_index"].shape == (50, 4)
    assert r.integrator_summary["swap_attempts"].sum() > 0


class _ScoreOnlyHarmonic(Harmonic):
    score_only = True  # as a ScoreModel: forces without a trustworthy energy


def test_score_only_targets_are_refused():
    with pytest.raises(ValueError, match="only provides a score"):
        lmd.sample(_ScoreOnlyHarmonic(dim=1), ReplicaExchange(ULA(0.1), ladder=(1.0, 2.0)), n_steps=5,
                   n_walkers=2)
