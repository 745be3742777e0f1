"""The integrator protocol: frozen settings with ``init`` and ``step`` over an immutable state.

A state caches the energy and forces at its positions, so a step costs one force evaluation.
States are never mutated in place: a step returns a new state (``dataclasses.replace``), which
keeps checkpoints and Metropolis rejections trivially correct.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Optional

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
    """

    positions: torch.Tensor
    energy: torch.Tensor
    forces: torch.Tensor

    def tensors(self) -> dict[str, torch.Tensor]:
        """All tensor fields by name (for checkpoints and device moves)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if isinstance(getattr(self, f.name), torch.Tensor)}


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

    def check_system(self, system: System) -> None:
        """Refuse systems this scheme cannot sample, with an error that names the alternative."""
        if system.constrained:
            raise ValueError(
                f"{type(self).__name__} in the torch executor does not handle holonomic "
                "constraints, and this system has some. Use backend='openmm' (which constrains "
                "positions and velocities), or build the system with constraints=None."
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
    """Sum over event dimensions, ``(n, *event_shape) -> (n,)``."""
    return t.reshape(t.shape[0], -1).sum(-1)


def exp_friction(friction: float, h: float) -> float:
    return math.exp(-friction * h)
