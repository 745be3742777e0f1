"""Signs of life on a wall-clock schedule: a progress line and a status callback.

A run that writes to a file or a pipe shows no progress bar (tqdm draws only on a terminal),
so a batch script needs another sign that the run is alive. :class:`ProgressReporter` is an
executor :class:`~langevin_md.executors.reporting.Reporter` that, every ``every`` seconds of
wall time, logs one line::

    progress: step 12000/100000 (12.0%), 410 steps/s (3280 walker-steps/s), 70.8 ns/day, ETA 3 min 35 s

and, every ``status_every`` seconds, hands a dict of the same facts to a callback (the run
session rewrites ``summary.json`` with it).

Reporters speak in steps, progress in seconds: the reporter measures the steps per second so
far and asks to be told again after about ``every`` seconds' worth of steps. Whether it may
pause the executor for that is ``may_pause``: the torch executor's chains do not depend on
where a run pauses, so there it may; the OpenMM executor's do (on the Reference platform one
process-wide generator serves every walker, so where a segment ends changes which numbers a
walker draws), so there it reports only at the stops other reporters ask for (checkpoint
polls every ``checkpoint_every // 10`` steps, blocks of recorded frames), which keeps a run's
schedule, and hence its frames, independent of wall time.
"""

from __future__ import annotations

import math
import time
from typing import Callable, Optional

from ..executors.reporting import Reporter
from ..units import parse_quantity

__all__ = ["ProgressReporter", "parse_seconds", "format_duration", "DEFAULT_PROGRESS_EVERY_S",
           "STATUS_EVERY_S"]

#: Seconds between progress lines when a config does not say.
DEFAULT_PROGRESS_EVERY_S = 30.0
#: Seconds between status (``summary.json``) updates at most.
STATUS_EVERY_S = 60.0
#: Seconds between status updates at least: each one is an fsynced file, which must not slow
#: a run down however small ``every`` is.
MIN_STATUS_S = 1.0


def parse_seconds(name: str, value) -> float:
    """A positive duration in seconds from a number (seconds) or text with a unit (``"30 s"``,
    ``"2 min"``, ``"1 hour"``; openmm.unit names or symbols).

    Raises
    ------
    ValueError
        Naming ``name`` and the value, and what was expected.
    """
    expected = 'a positive number of seconds or text such as "30 s" or "2 min"'
    if isinstance(value, bool):
        raise ValueError(f"{name} = {value!r}: expected {expected}")
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str):
        from openmm import unit as u  # lazy, as in parse_quantity: only text with a unit needs it

        try:
            q = parse_quantity(value)

            seconds = float(q.value_in_unit(u.second))
        except (ValueError, TypeError, AttributeError) as exc:
            raise ValueError(f"{name} = {value!r}: expected {expected} ({exc})") from None
    else:
        raise ValueError(f"{name} = {value!r}: expected {expected}")
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"{name} = {value!r}: expected {expected}")
    return seconds


def format_duration(seconds: float) -> str:
    """``seconds`` as ``"3 min 34 s"``, ``"2 h 05 min"`` or ``"12 s"``."""
    s = max(0, int(round(seconds)))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {(s % 3600) // 60:02d} min"


class ProgressReporter(Reporter):
    """Log a progress line every ``every`` seconds and report status every ``status_every`` s.

    Parameters
    ----------
    end_step : int
        The global step the run ends at (burn-in included), for the percentage and ETA.
    log : callable
        ``log(line)`` for each progress line (e.g. a logger's ``info``).
    every : float
        Seconds between progress lines.
    status : callable, optional
        ``status(info)`` every ``min(every, status_every)`` seconds, but never more often
        than every :data:`MIN_STATUS_S`; ``info`` is :meth:`info`'s dict.
    status_every : float
        Seconds between status callbacks at most.
    timestep_ps : float, optional
        The integrator's timestep in ps (molecular dynamics schemes); adds ns/day.
    may_pause : bool
        Whether the reporter may ask the executor to stop when it is due (module docstring);
        if not, it reports at the stops other reporters cause.
    clock : callable
        Seconds, monotonic (``time.monotonic``; tests may pass their own).
    """

    def __init__(self, end_step: int, log: Callable[[str], None], every: float = DEFAULT_PROGRESS_EVERY_S,
                 status: Optional[Callable[[dict], None]] = None, status_every: float = STATUS_EVERY_S,
                 timestep_ps: Optional[float] = None, may_pause: bool = True,
                 clock: Callable[[], float] = time.monotonic):
        self.end_step = int(end_step)
        self.every = parse_seconds("progress_every", every)
        self.status_every = max(MIN_STATUS_S, min(self.every, parse_seconds("status_every", status_every)))
        self._log = log
        self._status = status
        self.timestep_ps = timestep_ps
        self.may_pause = bool(may_pause)
        self._clock = clock
        self._start: Optional[tuple] = None  # (step, time) when the executor first asked
        self._seen_step: Optional[int] = None  # the step of the last next_report call
        self._last_line = None  # time of the last line
        self._last_status = None  # time of the last status call
        self._rate: Optional[float] = None  # steps per second (per walker) so far
        self.n_walkers = 1

    # ------------------------------------------------------------------ reporter protocol
    def next_report(self, step: int) -> Optional[int]:
        now = self._clock()
        if self._start is None:
            self._start = (step, now)
            self._last_line = self._last_status = now
            self._seen_step = step
            return self._probe(step, now) if self.may_pause else None
        # A step this reporter has already been asked about is never reported again (the
        # executors ask after a stop, then once more before choosing the next one).
        fresh = step != self._seen_step
        self._seen_step = step
        if fresh and step > self._start[0] and self._due(now):
            return 0
        return self._probe(step, now) if self.may_pause else None

    def report(self, sampler, state, step: int) -> None:
        now = self._clock()
        self.n_walkers = int(getattr(sampler, "n_walkers", 1))
        self._measure(step, now)
        info = self.info(step, now)
        if now - self._last_line >= self.every:
            self._last_line = now
            self._log(self.line(info))
        if now - self._last_status >= self.status_every:
            self._last_status = now
            if self._status is not None:
                self._status(info)

    # ------------------------------------------------------------------ facts
    def info(self, step: int, now: Optional[float] = None) -> dict:
        """``step``, ``end_step``, ``steps_per_second``, ``walker_steps_per_second``,
        ``ns_per_day`` (None without a timestep) and ``eta_s`` (None before a rate is known)."""
        now = self._clock() if now is None else now
        rate = self._rate
        ns_day = rate * self.timestep_ps * 86400.0 / 1000.0 if rate and self.timestep_ps else None
        eta = max(0, self.end_step - step) / rate if rate else None
        return {"step": int(step), "end_step": self.end_step, "steps_per_second": rate,
                "walker_steps_per_second": None if rate is None else rate * self.n_walkers,
                "ns_per_day": ns_day, "eta_s": eta}

    def line(self, info: dict) -> str:
        """The progress line for ``info``."""
        pct = 100.0 * info["step"] / self.end_step if self.end_step else 100.0
        text = f"progress: step {info['step']}/{self.end_step} ({pct:.1f}%)"
        if info["steps_per_second"] is not None:
            text += (f", {info['steps_per_second']:.4g} steps/s "
                     f"({info['walker_steps_per_second']:.4g} walker-steps/s)")
        if info["ns_per_day"] is not None:
            text += f", {info['ns_per_day']:.3g} ns/day"
        if info["eta_s"] is not None:
            text += f", ETA {format_duration(info['eta_s'])}"
        return text

    # ------------------------------------------------------------------ helpers
    def _due(self, now: float) -> bool:
        return now - self._last_line >= self.every or now - self._last_status >= self.status_every

    def _measure(self, step: int, now: float) -> None:
        s0, t0 = self._start
        if step > s0 and now > t0:
            self._rate = (step - s0) / (now - t0)

    def _probe(self, step: int, now: float) -> int:
        """Steps until the next line or status is due, from the rate measured so far; before
        any rate is known, a short first segment (so the rate is learned early)."""
        s0, t0 = self._start
        if step > s0 and now > t0:
            self._rate = (step - s0) / (now - t0)
        if self._rate is None:
            return max(1, min(100, self.end_step - step))
        due_at = min(self._last_line + self.every, self._last_status + self.status_every)
        return max(1, int(math.ceil(self._rate * max(0.0, due_at - now))))
