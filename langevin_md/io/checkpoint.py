"""Atomic, pickle-free checkpoints of an executor (:mod:`langevin_md.executors`).

A checkpoint is a ``.npz`` file (numpy's zip of ``.npy`` arrays, CRC-checked, read with
``allow_pickle=False``) holding :meth:`Sampler.state_dict`: positions, velocities, cached
energy and forces, adaptation state, the random streams' counter, the step. Scalars live in a
JSON ``meta`` entry. It is written to a temporary file, fsynced, renamed into place and the
folder fsynced, so at every instant the newest checkpoint on disk is complete.
"""

from __future__ import annotations

import io
import json
import re
import time
from pathlib import Path
from typing import Callable, Optional

import numpy as np

# One implementation for the whole package; the names stay importable from io.
from ..safe_paths import atomic_write as atomic_write_bytes  # noqa: F401 - re-exported
from ..safe_paths import fsync_dir, make_dirs  # noqa: F401 - fsync_dir re-exported

FORMAT = "langevin_md.checkpoint"
VERSION = 1
_NAME = re.compile(r"^step_(\d{12})\.npz$")


class CheckpointError(RuntimeError):
    """A checkpoint file is unreadable or belongs to another run."""


class RunInterrupted(Exception):
    """Raised by :class:`CheckpointReporter` after it checkpointed a run stopped by a signal.

    Attributes
    ----------
    step : int
    checkpoint : pathlib.Path
    signum : int
    """

    def __init__(self, step: int, checkpoint: Path, signum: int):
        super().__init__(f"stopped by signal {signum} at step {step}; checkpoint {checkpoint}")
        self.step = step
        self.checkpoint = checkpoint
        self.signum = signum


# --------------------------------------------------------------------------- save / load
def checkpoint_path(folder, step: int) -> Path:
    return Path(folder) / f"step_{int(step):012d}.npz"


def list_checkpoints(folder) -> list[Path]:
    """Checkpoint files in ``folder``, oldest first (temporary files are ignored)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if _NAME.match(p.name))


def save_checkpoint(path, state_dict: dict, extra: Optional[dict] = None) -> Path:
    """Write a :meth:`Sampler.state_dict` atomically to ``path`` (.npz, no pickle).

    Parameters
    ----------
    path : str or PathLike
    state_dict : dict
        As returned by :meth:`Sampler.state_dict`.
    extra : dict, optional
        JSON-serialisable facts stored alongside (number of frames written, config hash...).
    """
    arrays: dict[str, np.ndarray] = {}
    scalars = {}
    for name, value in state_dict["state"].items():
        if isinstance(value, np.ndarray):
            arrays[f"state.{name}"] = value
        else:
            scalars[name] = value  # ints or None (e.g. the adaptation counter)
    arrays["rng.walker_indices"] = np.asarray(state_dict["rng"]["walker_indices"], dtype=np.int64)
    arrays["accepted"] = np.asarray(state_dict["accepted"])
    meta = {
        "format": FORMAT, "version": VERSION,
        "state_class": state_dict["state_class"], "scalars": scalars,
        "rng_seed": int(state_dict["rng"]["seed"]), "rng_counter": int(state_dict["rng"]["counter"]),
        "step": int(state_dict["step"]), "burn_in_end": int(state_dict["burn_in_end"]),
        "production_steps": int(state_dict["production_steps"]),
        "written_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "extra": extra or {},
    }
    if state_dict.get("compiled") is not None:  # the torch executor's compile="auto" decision
        meta["compiled"] = bool(state_dict["compiled"])
    arrays["meta"] = np.array(json.dumps(meta))
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())
    return Path(path)


def load_checkpoint(path) -> tuple[dict, dict]:
    """Read a checkpoint written by :func:`save_checkpoint`.

    Returns
    -------
    state_dict : dict
        For :meth:`Sampler.load_state_dict`.
    extra : dict
        What was passed as ``extra`` when saving.

    Raises
    ------
    CheckpointError
        When the file is not a complete checkpoint of this format.
    """
    path = Path(path)
    if path.is_symlink():
        raise CheckpointError(f"checkpoint {str(path)!r} is a symbolic link; only regular files are read")
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}  # reading every member checks its CRC
        meta = json.loads(str(data.pop("meta")))
    except Exception as exc:  # zipfile.BadZipFile, ValueError, KeyError, OSError...
        raise CheckpointError(f"checkpoint {str(path)!r} is unreadable: {exc}") from None
    if meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise CheckpointError(f"{str(path)!r} is not a langevin_md checkpoint (version {VERSION})")
    state = dict(meta["scalars"])
    for k, v in data.items():
        if k.startswith("state."):
            state[k[len("state."):]] = v
    sd = {
        "state_class": meta["state_class"], "state": state,
        "rng": {"seed": meta["rng_seed"], "walker_indices": data["rng.walker_indices"],
                "counter": meta["rng_counter"]},
        "step": meta["step"], "burn_in_end": meta["burn_in_end"],
        "production_steps": meta["production_steps"], "accepted": data["accepted"],
    }
    if "compiled" in meta:
        sd["compiled"] = bool(meta["compiled"])
    return sd, meta["extra"]


def latest_checkpoint(folder, skipped: Optional[list] = None) -> Optional[tuple[Path, dict, dict]]:
    """The newest readable checkpoint in ``folder`` as ``(path, state_dict, extra)``, or None.

    An unreadable newest file (which atomic writes should make impossible, short of disk
    damage) is skipped in favour of the one before it.

    Parameters
    ----------
    folder : str or PathLike
    skipped : list, optional
        Receives ``(path, reason)`` for every unreadable checkpoint passed over, so the
        caller can report them.
    """
    for path in reversed(list_checkpoints(folder)):
        try:
            sd, extra = load_checkpoint(path)
        except CheckpointError as exc:
            if skipped is not None:
                skipped.append((path, str(exc)))
            continue
        return path, sd, extra
    return None


# --------------------------------------------------------------------------- the reporter
class CheckpointReporter:
    """Checkpoints a sampler every ``every`` steps, at the end, and when asked to stop.

    Before each checkpoint is renamed into place, ``commit`` is called (the trajectory is
    flushed and fsynced), so a checkpoint never claims frames that are not on disk. The
    sampler flushes recorded frames to its frame sinks before it calls reporters, so those
    frames are part of the commit.

    Parameters
    ----------
    folder : str or PathLike
        Where ``step_XXXXXXXXXXXX.npz`` files go.
    every : int
        Steps between checkpoints (global steps, multiples of ``every``).
    end : int, optional
        The run's last step; a checkpoint is always written there.
    commit : callable, optional
        ``commit() -> dict``: makes the frames written so far durable and returns facts to
        store in the checkpoint (e.g. the number of frames).
    keep : int
        Checkpoints kept on disk (older ones are deleted after a new one is in place).
    extra : dict, optional
        Stored in every checkpoint (e.g. the config fingerprint).
    on_checkpoint : callable, optional
        ``on_checkpoint(path, step)`` after each checkpoint (logging).

    Notes
    -----
    A stop requested with :meth:`request_stop` (from a signal handler) is honoured at the
    next chunk boundary: the reporter stops the sampler every ``max(1, every // 10)`` steps
    to look, writes a checkpoint there and raises :class:`RunInterrupted`. Stopping does not
    change any frame: the sampler's trajectory does not depend on where it pauses.
    """

    def __init__(self, folder, every: int = 1000, end: Optional[int] = None,
                 commit: Optional[Callable[[], dict]] = None, keep: int = 2,
                 extra: Optional[dict] = None, on_checkpoint: Optional[Callable] = None):
        from langevin_md import checks

        self.every = checks.positive_int("checkpoint_every", every)
        keep = checks.positive_int("keep", keep)
        self.folder = Path(folder)
        self.poll = max(1, self.every // 10)
        self.end = end
        self.commit = commit
        self.keep = keep
        self.extra = dict(extra or {})
        self.on_checkpoint = on_checkpoint
        self.stop_signal: Optional[int] = None
        self.last_path: Optional[Path] = None
        #: Step of the newest checkpoint (set it to the start step so none is written there).
        self.last_step: Optional[int] = None

    def request_stop(self, signum: int) -> None:
        """Ask for a checkpoint and a stop at the next chunk boundary (signal-handler safe)."""
        self.stop_signal = signum

    def next_report(self, step: int) -> Optional[int]:
        if self.stop_signal is not None or (self._due(step) and self.last_step != step):
            return 0
        # Stop at every poll boundary too, so a requested stop is seen within a chunk.
        nxt = min((step // self.every + 1) * self.every, (step // self.poll + 1) * self.poll)
        if self.end is not None and step < self.end:
            nxt = min(nxt, self.end)
        return nxt - step

    def _due(self, step: int) -> bool:
        return step % self.every == 0 or step == self.end

    def report(self, sampler, state, step: int) -> None:
        if (self._due(step) or self.stop_signal is not None) and self.last_step != step:
            self.write(sampler, step)
        if self.stop_signal is not None:
            raise RunInterrupted(step, self.last_path, self.stop_signal)

    def write(self, sampler, step: int) -> Path:
        """Commit frames, then write the checkpoint atomically and prune old ones."""
        extra = dict(self.extra)
        if self.commit is not None:
            extra.update(self.commit())
        extra["metropolis_adjusted"] = bool(sampler.integrator.metropolis_adjusted)
        if self.folder.is_symlink():  # pruning old checkpoints would delete files elsewhere
            raise CheckpointError(f"checkpoint folder {self.folder} is a symbolic link; refusing to write "
                                  "or delete checkpoints through it")
        make_dirs(self.folder)
        path = save_checkpoint(checkpoint_path(self.folder, step), sampler.state_dict(), extra)
        self.last_path, self.last_step = path, step
        for old in list_checkpoints(self.folder)[:-self.keep]:
            old.unlink()
        if self.on_checkpoint is not None:
            self.on_checkpoint(path, step)
        return path

    def close(self) -> None:
        pass
