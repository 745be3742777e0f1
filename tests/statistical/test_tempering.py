"""Replica exchange is exact at every rung, crosses barriers, and swaps at the exact rate.

Every estimate is a mean over independent *ladders* (walkers within a ladder exchange
temperatures, ladders never interact), so its standard error is the spread across ladders /
sqrt(n_ladders). Each test also runs a known-wrong implementation (or a plain sampler) on the
same budget and shows the same statistic rejects it by |z| >= 20.

Exact swap acceptance of two harmonic rungs (derived in the docstring of
:func:`exact_swap_acceptance`): E[α] = 2 I_{1/(1+ρ)}(d/2, d/2), ρ = kT_hot / kT_cold.
"""

import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from scipy.special import betainc

from langevin_md.integrators import BAOAB, MALA, ReplicaExchange, geometric_ladder
from langevin_md.random import WalkerRNG
from langevin_md.systems import DoubleWell, Harmonic

pytestmark = pytest.mark.slow

Z_MAX = 5.0
Z_WRONG = 20.0


# --------------------------------------------------------------------------- known-wrong swaps
class NoVelocityRescale(ReplicaExchange):
    """Wrong: swaps temperatures but keeps the old velocities."""

    def swap(self, state, generator, round_index):
        new = super().swap(state, generator, round_index)
        if new.velocities is None:
            return new
        undo = torch.sqrt(state.kT / new.kT).reshape(-1, *([1] * (new.velocities.ndim - 1)))
        return replace(new, velocities=new.velocities * undo)


class FlippedSign(ReplicaExchange):
    """Wrong: accepts with min(1, exp(−(β_i − β_j)(U_i − U_j)))."""

    def swap(self, state, generator, round_index):
        new = super().swap(replace(state, energy=-state.energy), generator, round_index)
        return replace(new, energy=state.energy)


# --------------------------------------------------------------------------- driver
def run_per_rung(system, integ, n_ladders, burn_in, n_steps, every, observables, seed=0, x0=None):
    """Run ``integ`` directly and average observables per (ladder, rung).

    Returns a dict name -> array (n_ladders, n_T) of per-ladder time averages at each rung,
    and the final state.
    """
    n_T = integ.n_temperatures
    n = n_ladders * n_T
    rng = WalkerRNG(seed, n)
    if x0 is None:
        x0 = system.initial_positions(n, rng)
    state = integ.init(system, torch.as_tensor(x0, dtype=torch.float64), rng)
    for _ in range(burn_in):
        state, info = integ.step(system, state, rng)
        state = integ.adapt(state, info)
    state = integ.end_adaptation(state)
    base = torch.arange(n) - torch.arange(n) % n_T
    sums = {k: torch.zeros(n, dtype=torch.float64) for k in observables}
    frames = 0
    for i in range(n_steps):
        state, _ = integ.step(system, state, rng)
        if (i + 1) % every == 0:
            slot = base + state.rung
            for k, f in observables.items():
                sums[k] += torch.zeros(n, dtype=torch.float64).scatter(0, slot, f(state).double())
            frames += 1
    return {k: (v / frames).reshape(n_ladders, n_T).numpy() for k, v in sums.items()}, state


def z_scores(per_ladder: np.ndarray, exact) -> np.ndarray:
    """z of the mean over ladders against ``exact``, per rung (per column)."""
    mean = per_ladder.mean(0)
    se = per_ladder.std(0, ddof=1) / math.sqrt(per_ladder.shape[0])
    return (mean - np.asarray(exact)) / se


def exact_swap_acceptance(d: int, rho: float) -> float:
    r"""E[min(1, exp((β₁ − β₂)(U₁ − U₂)))] for exact samples of two harmonic rungs.

    With U = k|x|²/2 in d dimensions, a = U₁/kT₁ and b = U₂/kT₂ are independent
    Gamma(d/2, 1) variables and log α = (ρ − 1)(a/ρ − b), ρ = kT₂/kT₁. Splitting on the sign,
    E[α] = P(a ≥ ρb) + E[e^{(ρ−1)(a/ρ − b)}; a < ρb]; in the second term the substitution
    a' = a/ρ, b' = ρb (unit Jacobian) turns the integrand back into two Gamma(d/2) densities,
    so it equals P(ρa' < b'). By symmetry of the iid pair both terms are P(A > ρB), and
    B/(A + B) ~ Beta(d/2, d/2) gives

    .. math:: E[\alpha] = 2\, I_{1/(1+\rho)}(d/2,\, d/2).

    ρ = 1 gives 1, and it falls as the rungs separate or d grows.
    """
    return float(2.0 * betainc(d / 2, d / 2, 1.0 / (1.0 + rho)))


# --------------------------------------------------------------------------- tests
def test_exact_swap_acceptance_formula_matches_monte_carlo():
    # The closed form against direct iid Gamma sampling (no sampler involved).
    rng = np.random.default_rng(7)
    d, rho = 6, 1.7
    a, b = rng.gamma(d / 2, size=(2, 2_000_000))
    alpha = np.minimum(1.0, np.exp((rho - 1) * (a / rho - b)))
    se = alpha.std() / math.sqrt(alpha.size)
    assert abs(alpha.mean() - exact_swap_acceptance(d, rho)) < Z_MAX * se


def test_every_rung_of_baoab_replica_exchange_has_the_exact_law():
    # BAOAB on U = x²/2: <x²> = kT exactly and step-end <v²> = kT (1 − h²/4) at every rung.
    # Low friction and a swap every step make the no-rescaling bug visible in <v²>.
    system = Harmonic(dim=1, k=1.0, kT=1.0)
    h = 0.8
    ladder = geometric_ladder(4, 4.0)
    kT = np.asarray(ladder)
    obs = {"x2": lambda s: s.positions[:, 0] ** 2, "v2": lambda s: s.velocities[:, 0] ** 2}
    kwargs = dict(n_ladders=400, burn_in=300, n_steps=3000, every=3, observables=obs)
    right, _ = run_per_rung(system, ReplicaExchange(BAOAB(h, 0.3), ladder, swap_every=1), **kwargs)
    assert np.all(np.abs(z_scores(right["x2"], kT)) <= Z_MAX), z_scores(right["x2"], kT)
    v2 = kT * (1 - h * h / 4)
    assert np.all(np.abs(z_scores(right["v2"], v2)) <= Z_MAX), z_scores(right["v2"], v2)
    # The same data reject the OBABO law (a mis-ordered splitting) at every rung ...
    assert np.all(np.abs(z_scores(right["x2"], kT / (1 - h * h / 4))) >= Z_WRONG)
    # ... and a swap that forgets to rescale velocities fails the velocity law.
    wrong, _ = run_per_rung(system, NoVelocityRescale(BAOAB(h, 0.3), ladder, swap_every=1), **kwargs)
    assert np.max(np.abs(z_scores(wrong["v2"], v2))) >= Z_WRONG, z_scores(wrong["v2"], v2)


def test_every_rung_of_mala_replica_exchange_has_the_exact_law():
    # MALA is exact at any step: <x²> = kT at each rung, where ULA (same step, no test) has
    # kT / (1 − ε/(2kT)). A flipped swap exponent drags hot configurations to cold rungs.
    system = Harmonic(dim=2, k=1.0, kT=1.0)
    eps = 0.6
    ladder = geometric_ladder(4, 6.0)
    kT = np.asarray(ladder)
    obs = {"x2": lambda s: (s.positions ** 2).mean(1)}
    kwargs = dict(n_ladders=400, burn_in=200, n_steps=2000, every=2, observables=obs)
    right, _ = run_per_rung(system, ReplicaExchange(MALA(eps), ladder, swap_every=2), **kwargs)
    assert np.all(np.abs(z_scores(right["x2"], kT)) <= Z_MAX), z_scores(right["x2"], kT)
    assert np.abs(z_scores(right["x2"], kT / (1 - eps / (2 * kT)))[0]) >= Z_WRONG
    wrong, _ = run_per_rung(system, FlippedSign(MALA(eps), ladder, swap_every=2), **kwargs)
    assert np.max(np.abs(z_scores(wrong["x2"], kT))) >= Z_WRONG, z_scores(wrong["x2"], kT)


def test_swap_acceptance_of_two_harmonic_rungs_is_exact():
    d, rho = 8, 1.5
    system = Harmonic(dim=d, k=1.0, kT=1.0)
    exact = exact_swap_acceptance(d, rho)

    def acceptance(integ):
        _, state = run_per_rung(system, integ, n_ladders=1000, burn_in=200, n_steps=2000, every=10 ** 9,
                                observables={})
        per_ladder = integ.summary(state)["swap_acceptance"][:, 0].numpy()
        return per_ladder

    right = acceptance(ReplicaExchange(BAOAB(0.5, 2.0), (1.0, rho), swap_every=5))
    z = z_scores(right[:, None], exact)[0]
    assert abs(z) <= Z_MAX, (right.mean(), exact, z)
    wrong = acceptance(FlippedSign(BAOAB(0.5, 2.0), (1.0, rho), swap_every=5))
    zw = z_scores(wrong[:, None], exact)[0]
    assert abs(zw) >= Z_WRONG, (wrong.mean(), exact, zw)


def test_cold_mode_weights_of_a_double_well_match_quadrature_where_plain_baoab_fails():
    # Barrier 13 kT at the coldest rung (12 kT from the upper well); the tilt makes the
    # lower (left) well hold ~0.88 of the mass, so 1/2 is not right by symmetry.
    system = DoubleWell(dim=1, barrier=13.0, kT=1.0, tilt=1.0)
    left_exact = float(system.mode_weights[0])
    top = system.barrier_top
    ladder = geometric_ladder(6, 13.0)
    n_ladders = 200
    n_walkers = n_ladders * len(ladder)
    start = np.full((n_walkers, 1), system.minima[1])  # every walker in the upper (right) well
    integ = ReplicaExchange(BAOAB(0.02, 5.0), ladder, swap_every=5)
    budget = dict(burn_in=1000, n_steps=8000, every=10)
    right, state = run_per_rung(system, integ, n_ladders,
                                observables={"left": lambda s: (s.positions[:, 0] < top).double()},
                                x0=start, **budget)
    z = z_scores(right["left"][:, :1], left_exact)[0]
    assert abs(z) <= Z_MAX, (right["left"][:, 0].mean(), left_exact, z)
    assert int(integ.summary(state)["round_trips"].sum()) > 0

    # Plain BAOAB on the same walkers, steps and start: every walker at the coldest kT,
    # averaged over groups of len(ladder) walkers so the estimate is on the same footing.
    rng = WalkerRNG(0, n_walkers)
    plain = BAOAB(0.02, 5.0)
    s = plain.init(system, torch.as_tensor(start), rng)
    for _ in range(budget["burn_in"]):
        s, _ = plain.step(system, s, rng)
    acc = torch.zeros(n_walkers, dtype=torch.float64)
    frames = 0
    for i in range(budget["n_steps"]):
        s, _ = plain.step(system, s, rng)
        if (i + 1) % budget["every"] == 0:
            acc += (s.positions[:, 0] < top).double()
            frames += 1
    per_group = (acc / frames).reshape(n_ladders, len(ladder)).mean(1).numpy()
    # Stuck walkers can have zero spread, so the yardstick is the larger of the two standard
    # errors: plain BAOAB is wrong by >= 20 of either.
    se = max(per_group.std(ddof=1), right["left"][:, 0].std(ddof=1)) / math.sqrt(n_ladders)
    zp = (per_group.mean() - left_exact) / se
    assert abs(zp) >= Z_WRONG, (per_group.mean(), left_exact, zp)
