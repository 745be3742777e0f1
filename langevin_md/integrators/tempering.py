"""Replica exchange (parallel tempering) over batched walkers, as an integrator wrapper.

The walkers of a run form ``n_ladders`` independent ladders of ``n_temperatures`` replicas:
walker ``w`` belongs to ladder ``w // n_temperatures`` and starts at rung
``w % n_temperatures`` (rung 0 is the system's own temperature, the coldest). Every replica
of every ladder moves in the same batched step of the inner integrator, each at its own
``kT`` (:func:`~langevin_md.integrators.base.thermal_energy`). Swaps exchange temperature
labels between walkers, never coordinates, so no data moves and each walker's path through
temperature space is its recorded ``temperature_index``.

State layout. Every field of a replica state has the walkers first, so that checkpoints,
resume and shard merges (which concatenate shards along the walker axis) work unchanged.
Fields indexed by *slot* ``s = ladder * n_temperatures + rung`` describe a ladder's rungs
rather than a walker: the ladder's kT at each rung, and the swap statistics of pair
(rung, rung + 1), which live at the slot of the lower rung. A shard therefore has to hold
whole ladders (:meth:`ReplicaExchange.init` checks it from the generator's walker indices).

Randomness. The swap test for pair (r, r + 1) of ladder ℓ uses the uniform drawn by walker
``ℓ n_T + r`` (its own counter-based stream), and the stochastic scheme's even/odd choice uses
walker ``ℓ n_T``'s. Every walker draws on every swap round, so runs are bitwise reproducible,
restartable from a checkpoint, and equal in any sharding that keeps ladders whole.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, replace
from typing import Optional, Sequence

import numpy as np
import torch

from .annealed import AnnealedLangevin, PredictorCorrector
from .base import Integrator, State, UnderdampedState, walker_view, with_temperature
from .metric import PreconditionedState
from .metropolis import AdaptiveState
from .sgld import SGLD

DETERMINISTIC = "deterministic"
STOCHASTIC = "stochastic"

#: Length, in swap rounds, of the first ladder-adaptation epoch; each later epoch is twice as
#: long (Syed et al. 2022, Algorithm 4), so later ladders rest on more statistics.
FIRST_LADDER_EPOCH = 16

#: Floor on a pair's estimated rejection rate when the ladder is adapted: a pair that never
#: rejected would make the barrier estimate flat and its inverse ill-defined.
MIN_REJECTION = 1e-3


def geometric_ladder(n_temperatures: int, max_ratio: float) -> tuple[float, ...]:
    """Temperatures T_k / T_0 = max_ratio^(k / (n − 1)), k = 0 … n − 1.

    Parameters
    ----------
    n_temperatures : int
        Number of rungs n ≥ 2.
    max_ratio : float
        T_hottest / T_coldest, > 1.

    Returns
    -------
    tuple of float, length ``n_temperatures``
        Ratios to the coldest temperature, starting at exactly 1.
    """
    if isinstance(n_temperatures, bool) or not isinstance(n_temperatures, (int, np.integer)) or n_temperatures < 2:
        raise ValueError(f"n_temperatures must be an integer >= 2, got {n_temperatures!r}")
    try:
        ratio = float(max_ratio)
    except (TypeError, ValueError):
        raise ValueError(f"max_ratio must be a number > 1, got {max_ratio!r}") from None
    if not math.isfinite(ratio) or ratio <= 1.0:
        raise ValueError(f"max_ratio must be a finite number > 1 (hottest over coldest), got {max_ratio!r}")
    n = int(n_temperatures)
    return tuple(1.0 if k == 0 else ratio ** (k / (n - 1)) for k in range(n))


def _check_ladder(ladder) -> tuple[float, ...]:
    try:
        values = tuple(float(r) for r in ladder)
    except TypeError:
        raise ValueError(f"ladder must be a sequence of temperature ratios, got {ladder!r}") from None
    if len(values) < 2:
        raise ValueError(f"ladder must hold at least 2 temperatures, got {list(values)}")
    if values[0] != 1.0:
        raise ValueError(f"ladder holds temperatures relative to the system's, so it must start at "
                         f"1.0; got {list(values)}")
    if not all(math.isfinite(v) for v in values) or any(b <= a for a, b in zip(values, values[1:])):
        raise ValueError(f"ladder must be finite and strictly increasing (coldest first), got {list(values)}")
    return values


# --------------------------------------------------------------------------- states
_REPLICA_FIELDS = [
    ("rung", Optional[torch.Tensor], None),
    ("ladder", Optional[torch.Tensor], None),
    ("swap_attempts", Optional[torch.Tensor], None),
    ("swap_accepts", Optional[torch.Tensor], None),
    ("swap_acceptance_sum", Optional[torch.Tensor], None),
    ("trip_phase", Optional[torch.Tensor], None),
    ("round_trips", Optional[torch.Tensor], None),
    ("steps_done", int, 0),
    ("stats_since", int, 0),
]

_REPLICA_DOC = """{base} of one walker per replica, plus the replica-exchange bookkeeping.

    Walker layout (index = walker): ``rung`` (int64, temperature index, 0 = coldest),
    ``trip_phase`` (int64: 0 before the walker first reaches rung 0, 1 after rung 0, 2 after
    the hottest rung following rung 0), ``round_trips`` (int64, completed coldest → hottest →
    coldest trips). ``kT`` (inherited) is the walker's current thermal energy.

    Slot layout (index = ladder · n_temperatures + rung): ``ladder`` (float64, the kT of that
    rung), and for pair (rung, rung + 1), ``swap_attempts`` and ``swap_accepts`` (int64) and
    ``swap_acceptance_sum`` (float64, Σ min(1, exp(log α)) over attempts); the last rung's
    slot is unused (0).

    Counters (Python ints): ``steps_done`` (steps since ``init``) and ``stats_since`` (the
    ``steps_done`` at which swap statistics and round trips were last reset: the end of
    burn-in).
    """


def _replica_class(base: type) -> type:
    name = "Replica" + base.__name__
    cls = dataclasses.make_dataclass(name, _REPLICA_FIELDS, bases=(base,), frozen=True)
    cls.__module__ = __name__
    cls.__doc__ = _REPLICA_DOC.format(base=base.__name__)
    return cls


ReplicaState = _replica_class(State)
ReplicaUnderdampedState = _replica_class(UnderdampedState)
ReplicaAdaptiveState = _replica_class(AdaptiveState)
ReplicaPreconditionedState = _replica_class(PreconditionedState)

_REPLICA_OF = {State: ReplicaState, UnderdampedState: ReplicaUnderdampedState,
               AdaptiveState: ReplicaAdaptiveState, PreconditionedState: ReplicaPreconditionedState}


_LAYOUTS: dict = {}


def _layout(n: int, n_T: int, device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Constant index tensors of a run, cached: walker indices 0..n−1 ``(n,)``, the first slot
    of each walker's ladder ``(n,)``, and the parity of each slot's pair ``(1, n_T)`` (2 for the
    last slot, which has no pair, so it never matches a parity)."""
    key = (n, n_T, str(device))
    if key not in _LAYOUTS:
        walkers = torch.arange(n, device=device)
        parity = torch.arange(n_T, device=device) % 2
        parity[-1] = 2
        _LAYOUTS[key] = (walkers, walkers - walkers % n_T, parity[None, :])
    return _LAYOUTS[key]


# --------------------------------------------------------------------------- the wrapper
@dataclass(frozen=True)
class ReplicaExchange(Integrator):
    r"""Replica exchange over ladders of temperatures, around any exact-energy integrator.

    Each step moves every walker with ``inner`` at its own temperature kT_w. Every
    ``swap_every`` steps (at the start of steps 0, k, 2k, …), each ladder attempts swaps of
    neighbouring rungs (i, i + 1), holding walkers a and b, with the Metropolis probability

    .. math:: \alpha = \min\bigl(1, \exp[(\beta_i - \beta_{i+1})(U_a - U_b)]\bigr),
              \qquad \beta = 1/kT,

    which leaves the product of the rungs' Boltzmann laws invariant (Swendsen & Wang 1986;
    Geyer 1991; Hukushima & Nemoto 1996). An accepted swap exchanges the walkers' kT, their
    temperature-bound settings (``inner.temperature_fields``, e.g. MALA's adapted step size)
    and, for schemes with velocities, rescales each velocity by sqrt(kT_new / kT_old), which
    maps the Maxwell–Boltzmann law of one rung onto the other's (Sugita & Okamoto 1999).

    Pairs. ``scheme='deterministic'`` (the default) is the non-reversible deterministic
    even/odd scheme (DEO) of Syed, Bouchard-Côté, Deligiannidis & Doucet, "Non-reversible
    parallel tempering: a scalable highly parallel MCMC scheme", JRSS-B 84 (2022): even pairs
    (0,1), (2,3), … on even rounds and odd pairs on odd rounds. Labels then travel the ladder
    ballistically instead of diffusively, and the round-trip rate stays bounded below,
    tending to 1/(2 + 2Λ) as rungs are added (Λ, the communication barrier), where the
    reversible scheme's decays like 1/N. ``scheme='stochastic'`` picks even or odd pairs with
    probability 1/2 at each round (SEO, the classical reversible choice). Both are exact.

    Ladder adaptation (``adapt_ladder=True``, burn-in only): swap rounds are grouped into
    epochs of 16, 32, 64, … rounds; at each epoch's end every ladder re-places its interior
    temperatures so that the estimated rejection rates become equal (Syed et al. 2022,
    §5.1): with r_i the mean rejection probability of pair i, Λ(β) is the piecewise-linear
    interpolation of (β_i, Σ_{j<i} r_j), and the new β_k solve Λ(β_k) = k Λ / (N − 1). The
    end points stay. Each ladder uses only its own statistics (shards stay exact), and the
    ladder is frozen when burn-in ends, so production is a fixed, exact kernel.

    Parameters
    ----------
    inner : Integrator
        The scheme moving each replica: BAOAB, OBABO, ULA, Brownian, MALA, HMC or
        RandomWalkMetropolis. Its settings are shared by all rungs at the start; an adapted
        step size (``target_accept``) is then tuned per rung. (Unadjusted schemes sample a
        slightly biased law at each rung while the swaps assume the Boltzmann law, so the
        combination is exact only as the step size goes to zero, like the scheme itself.)
    ladder : sequence of float
        Temperatures relative to the system's, T_k / T_0, strictly increasing from 1.0
        (default: :func:`geometric_ladder` ``(8, 4.0)``). Rung k runs at kT = system.kT·ladder[k].
    swap_every : int
        Steps between swap rounds.
    scheme : {'deterministic', 'stochastic'}
    adapt_ladder : bool
        Adapt the interior temperatures during burn-in.

    Notes
    -----
    ``n_walkers`` must be a multiple of ``len(ladder)``. Per frame the executor records
    :meth:`recorded_fields` (``temperature_index``, ``kT``); :meth:`summary` gives the swap
    statistics per ladder and pair, the ladders and the round trips, all counted from the end
    of burn-in. The swap schedule branches on a Python step counter, so ``compile=True`` is
    not supported (:attr:`compilable` is False).
    """

    inner: Integrator
    ladder: Sequence[float] = geometric_ladder(8, 4.0)
    swap_every: int = 10
    scheme: str = DETERMINISTIC
    adapt_ladder: bool = False

    needs_energy = True
    compilable = False  # the swap schedule branches on the Python step counter

    def __post_init__(self):
        if not isinstance(self.inner, Integrator):
            raise TypeError(f"inner must be a langevin_md Integrator, got {type(self.inner).__name__}")
        if isinstance(self.inner, ReplicaExchange):
            raise TypeError("inner must be a plain integrator, not another ReplicaExchange")
        if isinstance(self.inner, (SGLD, AnnealedLangevin, PredictorCorrector)):
            raise TypeError(
                f"ReplicaExchange cannot wrap {type(self.inner).__name__}: swaps need the exact "
                "energy of a fixed target (a minibatch energy or an annealing schedule makes them "
                "wrong). Use BAOAB, OBABO, ULA, Brownian, MALA, HMC or RandomWalkMetropolis."
            )
        object.__setattr__(self, "ladder", _check_ladder(self.ladder))
        if isinstance(self.swap_every, bool) or not isinstance(self.swap_every, (int, np.integer)) or self.swap_every < 1:
            raise ValueError(f"swap_every must be a positive integer (steps), got {self.swap_every!r}")
        if self.scheme not in (DETERMINISTIC, STOCHASTIC):
            raise ValueError(f"scheme must be 'deterministic' or 'stochastic', got {self.scheme!r}")
        if not isinstance(self.adapt_ladder, bool):
            raise TypeError(f"adapt_ladder must be True or False, got {self.adapt_ladder!r}")

    # ------------------------------------------------------------------ delegated traits
    @property
    def n_temperatures(self) -> int:
        return len(self.ladder)

    @property
    def walker_block(self) -> int:
        """Consecutive walkers this scheme couples (one ladder): a Dask shard keeps them together."""
        return self.n_temperatures

    @property
    def metropolis_adjusted(self) -> bool:
        return self.inner.metropolis_adjusted

    @property
    def has_velocities(self) -> bool:
        return self.inner.has_velocities

    @property
    def temperature_fields(self) -> tuple:
        return self.inner.temperature_fields

    @property
    def adaptive(self) -> bool:
        return self.adapt_ladder or self.inner.adaptive

    def check_system(self, system):
        self.inner.check_system(system)
        if getattr(system, "score_only", False):
            raise ValueError(f"ReplicaExchange needs energies for its swap test, but "
                             f"{type(system).__name__} only provides a score")

    # ------------------------------------------------------------------ init
    def _check_walkers(self, n: int, generator) -> None:
        n_T = self.n_temperatures
        if n % n_T:
            raise ValueError(f"n_walkers ({n}) must be a multiple of the number of temperatures "
                             f"({n_T}): walkers form whole ladders of {n_T} replicas")
        idx = getattr(generator, "walker_indices", None)
        if idx is None:
            return
        idx = np.asarray(idx).reshape(-1, n_T)
        whole = (idx[:, 0] % n_T == 0) & (idx == idx[:, :1] + np.arange(n_T)).all(1)
        if not whole.all():
            raise ValueError(
                f"the walkers of this run (global indices {idx.ravel()[:8].tolist()}...) do not form "
                f"whole ladders: a shard must start at a multiple of {n_T} and hold consecutive "
                f"walkers, {n_T} per ladder"
            )

    def init(self, system, positions, generator):
        n = positions.shape[0]
        self._check_walkers(n, generator)
        inner = self.inner.init(system, positions, generator)
        cls = _REPLICA_OF.get(type(inner))
        if cls is None:
            raise TypeError(f"ReplicaExchange cannot wrap a scheme whose state is {type(inner).__name__}")
        n_T, dev = self.n_temperatures, positions.device
        rung = torch.arange(n, device=dev) % n_T
        ladder = system.kT * torch.tensor(self.ladder, dtype=torch.float64, device=dev).repeat(n // n_T)
        inner = with_temperature(system, inner, ladder.to(positions.dtype))
        zeros = torch.zeros(n, dtype=torch.int64, device=dev)
        fields = {f.name: getattr(inner, f.name) for f in dataclasses.fields(inner)}
        return cls(**fields, rung=rung, ladder=ladder, swap_attempts=zeros, swap_accepts=zeros,
                   swap_acceptance_sum=torch.zeros(n, dtype=torch.float64, device=dev),
                   trip_phase=(rung == 0).long(), round_trips=zeros, steps_done=0, stats_since=0)

    # ------------------------------------------------------------------ step
    def step(self, system, state, generator):
        s = state.steps_done
        if s % self.swap_every == 0:
            state = self.swap(state, generator, s // self.swap_every)
        new, info = self.inner.step(system, state, generator)
        if type(new) is not type(state):  # an inner scheme that built a fresh state
            new = replace(state, **{f.name: getattr(new, f.name) for f in dataclasses.fields(new)})
        return replace(new, steps_done=s + 1), info

    def swap(self, state, generator, round_index: int):
        """One round of neighbour swaps in every ladder.

        Parameters
        ----------
        state : ReplicaState (or a subclass)
        generator : WalkerRNG or CounterStream
            Every walker draws one uniform (two for the stochastic scheme).
        round_index : int
            Rounds before this one; its parity picks the pairs of the deterministic scheme.

        Returns
        -------
        state
            With labels, kT, temperature fields, velocities and statistics updated.
        """
        n_T = self.n_temperatures
        rung = state.rung
        n = rung.shape[0]
        L = n // n_T
        walkers, base, pair_parity = _layout(n, n_T, rung.device)
        stochastic = self.scheme == STOCHASTIC
        u = generator.uniform((2,) if stochastic else (), dtype=torch.float64).to(rung.device)
        # Everything below is in slot layout (L, n_T); column k is pair (k, k + 1), and the
        # last column, which has no pair, is never active.
        slot = base + rung
        walker_at = torch.empty_like(rung).scatter_(0, slot, walkers)  # slot -> walker
        energy = state.energy.to(torch.float64)[walker_at].reshape(L, n_T)
        beta = 1.0 / state.ladder.reshape(L, n_T)
        log_alpha = (beta - beta.roll(-1, 1)) * (energy - energy.roll(-1, 1))
        # A non-finite energy gives NaN: reject, as for a zero-density Metropolis proposal.
        log_alpha = torch.nan_to_num(log_alpha, nan=-math.inf)
        if stochastic:
            parity = (u[:, 1].reshape(L, n_T)[:, :1] < 0.5).long()  # drawn by each ladder's slot 0
            active = pair_parity == parity
            u = u[:, 0]
        else:
            active = (pair_parity == round_index % 2).expand(L, n_T)
        accept = active & (torch.log(u.reshape(L, n_T)) < log_alpha)

        acc = accept.long()
        delta = (acc - acc.roll(1, 1)).reshape(n)  # +1: moves up a rung, −1: down
        new_rung = rung + delta[slot]
        # The walker that held each walker's new rung: its temperature-bound fields come over.
        new_slot = base + new_rung
        partner = walker_at[new_slot]
        kT = state.ladder[new_slot].to(state.kT.dtype)
        fields = {name: getattr(state, name)[partner] for name in self.temperature_fields}
        v = getattr(state, "velocities", None)
        if v is not None:
            fields["velocities"] = v * walker_view(torch.sqrt(kT / state.kT), v.ndim)

        prob = active * torch.exp(torch.clamp(log_alpha, max=0.0))
        at_cold = new_rung == 0
        phase = state.trip_phase
        trips = state.round_trips + (at_cold & (phase == 2))
        # Phase 1 at the coldest rung; 1 -> 2 at the hottest; otherwise unchanged.
        phase = torch.where(at_cold, 1, phase + ((new_rung == n_T - 1) & (phase == 1)))
        return replace(state, rung=new_rung, kT=kT, trip_phase=phase, round_trips=trips,
                       swap_attempts=state.swap_attempts + active.reshape(n),
                       swap_accepts=state.swap_accepts + acc.reshape(n),
                       swap_acceptance_sum=state.swap_acceptance_sum + prob.reshape(n), **fields)

    # ------------------------------------------------------------------ adaptation
    def adapt(self, state, info):
        state = self.inner.adapt(state, info)
        if not self.adapt_ladder:
            return state
        s = state.steps_done - 1  # the step just taken
        if s % self.swap_every:
            return state
        epochs, rest = divmod(s // self.swap_every + 1, FIRST_LADDER_EPOCH)
        # Epoch ends after 16, 16 + 32, 16 + 32 + 64, ... rounds: epochs + 1 a power of two.
        if rest or (epochs + 1) & epochs:
            return state
        return self.update_ladder(state)

    def update_ladder(self, state):
        """Re-place each ladder's interior temperatures to equalise rejection rates.

        Uses the swap statistics gathered since they were last reset, then resets them.
        Velocities are rescaled to the walkers' new temperatures.
        """
        n_T = self.n_temperatures
        n = state.rung.shape[0]
        L = n // n_T
        attempts = state.swap_attempts.reshape(L, n_T)[:, :-1]
        mean_acc = state.swap_acceptance_sum.reshape(L, n_T)[:, :-1] / attempts.clamp(min=1)
        rejection = (1.0 - mean_acc).clamp(min=MIN_REJECTION)
        beta = 1.0 / state.ladder.reshape(L, n_T)
        cum = torch.cat([torch.zeros_like(beta[:, :1]), torch.cumsum(rejection, 1)], 1)  # Λ at rungs
        targets = cum[:, -1:] * torch.linspace(0.0, 1.0, n_T, dtype=cum.dtype, device=cum.device)
        k = torch.searchsorted(cum, targets.contiguous()).clamp(1, n_T - 1)
        c0, c1 = cum.gather(1, k - 1), cum.gather(1, k)
        b0, b1 = beta.gather(1, k - 1), beta.gather(1, k)
        new_beta = b0 + (targets - c0) / (c1 - c0) * (b1 - b0)
        new_beta = torch.cat([beta[:, :1], new_beta[:, 1:-1], beta[:, -1:]], 1)
        # A ladder with an unattempted pair has no estimate: it keeps its temperatures.
        usable = (attempts > 0).all(1, keepdim=True)
        ladder = torch.where(usable, 1.0 / new_beta, state.ladder.reshape(L, n_T)).reshape(n)
        walkers = torch.arange(n, device=state.rung.device)
        kT = ladder[walkers - walkers % n_T + state.rung].to(state.kT.dtype)
        fields = {}
        v = getattr(state, "velocities", None)
        if v is not None:
            fields["velocities"] = v * walker_view(torch.sqrt(kT / state.kT), v.ndim)
        return self._reset_statistics(replace(state, ladder=ladder, kT=kT, **fields), keep_trips=True)

    def end_adaptation(self, state):
        """Freeze the ladder (and the inner scheme's settings); count statistics from here."""
        return self._reset_statistics(self.inner.end_adaptation(state), keep_trips=False)

    @staticmethod
    def _reset_statistics(state, keep_trips: bool):
        zeros = torch.zeros_like(state.swap_attempts)
        fields = dict(swap_attempts=zeros, swap_accepts=zeros,
                      swap_acceptance_sum=torch.zeros_like(state.swap_acceptance_sum))
        if not keep_trips:
            fields.update(round_trips=zeros, trip_phase=(state.rung == 0).long(),
                          stats_since=state.steps_done)
        return replace(state, **fields)

    # ------------------------------------------------------------------ reporting
    def recorded_fields(self, state):
        """``temperature_index`` (int64) and ``kT`` (energy units) of each walker, ``(n_walkers,)``."""
        return {"temperature_index": state.rung, "kT": state.kT}

    def summary(self, state):
        """Per-ladder statistics since the end of burn-in (or since ``init`` without burn-in).

        Returns
        -------
        dict of torch.Tensor, every one with ``n_ladders`` rows
            ``ladder_kT`` (n_ladders, n_T): kT of each rung (energy units).
            ``swap_attempts``, ``swap_accepts`` (n_ladders, n_T − 1): per pair (k, k + 1).
            ``swap_acceptance`` (n_ladders, n_T − 1): mean Metropolis probability of the
            attempts (NaN where none), a lower-variance estimate than accepts / attempts.
            ``communication_barrier`` (n_ladders,): Λ̂ = Σ_k (1 − acceptance_k).
            ``round_trips`` (n_ladders,): completed coldest → hottest → coldest trips.
            ``steps`` (n_ladders,): steps over which these were counted.
            ``swap_rounds`` (n_ladders,): swap rounds in those steps.
        """
        n_T = self.n_temperatures
        n = state.rung.shape[0]
        L = n // n_T
        attempts = state.swap_attempts.reshape(L, n_T)[:, :-1]
        acceptance = state.swap_acceptance_sum.reshape(L, n_T)[:, :-1] / attempts
        k = self.swap_every
        rounds = -(-state.steps_done // k) - -(-state.stats_since // k)  # steps s ≡ 0 mod k
        full = lambda v: torch.full((L,), v, dtype=torch.int64, device=state.rung.device)  # noqa: E731
        return {
            "ladder_kT": state.ladder.reshape(L, n_T),
            "swap_attempts": attempts,
            "swap_accepts": state.swap_accepts.reshape(L, n_T)[:, :-1],
            "swap_acceptance": acceptance,
            "communication_barrier": (1.0 - acceptance).sum(1),
            "round_trips": state.round_trips.reshape(L, n_T).sum(1),
            "steps": full(state.steps_done - state.stats_since),
            "swap_rounds": full(rounds),
        }
