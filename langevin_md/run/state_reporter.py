"""A live state reporter, like OpenMM's ``StateDataReporter``, for every executor.

Every ``report_interval`` steps it writes one CSV row (and, optionally, the same row to the
terminal) with walker averages of the current state:

==========================  ==============================================================
column                      meaning
==========================  ==============================================================
``step``                    global step (burn-in included)
``time_ps``                 step × timestep, ps, for schemes with a timestep (BAOAB, OBABO,
                            Brownian); empty for schemes without one (ULA, MALA, HMC, RWM),
                            whose "time" is the step
``potential_energy``        mean U over walkers (kJ/mol for molecular systems)
``kinetic_energy``          mean ½Σmv² over walkers; empty without velocities
``kinetic_temperature``     2⟨K⟩/(N_dof k_B), K, for molecular systems; for dimensionless
                            systems the column is ``kinetic_kT`` = 2⟨K⟩/N_dof in energy units
``acceptance``              accepted fraction of production proposals since the last row
                            (Metropolis-adjusted schemes; empty otherwise and during burn-in)
``walker_steps_per_second`` walkers × steps / wall seconds since the last row
``eta_s``                   seconds left at that speed, when ``total_steps`` is given
==========================  ==============================================================

N_dof counts the velocity degrees of freedom the executor really leaves: those of
:func:`~langevin_md.analysis.thermo.degrees_of_freedom` (constraints subtracted, and 3 for a
``CMMotionRemover`` of the ``openmm.System``) under the OpenMM executor, which applies that
force; the torch executor ignores a ``CMMotionRemover``, so there the 3 are not subtracted.

Replica exchange. When the state carries a per-walker ``kT`` (a
:class:`~langevin_md.integrators.tempering.ReplicaExchange` run), averages over all walkers
would mix temperatures. Walkers are then grouped into rungs by their *current* temperature
(the state's ``rung`` label, which swaps move with ``kT``; by distinct ``kT`` values for a
state without one), never by walker index; every rung needs at least one walker.

* ``potential_energy``, ``kinetic_energy`` and ``kinetic_temperature`` (``kinetic_kT``) are
  the coldest rung's (rung 0, the system's own temperature): the chain a user samples.
* Three columns per rung k = 0 … n_T − 1 follow ``eta_s``: ``rung{k}_target_temperature``
  (the rung's thermostat temperature, K: the mean over its walkers of kT / k_B, which differ
  only while ``adapt_ladder`` moves ladders apart), ``rung{k}_potential_energy`` and
  ``rung{k}_kinetic_temperature`` (2⟨K⟩/(N_dof k_B) over the rung's walkers). Dimensionless
  systems have ``rung{k}_target_kT`` and ``rung{k}_kinetic_kT`` instead, in energy units.

Every walker has the same N_dof, so each rung's kinetic temperature is checked against its
own target column. ``acceptance`` and the speed stay over all walkers.

It follows the executors' reporter protocol (:class:`langevin_md.Reporter`): the executor asks
:meth:`StateReporter.next_report` how many steps remain until it is due and then calls
:meth:`StateReporter.report` with itself and the state. Rows are flushed as written, so the
file can be followed (``tail -f``) while the run goes on.
"""

from __future__ import annotations

import io
import math
import os
import sys
import time
from typing import Optional, TextIO, Union

import numpy as np
import torch

from ..analysis.thermo import degrees_of_freedom
from ..executors.reporting import Reporter
from ..executors.results import integrator_timestep
from ..safe_paths import open_for_write
from ..units import temperature_from_kT

__all__ = ["StateReporter"]

PathOrFile = Union[str, os.PathLike, TextIO, None]


def _fmt(value: Optional[float], spec: str) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return ""
    return format(value, spec)


def executor_degrees_of_freedom(system, sampler) -> int:
    """Velocity degrees of freedom per walker as ``sampler`` really runs ``system``.

    Parameters
    ----------
    system : System
    sampler : Sampler or OpenMMSampler
        The executor; only the OpenMM executor (``backend == "openmm"``) applies a
        ``CMMotionRemover``.

    Returns
    -------
    int
        :func:`~langevin_md.analysis.thermo.degrees_of_freedom` for that executor.
    """
    return degrees_of_freedom(system, "openmm" if getattr(sampler, "backend", None) == "openmm" else "torch")


class StateReporter(Reporter):
    """Write a CSV row of walker-averaged state data every ``report_interval`` steps.

    Under replica exchange the averages are per rung (the coldest rung in the main columns,
    then ``rung{k}_*`` columns; module docstring).

    Parameters
    ----------
    file : str, PathLike, file object or None
        Where the CSV goes (a path is opened for writing and closed at the end of the run; a
        file object is written to and left open). None: no file (terminal only).
    report_interval : int
        Steps between rows.
    terminal : bool
        Also print each row to ``sys.stdout`` (aligned, human-readable).
    total_steps : int, optional
        The global step the run ends at (burn-in included), for the ETA column.

    Raises
    ------
    ValueError
        For a non-positive ``report_interval`` or ``total_steps``, or when there is nowhere to
        write (no file and ``terminal=False``).
    """

    def __init__(self, file: PathOrFile, report_interval: int, terminal: bool = False,
                 total_steps: Optional[int] = None):
        if isinstance(report_interval, bool) or not isinstance(report_interval, (int, np.integer)) or report_interval < 1:
            raise ValueError(f"report_interval must be a positive integer, got {report_interval!r}")
        if not isinstance(terminal, bool):
            raise TypeError(f"terminal must be True or False, got {terminal!r}")
        if total_steps is not None and (isinstance(total_steps, bool) or not isinstance(total_steps, (int, np.integer))
                                        or total_steps < 1):
            raise ValueError(f"total_steps must be a positive integer or None, got {total_steps!r}")
        if file is None and not terminal:
            raise ValueError("StateReporter needs somewhere to write: give a file or terminal=True")
        if file is not None and not isinstance(file, (str, os.PathLike, io.IOBase)) and not hasattr(file, "write"):
            raise TypeError(f"file must be a path, a text file object or None, got {type(file).__name__}")
        self.report_interval = int(report_interval)
        self.terminal = terminal
        self.total_steps = None if total_steps is None else int(total_steps)
        self._path = os.fspath(file) if isinstance(file, (str, os.PathLike)) else None
        self._file: Optional[TextIO] = None if self._path is not None else file
        self._columns: Optional[list[str]] = None
        self._last: Optional[tuple] = None  # (step, wall time, production steps, accepted sum)
        self._last_reported_step: Optional[int] = None
        self._n_dof: Optional[int] = None
        self._n_rungs: Optional[int] = None  # None: one temperature for all walkers
        self._widths: list[int] = []
        self._first_seen: Optional[tuple] = None  # (step, wall time) when the executor first asked

    # ------------------------------------------------------------------ reporter protocol
    def next_report(self, step: int) -> Optional[int]:
        """Steps from ``step`` until the next row: 0 at a multiple of the interval not yet written."""
        if self._first_seen is None:
            self._first_seen = (step, time.perf_counter())
        r = step % self.report_interval
        if r == 0 and step != self._last_reported_step:
            return 0
        return self.report_interval - r

    def report(self, sampler, state, step: int) -> None:
        """Write the row for ``step`` (``sampler`` is either executor; ``state`` its State)."""
        system, integrator = sampler.system, sampler.integrator
        now = time.perf_counter()
        if self._columns is None:
            self._start(system, sampler, state, step, now)
        molecular = system.units == "molecular"

        def to_temperature(kT: float) -> float:
            # energy units -> the temperature columns' unit: K for molecules, kT otherwise
            return temperature_from_kT(kT) if molecular else kT

        energies = state.energy.detach().to(torch.float64)
        kinetic_w = self._kinetic(system, state)
        rung_values: list[str] = []
        if self._n_rungs is None:
            energy = float(energies.mean())
            kinetic = None if kinetic_w is None else float(kinetic_w.mean())
        else:
            rungs = self._rung_stats(state, energies, kinetic_w)
            for target_kT, rung_energy, rung_kinetic in rungs:
                rung_temperature = None if rung_kinetic is None else to_temperature(2.0 * rung_kinetic / self._n_dof)
                rung_values += [_fmt(to_temperature(target_kT), ".6g"), _fmt(rung_energy, ".10g"),
                                _fmt(rung_temperature, ".6g")]
            _, energy, kinetic = rungs[0]
        temperature = None if kinetic is None else to_temperature(2.0 * kinetic / self._n_dof)
        timestep = integrator_timestep(integrator)
        time_ps = step * timestep if timestep is not None else None

        prod = int(getattr(sampler, "production_steps", 0))
        accepted_sum = self._accepted_sum(sampler)
        last_step, last_time, last_prod, last_acc = self._last
        acceptance = None
        if integrator.metropolis_adjusted and accepted_sum is not None and last_acc is not None and prod > last_prod:
            acceptance = (accepted_sum - last_acc) / ((prod - last_prod) * sampler.n_walkers)
        rate = None
        if step > last_step and now > last_time:
            rate = sampler.n_walkers * (step - last_step) / (now - last_time)
        eta = None
        if self.total_steps is not None and rate:
            eta = max(0, self.total_steps - step) * sampler.n_walkers / rate
        self._last = (step, now, prod, accepted_sum)
        self._last_reported_step = step
        values = [str(int(step)), _fmt(time_ps, ".6g"), _fmt(energy, ".10g"), _fmt(kinetic, ".10g"),
                  _fmt(temperature, ".6g"), _fmt(acceptance, ".6f"), _fmt(rate, ".4g"), _fmt(eta, ".1f")]
        self._write(values + rung_values)

    def close(self) -> None:
        """Close the file if this reporter opened it (called by the executor at the run's end)."""
        if self._path is not None and self._file is not None:
            self._file.close()
            self._file = None
        elif self._file is not None:
            self._file.flush()

    # ------------------------------------------------------------------ helpers
    def _start(self, system, sampler, state, step: int, now: float) -> None:
        self._n_dof = executor_degrees_of_freedom(system, sampler)
        molecular = system.units == "molecular"
        temp_col = "kinetic_temperature" if molecular else "kinetic_kT"
        self._columns = ["step", "time_ps", "potential_energy", "kinetic_energy", temp_col, "acceptance",
                         "walker_steps_per_second", "eta_s"]
        if getattr(state, "kT", None) is not None:
            self._n_rungs = self._count_rungs(sampler.integrator, state)
            unit = "temperature" if molecular else "kT"
            for k in range(self._n_rungs):
                self._columns += [f"rung{k}_target_{unit}", f"rung{k}_potential_energy", f"rung{k}_kinetic_{unit}"]
        # The first row's speed counts from when the executor first asked (the run's start).
        # A run from step 0 has its acceptance counters at zero then; a reporter joining a
        # resumed run cannot know what they were, so its first row leaves acceptance empty.
        first_step, first_time = self._first_seen if self._first_seen is not None else (step, now)
        if first_step == 0:
            self._last = (0, first_time, 0, 0)
        else:
            self._last = (first_step, first_time, int(getattr(sampler, "production_steps", 0)),
                          self._accepted_sum(sampler))
        if self._path is not None and self._file is None:
            self._file = open_for_write(self._path, "w", newline="")
        if self._file is not None:
            self._file.write(",".join(self._columns) + "\n")
            self._file.flush()
        # Terminal columns are at least 14 wide and as wide as their name, so rows line up.
        self._widths = [max(14, len(c)) for c in self._columns]
        if self.terminal:
            print("  ".join(f"{c:>{w}}" for c, w in zip(self._columns, self._widths)), file=sys.stdout, flush=True)

    @staticmethod
    def _count_rungs(integrator, state) -> int:
        n_T = getattr(integrator, "n_temperatures", None)
        if n_T is not None:
            return int(n_T)
        if getattr(state, "rung", None) is not None:
            return int(state.rung.max()) + 1
        return int(torch.unique(state.kT).numel())

    def _rung_labels(self, state) -> torch.Tensor:
        """Each walker's current rung ``(n_walkers,)`` int64: the ``rung`` label that swaps move
        together with ``kT``, or else the rank of the walker's ``kT`` among the distinct values."""
        rung = getattr(state, "rung", None)
        if rung is not None:
            return rung.detach().to(torch.int64)
        values, labels = torch.unique(state.kT.detach(), return_inverse=True)
        if values.numel() != self._n_rungs:
            raise ValueError(f"the walkers' kT now takes {values.numel()} distinct values "
                             f"({values.tolist()}), but this reporter's columns were laid out for "
                             f"{self._n_rungs} temperatures at its first row")
        return labels

    def _rung_stats(self, state, energies: torch.Tensor, kinetic_w: Optional[torch.Tensor]) -> list:
        """Per rung, coldest first: (mean target kT, mean U, mean K or None) over its walkers."""
        labels = self._rung_labels(state).to(energies.device)
        if int(labels.min()) < 0 or int(labels.max()) >= self._n_rungs:
            raise ValueError(f"walker rungs span {int(labels.min())}..{int(labels.max())}, but this "
                             f"reporter's columns were laid out for rungs 0..{self._n_rungs - 1}")
        counts = torch.bincount(labels, minlength=self._n_rungs).to(torch.float64)
        if bool((counts == 0).any()):
            raise ValueError(f"walkers per rung {counts.long().tolist()}: every one of the "
                             f"{self._n_rungs} rungs needs a walker")

        def mean(x: torch.Tensor) -> list[float]:
            sums = torch.zeros(self._n_rungs, dtype=torch.float64, device=x.device).index_add_(0, labels, x)
            return (sums / counts).tolist()

        kT = mean(state.kT.detach().to(torch.float64).to(energies.device))
        u = mean(energies)
        k = [None] * self._n_rungs if kinetic_w is None else mean(kinetic_w.to(energies.device))
        return list(zip(kT, u, k))

    def _write(self, values: list[str]) -> None:
        if self._file is not None:
            self._file.write(",".join(values) + "\n")
            self._file.flush()
        if self.terminal:
            print("  ".join(f"{v:>{w}}" for v, w in zip(values, self._widths)), file=sys.stdout, flush=True)

    @staticmethod
    def _kinetic(system, state) -> Optional[torch.Tensor]:
        """Each walker's ½Σmv² ``(n_walkers,)`` float64, or None for a state without velocities."""
        v = getattr(state, "velocities", None)
        if v is None:
            return None
        v = v.detach().to(torch.float64)
        m = torch.as_tensor(np.asarray(system.masses, dtype=np.float64), device=v.device)
        m = m.reshape(m.shape + (1,) * (v.ndim - 2))
        return 0.5 * (m * v * v).reshape(v.shape[0], -1).sum(1)

    @staticmethod
    def _accepted_sum(sampler) -> Optional[int]:
        acc = getattr(sampler, "accepted", None)
        if acc is None:
            return None
        if isinstance(acc, torch.Tensor):
            return int(acc.sum())
        return int(np.sum(acc))
