"""Exceptions shared across the package, and the one place their messages are written.

Both executors raise :class:`NonFiniteStateError` with messages built here, so a user reads
the same diagnosis whichever executor ran. :class:`ConfigError` is raised for bad config
files.
"""

from __future__ import annotations

from typing import Optional, Sequence


class ConfigError(ValueError):
    """A config file is malformed; the message names the key and what is allowed."""


class NonFiniteStateError(FloatingPointError):
    """The state went NaN or infinite.

    Attributes
    ----------
    result : SampleResult or None
        Every frame recorded before it (None when the starting state was refused).
    walkers : list of int
        Global indices of the walkers that went non-finite.
    steps : tuple of int
        ``(last step known finite, first step known non-finite)``.
    """

    def __init__(self, message: str, result=None, walkers: Sequence[int] = (),
                 steps: tuple[int, int] = (0, 0)):
        super().__init__(message)
        self.result = result
        self.walkers = list(walkers)
        self.steps = tuple(steps)


def _walker_list(walkers: Sequence[int]) -> str:
    walkers = list(walkers)
    return ", ".join(map(str, walkers[:10])) + (" ..." if len(walkers) > 10 else "")


def nonfinite_start_message(walkers: Sequence[int], n_walkers: int) -> str:
    """The message for a starting state that is already non-finite."""
    return (f"the starting state is not finite for walkers [{_walker_list(walkers)}] "
            f"({len(walkers)} of {n_walkers}): the initial positions have a non-finite energy "
            "or force (overlapping atoms, a point outside the potential's domain, or NaN "
            "coordinates)")


def nonfinite_message(walkers: Sequence[int], n_walkers: int, steps: tuple[int, int],
                      integrator_name: str) -> str:
    """The message for a state that went non-finite between ``steps[0]`` and ``steps[1]``.

    Parameters
    ----------
    walkers : sequence of int
        Global indices of the walkers concerned.
    n_walkers : int
        Walkers in the run.
    steps : (int, int)
        Last step known finite and first step known non-finite.
    integrator_name : str
        Named in the advice about step sizes.
    """
    first, last = steps
    when = f"at step {last}" if first + 1 >= last else f"between steps {first + 1} and {last}"
    return (f"non-finite state {when} for walkers [{_walker_list(walkers)}] ({len(walkers)} of "
            f"{n_walkers}). Likely causes: a step size too large for the stiffest mode of the "
            f"system (try a smaller step for {integrator_name}), a start far from equilibrium "
            "with huge forces (minimise first: `lmd.minimize(system, positions)`), or an energy that is not finite everywhere. "
            "Frames recorded before it are in the exception's .result.")


def nonfinite_error(walkers: Sequence[int], n_walkers: int, steps: tuple[int, int],
                    integrator_name: str, result: Optional[object] = None) -> NonFiniteStateError:
    """A :class:`NonFiniteStateError` with :func:`nonfinite_message`'s text."""
    return NonFiniteStateError(nonfinite_message(walkers, n_walkers, steps, integrator_name),
                               result, walkers, steps)


__all__ = ["ConfigError", "NonFiniteStateError", "nonfinite_message", "nonfinite_start_message",
           "nonfinite_error"]
