"""What executors tell the outside world: reporters (at steps they ask for) and frame sinks.

Both executors honour the same two protocols, so checkpoints, progress logs and trajectory
files work whichever executor runs:

* a :class:`Reporter` says how many steps from now it next wants to see the run
  (:meth:`Reporter.next_report`, OpenMM's pattern) and is then handed the executor, the
  state and the global step;
* a :class:`FrameSink` receives recorded frames in blocks as they reach the host, always
  before any reporter hears about a later step (so a checkpoint never runs ahead of the
  frames written).
"""

from __future__ import annotations

from typing import Mapping, Optional, Protocol, runtime_checkable

import numpy as np


class Reporter:
    """Something told about the state at the steps it asks for.

    Subclasses set :meth:`next_report` (steps from ``step`` until it is next due, or None
    for never) and :meth:`report`. ``report`` receives the executor (a
    :class:`~langevin_md.executors.torch_executor.Sampler` or an
    :class:`~langevin_md.executors.openmm.OpenMMSampler`: both have ``state_dict()``,
    ``integrator``, ``system``, ``n_walkers`` and ``step``), the current state (an
    :class:`~langevin_md.integrators.base.State`) and the global step.
    """

    def next_report(self, step: int) -> Optional[int]:
        raise NotImplementedError

    def report(self, sampler, state, step: int) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Called once when the run ends, normally or not."""


@runtime_checkable
class FrameSink(Protocol):
    """Receives blocks of recorded frames (e.g. :class:`~langevin_md.io.trajectory.TrajectoryWriter`).

    ``write_frames(steps, positions, energies, kinetic_energies, fields)``: ``steps``
    (k,) int64, ``positions`` (k, n_walkers, *event_shape), ``energies`` (k, n_walkers),
    ``kinetic_energies`` (k, n_walkers) or None, ``fields`` a mapping of name to
    (k, n_walkers, ...) arrays (the integrator's ``recorded_fields``; may be empty).
    """

    def write_frames(self, steps: np.ndarray, positions: np.ndarray, energies: np.ndarray,
                     kinetic_energies: Optional[np.ndarray] = None,
                     fields: Optional[Mapping[str, np.ndarray]] = None) -> None:
        ...


def stop_step(step: int, end: int, reporters) -> int:
    """The next step at which a reporter is due (at most ``end``, at least ``step + 1``)."""
    stop = end
    for r in reporters:
        due = r.next_report(step)
        if due is not None:
            stop = min(stop, step + max(1, due))
    return stop


__all__ = ["Reporter", "FrameSink", "stop_step"]
