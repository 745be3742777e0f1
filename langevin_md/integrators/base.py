"""The integrator protocol: frozen settings with ``init`` and ``step`` over an immutable state.

A state caches the energy and forces at its positions, so a step costs one force evaluation.
States are never mutated in place: a step returns a new state (``dataclasses.replace``), which
keeps checkpoints and Metropolis rejections trivially correct.

Temperature is per walker when a state carries ``kT``, a ``(n_walkers,)`` tensor; otherwise
every walker runs at the system's scalar ``kT``, with bitwise the arithmetic of a scalar.
Integrators read it through :func:`thermal_energy`. Replica exchange
(:mod:`langevin_md.integrators.tempering`) rests on this.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, replace
from typing import Optional, Union

import torch

from ..random import WalkerRNG
from ..systems.base import System


@dataclass(frozen=True)
class State:
    """Positions plus the energy and forces cached at them.

    Attributes
    ----------
    positions : torch.Tensor, shape ``(n_walkers, *event_shape)``
    energy : torch.Tensor, shape ``(n_walkers,)``
        U(positions).
    forces : torch.Tensor, shape ``(n_walkers, *event_shape)``
        −∇U(positions).
    kT : torch.Tensor or None, shape ``(n_walkers,)``
        Each walker's thermal energy (energy units), in the positions' dtype; None means the
        system's scalar ``kT`` for every walker. Set it with :func:`with_temperature`.
    """

    positions: torch.Tensor
    energy: torch.Tensor
    forces: torch.Tensor
    kT: Optional[torch.Tensor] = None

    def tensors(self) -> dict[str, torch.Tensor]:
        """All tensor fields by name (for checkpoints and device moves)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if isinstance(getattr(self, f.name), torch.Tensor)}


def evolve(state: State, **changes) -> State:
    """``dataclasses.replace(state, **changes)`` for the hot path.

    States are frozen records without ``__post_init__``, so a copy of the instance dictionary
    with some fields swapped is the same object ``replace`` builds, at a fifth of its cost
    (``replace`` re-runs the generated ``__init__``: ~7 µs, six times per BAOAB step).
    ``changes`` must name existing fields.
    """
    if torch.compiler.is_compiling():  # the tracer follows replace, not raw instance dicts
        return replace(state, **changes)
    new = object.__new__(type(state))
    fields_ = new.__dict__
    fields_.update(state.__dict__)
    fields_.update(changes)
    return new


@dataclass(frozen=True)
class UnderdampedState(State):
    """A state with velocities, shape ``(n_walkers, *event_shape)`` (length/time)."""

    velocities: Optional[torch.Tensor] = None


@dataclass(frozen=True)
class StepInfo:
    """What a step reports besides the new state.

    Attributes
    ----------
    accepted : torch.Tensor or None, shape ``(n_walkers,)``, bool
        Metropolis decisions (None for unadjusted schemes).
    acceptance_probability : torch.Tensor or None, shape ``(n_walkers,)``
        min(1, Metropolis–Hastings ratio); what step-size adaptation listens to.
    """

    accepted: Optional[torch.Tensor] = None
    acceptance_probability: Optional[torch.Tensor] = None


class Integrator:
    """Base of all integrators. Subclasses are frozen dataclasses of settings.

    Methods to implement: :meth:`init` and :meth:`step`. Schemes with tunable settings also
    implement :meth:`adapt` (called by the sampler after every burn-in step) and
    :meth:`end_adaptation` (called once when burn-in ends, freezing the settings so that the
    production chain is a fixed, exact Markov kernel).
    """

    #: True for schemes whose stationary law is exact thanks to a Metropolis test.
    metropolis_adjusted = False
    #: True for schemes that carry velocities.
    has_velocities = False
    #: True for schemes that need an energy (not just a score).
    needs_energy = False
    #: False for schemes whose step branches on Python counters in the state (replica
    #: exchange's swap schedule): ``torch.compile`` would recompile them at every chunk, so
    #: executors run them eagerly or refuse ``compile=True``.
    compilable = True
    #: Per-walker state fields that belong to the walker's temperature rather than to its
    #: configuration (e.g. an adapted step size). Replica exchange hands them over with the
    #: temperature when two walkers swap, so a hot replica never inherits a cold step size.
    temperature_fields: tuple = ()
    #: True for schemes that enforce a system's holonomic constraints (SHAKE/RATTLE, see
    #: :mod:`langevin_md.integrators.constraints`); the others refuse constrained systems.
    supports_constraints = False

    @property
    def adaptive(self) -> bool:
        """True when :meth:`adapt` changes the kernel during burn-in."""
        return False

    def init(self, system: System, positions: torch.Tensor, generator: WalkerRNG) -> State:
        """Build the first state at ``positions`` (one force evaluation)."""
        energy, forces = system.energy_and_forces(positions)
        return State(positions, energy, forces)

    def step(self, system: System, state: State, generator: WalkerRNG) -> tuple[State, StepInfo]:
        raise NotImplementedError

    def adapt(self, state: State, info: StepInfo) -> State:
        """Update adaptive settings held in the state during burn-in (default: nothing)."""
        return state

    def end_adaptation(self, state: State) -> State:
        """Freeze adaptive settings at the end of burn-in (default: nothing)."""
        return state

    def recorded_fields(self, state: State) -> dict[str, torch.Tensor]:
        """Per-walker quantities to record at every frame, each of shape ``(n_walkers, ...)``.

        The executor stores them as ``SampleResult.fields[name]``, numpy arrays of shape
        ``(n_frames, n_walkers, ...)``. Default: none.
        """
        return {}

    def summary(self, state: State) -> dict[str, torch.Tensor]:
        """Tensors of any shape describing the whole run, taken once at its end.

        The executor stores them as ``SampleResult.integrator_summary``. Default: none.
        """
        return {}

    def check_system(self, system: System) -> None:
        """Refuse systems this scheme cannot sample, with an error that names the alternative."""
        if system.constrained and self.supports_constraints:
            from ..systems.constraints import constraints_of

            constraints_of(system)  # raises, naming the fix, when there is no constraint list
        if system.constrained and not self.supports_constraints:
            raise ValueError(
                f"{type(self).__name__} does not handle holonomic constraints, and this system has "
                "some: an overdamped or Metropolis-adjusted update has no constrained form here. "
                "Use BAOAB or OBABO (which constrain positions with SHAKE and velocities with "
                "RATTLE), or build the system with constraints=None."
            )
        if self.needs_energy and getattr(system, "score_only", False):
            raise ValueError(
                f"{type(self).__name__} needs an energy for its Metropolis test, but "
                f"{type(system).__name__} only provides a score. Use ULA or an annealed sampler."
            )


def positive(name: str, value) -> float:
    """Validate an integrator setting: a finite positive number."""
    from ..systems.base import check_positive

    return check_positive(name, value)


def non_negative(name: str, value) -> float:
    from ..systems.base import check_positive

    return check_positive(name, value, allow_zero=True)


def walker_view(t: torch.Tensor, ndim: int) -> torch.Tensor:
    """Reshape a per-walker tensor ``(n,)`` to broadcast against ``(n, *event_shape)``."""
    return t.reshape(t.shape + (1,) * (ndim - 1))


def sum_event(t: torch.Tensor) -> torch.Tensor:
    """Sum over event dimensions, ``(n, *event_shape) -> (n,)``, bitwise as ``sum(-1)``.

    Torch reduces a short inner dimension with a slow per-row loop: summing ``(10⁴, 2)`` over
    its last axis costs ~250 µs on one CPU thread, twenty times a column add. For up to
    :data:`SHORT_EVENT` coordinates torch's order is the sequential one, so column adds give
    the same sums bit for bit; the final ``+ 0.0`` turns an all-(−0) sum into +0, as torch's
    reduction (which starts from +0) does, and changes no other value.
    """
    flat = t.reshape(t.shape[0], -1)
    k = flat.shape[1]
    # Checked on the CPU for float32/float64 (tests/integrators/test_operators.py); half
    # precisions accumulate in float32 there, and other devices may pair the adds.
    if not 1 <= k <= SHORT_EVENT or flat.dtype not in (torch.float64, torch.float32) or flat.device.type != "cpu":
        return flat.sum(-1)
    out = flat[:, 0] + 0.0
    for j in range(1, k):
        out.add_(flat[:, j])
    return out


#: Event sizes up to which :func:`sum_event` adds columns (torch sums them in that order).
SHORT_EVENT = 4


#: Integer (or, for 16 bytes, complex) dtypes a walker's whole row can be reinterpreted as.
_ROW_DTYPES = {2: torch.int16, 4: torch.int32, 8: torch.int64, 16: torch.complex128}


def select_walkers(take_new: torch.Tensor, new: torch.Tensor, old: torch.Tensor) -> torch.Tensor:
    """Per walker, ``new``'s row where ``take_new`` else ``old``'s: ``torch.where`` by walker.

    Torch's ``where`` with a ``(n, 1, ...)`` condition broadcast over short rows is slow on
    the CPU (100 µs for ``(10⁴, 2)`` float64, ten times a one-dimensional select). When a
    row is 2, 4, 8 or 16 bytes (a 2-d float64 or float32 event, say) it is reinterpreted as
    one integer (or complex) element and selected with a one-dimensional condition: the
    result holds the same bits, NaN payloads and signed zeros included. Tensors that need
    gradients, rows at odd storage offsets and compiled graphs take ``torch.where``.

    Parameters
    ----------
    take_new : torch.Tensor of bool, shape ``(n_walkers,)``
    new, old : torch.Tensor, shape ``(n_walkers, *event_shape)``, one dtype and device

    Returns
    -------
    torch.Tensor
        A new tensor of ``new``'s shape.
    """
    if new.ndim == 1:
        return torch.where(take_new, new, old)
    n = new.shape[0]
    row_bytes = math.prod(new.shape[1:]) * new.element_size()
    as_row = _ROW_DTYPES.get(row_bytes)
    per_row = math.prod(new.shape[1:])
    # Compiled graphs fuse the select anyway, and inductor handles dtype views poorly; a dtype
    # view has no gradient, and needs rows that start at multiples of the wider element.
    if (not torch.compiler.is_compiling() and as_row is not None and n > 0 and new.dtype == old.dtype
            and new.is_contiguous() and old.is_contiguous()
            and new.storage_offset() % per_row == 0 and old.storage_offset() % per_row == 0
            and not (new.requires_grad or old.requires_grad)):
        rows = torch.where(take_new, new.reshape(n, -1).view(as_row).reshape(n),
                           old.reshape(n, -1).view(as_row).reshape(n))
        return rows.reshape(n, 1).view(new.dtype).reshape(new.shape)
    return torch.where(walker_view(take_new, new.ndim), new, old)


def thermal_energy(system: System, state: State, ndim: int = 1) -> Union[float, torch.Tensor]:
    """The thermal energy each walker runs at, ready to broadcast.

    Parameters
    ----------
    system : System
    state : State
    ndim : int
        Rank of the tensor it will be combined with: 1 for per-walker quantities ``(n,)``,
        ``1 + len(event_shape)`` for positions.

    Returns
    -------
    float or torch.Tensor
        ``system.kT`` (a Python float, so scalar runs keep their exact arithmetic) when the
        state carries no ``kT``; else ``state.kT`` viewed as ``(n_walkers, 1, ...)`` with
        ``ndim`` dimensions.
    """
    if state.kT is None:
        return system.kT
    return walker_view(state.kT, ndim)


def with_temperature(system: System, state: State, kT) -> State:
    """Give every walker its own thermal energy ``kT``, rescaling velocities to match.

    Velocities (when the state has them) are multiplied by sqrt(kT_new/kT_old) per walker,
    which maps a Maxwell–Boltzmann draw at the old temperature onto one at the new.

    Parameters
    ----------
    system : System
    state : State
    kT : torch.Tensor or array-like, shape ``(n_walkers,)``, or None
        Thermal energies (energy units), positive. None returns to the system's scalar kT.

    Returns
    -------
    State
        Of the same class as ``state``.
    """
    x = state.positions
    if kT is not None:
        kT = torch.as_tensor(kT).to(dtype=x.dtype, device=x.device)
        if tuple(kT.shape) != (x.shape[0],):
            raise ValueError(f"kT must have shape ({x.shape[0]},), one value per walker; got "
                             f"shape {tuple(kT.shape)}")
        if not bool(torch.isfinite(kT).all() & (kT > 0).all()):
            raise ValueError(f"kT must be finite and positive for every walker, got {kT.tolist()}")
    v = getattr(state, "velocities", None)
    if v is None:
        return replace(state, kT=kT)
    old = thermal_energy(system, state, 1)
    new = system.kT if kT is None else kT
    ratio = torch.as_tensor(new, dtype=v.dtype, device=v.device) / torch.as_tensor(old, dtype=v.dtype, device=v.device)
    ratio = ratio.expand(x.shape[0])
    return replace(state, kT=kT, velocities=v * walker_view(torch.sqrt(ratio), v.ndim))
