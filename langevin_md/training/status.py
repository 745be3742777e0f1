"""Signs of life for ``langevin-md train``: progress lines and a ``status.json`` while it fits.

With its output off a terminal, ``fit``'s tqdm bar draws nothing, so a long fit was silent
until it ended. :class:`TrainingStatus` is handed to :func:`~langevin_md.training.fit` as its
``on_epoch`` callback: after the first epoch and then every ``every`` seconds it prints a line
to stderr (only when no bar is drawn) and rewrites ``status.json`` in the output folder
atomically (a temporary file renamed over it, never written through a link) with the epoch,
the losses, the best epoch, seconds per epoch and the ETA; at least every
:data:`~langevin_md.run.progress.STATUS_EVERY_S` seconds whatever ``every`` says, and at most
every :data:`~langevin_md.run.progress.MIN_STATUS_S`.
"""

from __future__ import annotations

import json
import os
import sys
import time
from datetime import datetime, timezone
from typing import Callable, Optional, TextIO

from ..io.checkpoint import atomic_write_bytes
from ..run.progress import MIN_STATUS_S, STATUS_EVERY_S, format_duration, parse_seconds

__all__ = ["TrainingStatus", "STATUS_FILE"]

#: The status file in ``[output] dir``.
STATUS_FILE = "status.json"


class TrainingStatus:
    """Progress lines and ``status.json`` for a fit, on a wall-clock schedule.

    Parameters
    ----------
    out_dir : str
        Where ``status.json`` goes.
    epochs : int
        The most epochs the fit runs (for the ETA; early stopping may end it sooner).
    every : float or str
        Seconds between progress lines (a number, or text such as ``"30 s"``).
    stream : file, optional
        Where lines go; None: no lines (a progress bar shows instead), only the status file.
    clock : callable
        Monotonic seconds (``time.monotonic``).
    """

    def __init__(self, out_dir: str, epochs: int, every, stream: Optional[TextIO] = sys.stderr,
                 clock: Callable[[], float] = time.monotonic):
        self.path = os.path.join(out_dir, STATUS_FILE)
        self.epochs = int(epochs)
        self.every = parse_seconds("[output] progress_every", every)
        self.stream = stream
        self._clock = clock
        self._t0 = clock()
        self._last = None  # time of the last line
        self._last_write = None  # time of the last status.json write
        self.status = {"status": "running", "epoch": 0, "epochs": self.epochs, "started": _now()}

    def __call__(self, epoch: int, train_loss: float, validation_loss: float, best_epoch: int,
                 best_validation_loss: float) -> None:
        """After epoch ``epoch`` (0-based): maybe a line and a status write."""
        now = self._clock()
        per_epoch = (now - self._t0) / (epoch + 1)
        self.status.update(epoch=epoch + 1, train_loss=train_loss, validation_loss=validation_loss,
                           best_epoch=best_epoch + 1, best_validation_loss=best_validation_loss,
                           seconds_per_epoch=per_epoch, eta_s=per_epoch * (self.epochs - epoch - 1),
                           updated=_now())
        # status.json after the first epoch, then every min(every, a minute), at most once a
        # second (each write is fsynced); a line after the first epoch and every `every`.
        if self._last_write is None or now - self._last_write >= max(MIN_STATUS_S, min(self.every, STATUS_EVERY_S)):
            self._last_write = now
            self.write()
        line_due = self._last is None or now - self._last >= self.every
        if line_due:
            self._last = now
        if line_due and self.stream is not None:
            print(f"train: epoch {epoch + 1}/{self.epochs}, train loss {train_loss:.5g}, validation loss "
                  f"{validation_loss:.5g} (best {best_validation_loss:.5g} at epoch {best_epoch + 1}), "
                  f"{per_epoch:.3g} s/epoch, ETA {format_duration(self.status['eta_s'])} (at most)",
                  file=self.stream, flush=True)

    def finish(self, status: str) -> None:
        """Write the final status (``"completed"`` or ``"failed"``)."""
        self.status.update(status=status, eta_s=0.0 if status == "completed" else None, updated=_now())
        self.write()

    def write(self) -> None:
        atomic_write_bytes(self.path, (json.dumps(self.status, indent=2) + "\n").encode())


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
