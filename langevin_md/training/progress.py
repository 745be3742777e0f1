"""Progress lines and loss curves for training loops.

On a terminal a tqdm bar would do, but training is often run with its output going to a
file or a pipe (a batch job, ``nohup``, a CI log), where a bar prints nothing useful until
the end. :class:`ProgressLog` writes one plain line every ``interval`` seconds of wall time
(and one at the end), whatever the output is: epoch, losses, best epoch and rate.
"""

from __future__ import annotations

import math
import os
import sys
import time
from typing import Optional, Sequence, TextIO

from ..safe_paths import write_via_temp


class ProgressLog:
    """Throttled progress lines: ``<name>: epoch 12/200  train 1.2e-01  val 1.3e-01 ...``.

    Parameters
    ----------
    name : str
        Prefix of every line (e.g. ``"force matching"``).
    total : int
        Maximum number of epochs.
    stream : file-like, optional
        Where lines go (default ``sys.stderr``).
    interval : float
        Seconds of wall time between lines (the first line comes after the first epoch).
    enabled : bool
        False writes nothing.
    """

    def __init__(self, name: str, total: int, stream: Optional[TextIO] = None, interval: float = 2.0,
                 enabled: bool = True):
        if not (isinstance(interval, (int, float)) and math.isfinite(interval) and interval >= 0):
            raise ValueError(f"interval must be a non-negative number of seconds, got {interval!r}")
        self.name = name
        self.total = int(total)
        self.stream = sys.stderr if stream is None else stream
        self.interval = float(interval)
        self.enabled = bool(enabled)
        self.start = time.perf_counter()
        self._last = -math.inf
        self.lines = 0

    def update(self, epoch: int, train: float, validation: float, best_epoch: int, best: float,
               final: bool = False) -> None:
        """Write a line if ``interval`` has passed since the last one (always when ``final``).

        ``epoch`` is 0-based; the line shows it 1-based.
        """
        if not self.enabled:
            return
        now = time.perf_counter()
        if not final and now - self._last < self.interval and epoch > 0:
            return
        self._last = now
        elapsed = max(now - self.start, 1e-9)
        rate = (epoch + 1) / elapsed
        tail = " (done)" if final else ""
        self.stream.write(
            f"{self.name}: epoch {epoch + 1}/{self.total}  train {train:.4e}  val {validation:.4e}  "
            f"best {best:.4e} @ {best_epoch + 1}  {rate:.1f} epochs/s  {elapsed:.1f} s{tail}\n"
        )
        self.stream.flush()
        self.lines += 1


def plot_loss_curve(train_loss: Sequence[float], validation_loss: Sequence[float], path,
                    best_epoch: Optional[int] = None, title: str = "") -> str:
    """Write a PNG of training and validation loss against epoch (log scale where positive).

    Parameters
    ----------
    train_loss, validation_loss : sequence of float, one per epoch
    path : str or PathLike
        ``.png`` file to write (folders are created).
    best_epoch : int, optional
        0-based epoch marked with a vertical line.
    title : str

    Returns
    -------
    str
        The path written.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    tr = [float(v) for v in train_loss]
    va = [float(v) for v in validation_loss]
    if not tr or len(tr) != len(va):
        raise ValueError(f"need one train and one validation loss per epoch, got {len(tr)} and {len(va)}")
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    epochs = range(1, len(tr) + 1)
    ax.plot(epochs, tr, label="train", lw=1.2)
    ax.plot(epochs, va, label="validation", lw=1.2)
    if best_epoch is not None and best_epoch >= 0:
        ax.axvline(best_epoch + 1, color="k", ls=":", lw=1, label=f"best (epoch {best_epoch + 1})")
    if min(tr + va) > 0:
        ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    try:
        write_via_temp(path, lambda tmp: fig.savefig(tmp, dpi=110))  # never through a link at path
    finally:
        plt.close(fig)
    return path
