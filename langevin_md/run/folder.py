"""Run folders: one config, one trajectory, checkpoints, a log and a summary per run.

::

    RUN_DIR/
      .langevin-md-run  the folder's identity: {"format": "langevin_md.run_folder", "version": 1}
      config.toml       the resolved config: every key, defaults filled in (what resume reads)
      run.log           what happened, with times (appended to by every session)
      trajectory.h5     frames, chunked HDF5 (see langevin_md.io.trajectory)
      checkpoints/      step_000000001000.npz ... (the newest two are kept)
      summary.json      status, steps done, frames, throughput, acceptance, errors
      integrator_summary.npz   the integrator's end-of-run summary (only if it has one)
      state.csv         walker-averaged energies, temperature, speed every [output] state_every
                        steps (only with that key; see langevin_md.run.state_reporter)

Both executors (``[sampler] backend = "torch"`` or ``"openmm"``) write this layout. A run that
stops for any reason (SIGKILL included) is resumed from its newest checkpoint; frames written
after that checkpoint are dropped from the trajectory and computed again, so no frame is ever
duplicated or missing. With the torch executor the run is deterministic and the resumed
trajectory is bitwise the uninterrupted one. The OpenMM executor cannot save OpenMM's random
state: it resumes from the same positions, velocities and step with seeds drawn from the run
seed and the checkpoint step, a continuation in law (see :mod:`langevin_md.executors.openmm`).

Nothing outside the folder is ever written or deleted: an entry that is a symbolic link is an
error naming it (files are opened with ``O_NOFOLLOW``, temporary files with ``O_EXCL``), and
``--force`` deletes only the entries a run folder is made of, refusing a folder that holds
anything else (a user's files, links). When no checkpoint is readable the run restarts from
step 0, and says so on stderr and in ``run.log``.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import time
from pathlib import Path
from typing import Optional

import fcntl
import io
from importlib.metadata import PackageNotFoundError, version

try:  # Python >= 3.11
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

import h5py
import numpy as np
import torch

from ..executors.results import acceptance_rate
from ..io.checkpoint import atomic_write_bytes, latest_checkpoint, list_checkpoints
from ..io.trajectory import TrajectoryError, read_trajectory, topology_from_json
from ..result import SampleResult
from ..safe_paths import UnsafePathError, check_target, make_dirs, open_fd

CONFIG = "config.toml"
LOG = "run.log"
TRAJECTORY = "trajectory.h5"
CHECKPOINTS = "checkpoints"
SUMMARY = "summary.json"
INTEGRATOR_SUMMARY = "integrator_summary.npz"
STATE = "state.csv"
#: The folder's identity: a small JSON file with the layout's format and version.
MARKER = ".langevin-md-run"
MARKER_FORMAT = "langevin_md.run_folder"
MARKER_VERSION = 1
_LOCK = ".lock"
_HEADER = "# Resolved by langevin-md"

#: Entries a run folder is made of (what ``--force`` may delete, besides the patterns below).
_OWN_FILES = {CONFIG, LOG, TRAJECTORY, SUMMARY, INTEGRATOR_SUMMARY, STATE, MARKER, _LOCK,
              "attempts.jsonl",  # a shard's attempt log (langevin_md.run.distributed)
              "shards.json"}  # a distributed run's shard layout (langevin_md.run.distributed)
#: Folders a run folder is made of: checkpoints, the merged run's shard folders, the report
#: `langevin-md analyze` writes.
_OWN_DIRS = {CHECKPOINTS, "shards", "report"}
#: Temporary files of atomic writes and trajectory rebuilds, and `langevin-md export`'s
#: default outputs.
_OWN_PATTERNS = (re.compile(r"^\..+\.tmp-\d+$"), re.compile(r"^\.trajectory\.h5\.rebuild-\d+$"),
                 re.compile(r"^walker_\d+\.(h5|dcd|xtc|pdb|extxyz)$"))


class RunFolderError(RuntimeError):
    """A run folder cannot be created, used or read (exists, locked, not a run folder...)."""


class RunStorageError(RunFolderError):
    """Writing to the run folder failed (full disk, no permission, read-only file system)."""


class RunFailed(RuntimeError):
    """The state went non-finite; nothing after the last good checkpoint was checkpointed.

    Attributes
    ----------
    steps : tuple of int
        ``(first, last)`` steps between which it happened.
    walkers : list of int
    checkpoint : pathlib.Path or None
        The last good checkpoint.
    committed_step : int
        Frames up to this step are on disk.
    """

    def __init__(self, message: str, steps=(0, 0), walkers=(), checkpoint=None, committed_step: int = 0):
        super().__init__(message)
        self.steps = tuple(steps)
        self.walkers = list(walkers)
        self.checkpoint = checkpoint
        self.committed_step = committed_step


# --------------------------------------------------------------------------- identity and safety
def _read_marker(run_dir: Path) -> Optional[dict]:
    path = run_dir / MARKER
    if path.is_symlink() or not path.is_file():
        return None
    try:
        marker = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(marker, dict) or marker.get("format") != MARKER_FORMAT:
        return None
    return marker


def is_run_folder(path) -> bool:
    """True when ``path`` holds the marker file written by :func:`create_run`."""
    return _read_marker(Path(path)) is not None


def check_run_folder(run_dir) -> Path:
    """Check that ``run_dir`` is a run folder this version can use, and that none of its
    entries is a symbolic link (writing, truncating or deleting through one would change
    files outside the folder).

    Raises
    ------
    RunFolderError
        Naming the missing marker, the unsupported version or the symlinked entry.
    """
    run_dir = Path(run_dir)
    if run_dir.is_dir():  # FIFOs first: reading the marker or config of a FIFO would block
        _refuse_special_files(run_dir)
    marker = _read_marker(run_dir)
    if marker is None:
        legacy = ""
        try:
            with open(run_dir / CONFIG, encoding="utf-8") as fh:
                if fh.read(len(_HEADER)) == _HEADER and not (run_dir / MARKER).is_symlink():
                    legacy = (f". Its {CONFIG} was written by an older langevin-md, before run folders had "
                              f"a marker: if it is your run folder, create {run_dir / MARKER} holding "
                              f'{{"format": "{MARKER_FORMAT}", "version": {MARKER_VERSION}}}')
        except (OSError, UnicodeDecodeError):
            pass
        raise RunFolderError(f"{run_dir} is not a langevin-md run folder (no valid {MARKER} marker file "
                             f"written by `langevin-md run`){legacy}")
    version = marker.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version > MARKER_VERSION:
        raise RunFolderError(f"{run_dir} is a run folder of format version {version!r}; this langevin-md "
                             f"reads version {MARKER_VERSION} or older: upgrade langevin-md")
    _refuse_symlinks(run_dir)
    return run_dir


def _refuse_special_files(run_dir: Path) -> None:
    """A FIFO, socket or device among the entries (opening a FIFO blocks until a writer comes)."""
    for folder in (run_dir, run_dir / CHECKPOINTS):
        if folder.is_symlink() or not folder.is_dir():
            continue
        for entry in sorted(folder.iterdir()):
            if not (entry.is_symlink() or entry.is_file() or entry.is_dir()):
                try:
                    check_target(entry)
                except UnsafePathError as exc:
                    raise RunFolderError(f"{exc}. A run folder's entries must be regular files and "
                                         "folders") from None


def _refuse_symlinks(run_dir: Path) -> None:
    for entry in sorted(run_dir.iterdir()):
        if entry.is_symlink():
            raise RunFolderError(f"{entry} is a symbolic link (to {os.readlink(entry)!r}); a run folder's "
                                 "entries must be real files and folders, so nothing outside it is "
                                 "written or deleted. Replace it with the real file or remove it")

    ck = run_dir / CHECKPOINTS
    if ck.is_dir():
        for entry in sorted(ck.iterdir()):
            if entry.is_symlink():
                raise RunFolderError(f"{entry} is a symbolic link (to {os.readlink(entry)!r}); refusing to "
                                     "use a checkpoints folder holding links. Remove it")


def _is_own_entry(entry: Path) -> bool:
    name = entry.name
    if entry.is_symlink():
        return False
    if name in _OWN_FILES:
        return entry.is_file()
    if name in _OWN_DIRS:
        return entry.is_dir()
    return entry.is_file() and any(p.match(name) for p in _OWN_PATTERNS)


def _foreign_entries(run_dir: Path) -> list[str]:
    """Entries of ``run_dir`` that a run folder is not made of (a user's own files)."""
    foreign = [e.name for e in run_dir.iterdir() if not _is_own_entry(e)]
    ck = run_dir / CHECKPOINTS
    if ck.is_dir() and not ck.is_symlink():
        foreign += [f"{CHECKPOINTS}/{e.name}" for e in ck.iterdir()
                    if e.is_symlink() or not e.is_file()
                    or not (re.match(r"^step_\d{12}\.npz$", e.name) or _OWN_PATTERNS[0].match(e.name))]
    shards = run_dir / "shards"
    if shards.is_dir() and not shards.is_symlink():  # each shard is a run folder of its own
        for e in shards.iterdir():
            if e.is_symlink() or not e.is_dir() or not is_run_folder(e):
                foreign.append(f"shards/{e.name}")
            else:
                foreign += [f"shards/{e.name}/{name}" for name in _foreign_entries(e)]
    return sorted(foreign)


def append_text(path, text: str) -> None:
    """Append ``text`` to a file inside a run folder, never through a symbolic link or into a FIFO."""
    fd = open_nofollow(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    with os.fdopen(fd, "a", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())


def open_nofollow(path: Path, flags: int) -> int:
    """``os.open`` of a regular file (:func:`langevin_md.safe_paths.open_fd`): a symbolic link,
    FIFO or device at ``path`` is a :class:`RunFolderError` naming it."""
    try:
        return open_fd(path, flags)
    except UnsafePathError as exc:
        raise RunFolderError(str(exc)) from None


def storage_error(exc: OSError, doing: str, safe: str) -> RunStorageError:
    num = exc.errno
    if num is None:  # HDF5 reports the system error inside its message
        m = re.search(r"errno\s*=\s*(\d+)", str(exc))
        num = int(m.group(1)) if m else None
    code = errno.errorcode.get(num, "") if num else ""
    hints = {
        errno.ENOSPC: "the disk is full; free space",
        errno.EDQUOT: "the disk quota is exceeded; free space",
        errno.EFBIG: "the file-size limit was reached; raise it (ulimit -f) or free space",
        errno.EACCES: "permission denied; make the folder writable",
        errno.EPERM: "operation not permitted; make the folder writable",
        errno.EROFS: "the file system is read-only; use another --output folder",
    }
    hint = hints.get(num, "check the disk and the folder's permissions")
    what = f"{code}: {exc.strerror or os.strerror(num)}" if code else str(exc)
    return RunStorageError(f"{doing} failed ({what}): {hint}. {safe}")


@contextlib.contextmanager
def locked(run_dir: Path):
    """Hold an exclusive lock on the run folder (released by the OS even after SIGKILL)."""
    path = run_dir / _LOCK
    fd = open_nofollow(path, os.O_RDWR | os.O_CREAT)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = os.pread(fd, 32, 0).decode(errors="replace").strip()
            raise RunFolderError(f"another langevin-md process (pid {other or '?'}) is using {run_dir}; "
                                 "wait for it to finish or stop it first") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)


def read_summary(run_dir: Path) -> dict:
    """A run folder's ``summary.json`` as a dict (empty when missing or unreadable)."""
    try:
        return json.loads((run_dir / SUMMARY).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def write_summary(run_dir: Path, summary: dict, logger=None) -> None:
    """Write ``summary.json`` atomically; a failure is logged, never raised."""
    try:
        atomic_write_bytes(run_dir / SUMMARY, (json.dumps(summary, indent=2, default=_json_default) + "\n").encode())
    except OSError as exc:  # a full disk must not hide the run's real outcome
        if logger is not None:
            logger.error("could not write %s: %s", SUMMARY, exc)


def _json_default(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def versions() -> dict:
    """Versions of the packages a run's results depend on."""
    # The installed distribution's version (the package's own __init__ is not imported here:
    # io must not depend on the package that re-exports it).
    try:
        own = version("langevin_md")
    except PackageNotFoundError:  # run from a source tree that was never installed
        own = "unknown (not installed)"
    return {"langevin_md": own, "torch": torch.__version__, "numpy": np.__version__,
            "h5py": h5py.__version__}


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


# --------------------------------------------------------------------------- create
def write_config(run_dir: Path, config) -> None:
    """Write the resolved ``config`` as the folder's ``config.toml`` (atomically).

    When ``backend = "auto"`` was resolved (``config.backend_reason``), ``run.log`` gets a
    line saying which executor it chose and why; the resolved config names that executor,
    so a resume never decides again.
    """
    atomic_write_bytes(run_dir / CONFIG, (_HEADER + " " + now() + "\n" + config.to_toml()).encode())
    reason = getattr(config, "backend_reason", None)
    if reason:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        append_text(run_dir / LOG, f"{stamp} INFO [sampler] backend = \"auto\" chose "
                                   f"{config.sampler['backend']}: {reason}\n")


def create_run(config, run_dir, force: bool = False) -> Path:
    """Create a run folder holding the resolved ``config`` (a :class:`~langevin_md.run.config.RunConfig`).

    Parameters
    ----------
    config : RunConfig
    run_dir : str or PathLike
    force : bool
        Replace an existing run folder. A non-empty folder that is not a run folder is
        never deleted.

    Raises
    ------
    RunFolderError
        The folder exists (and ``force`` is False), or is not a run folder.
    RunStorageError
        The folder cannot be created or written.
    """
    run_dir = Path(run_dir)
    if run_dir.is_symlink():  # e.g. planted at the default runs/NAME: the run would land elsewhere
        raise RunFolderError(f"{run_dir} is a symbolic link (to {os.readlink(run_dir)!r}); a new run folder "
                             "is never created through one. Give the real folder's path as --output")
    if run_dir.exists() and not run_dir.is_dir():
        raise RunFolderError(f"{run_dir} exists and is not a folder")
    if run_dir.is_dir() and any(p.name != _LOCK for p in run_dir.iterdir()):
        if not force:
            raise RunFolderError(f"run folder {run_dir} already exists; pass --force to replace it, "
                                 f"`langevin-md resume {run_dir}` to continue it, or choose another --output")
        if not is_run_folder(run_dir):
            raise RunFolderError(f"{run_dir} is not empty and is not a langevin-md run folder (no {MARKER} "
                                 "marker file); refusing to delete it even with --force")
        foreign = _foreign_entries(run_dir)
        if foreign:
            shown = ", ".join(foreign[:10]) + (" ..." if len(foreign) > 10 else "")
            raise RunFolderError(
                f"{run_dir} holds entries a run folder is not made of ({shown}); --force deletes only "
                "a run folder's own files, so it refuses this folder. Move those entries elsewhere "
                "(symbolic links count as foreign entries) or choose another --output")
        with locked(run_dir):
            # The marker goes last: a deletion stopped half-way leaves a folder --force still accepts.
            for p in sorted(run_dir.iterdir(), key=lambda e: e.name == MARKER):
                if p.name == _LOCK:
                    continue
                shutil.rmtree(p) if p.is_dir() else p.unlink()  # no entry is a symlink (checked above)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        # The marker first: a creation stopped half-way leaves a folder --force may replace.
        marker = {"format": MARKER_FORMAT, "version": MARKER_VERSION, "created": now()}
        atomic_write_bytes(run_dir / MARKER, (json.dumps(marker) + "\n").encode())
        make_dirs(run_dir / CHECKPOINTS, inside=run_dir)
        write_config(run_dir, config)
    except OSError as exc:
        raise storage_error(exc, f"creating run folder {run_dir}", "Nothing was run.") from None
    return run_dir


def write_integrator_summary(run_dir: Path, arrays: dict) -> None:
    """Store the integrator's end-of-run summary (nothing when it has none)."""
    if not arrays:
        return
    buf = io.BytesIO()
    np.savez(buf, **{k: np.asarray(v) for k, v in arrays.items()})
    atomic_write_bytes(run_dir / INTEGRATOR_SUMMARY, buf.getvalue())


def read_integrator_summary(run_dir: Path) -> dict:
    path = run_dir / INTEGRATOR_SUMMARY
    if not path.exists():
        return {}
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


# --------------------------------------------------------------------------- load
def load_run(run_dir):
    """The frames of a run folder as a :class:`~langevin_md.result.SampleResult`.

    The same object :func:`langevin_md.sample` returns for the same settings (``system`` is
    None: it is not rebuilt; molecular runs carry their mdtraj topology in
    ``metadata["topology"]``, so :meth:`SampleResult.to_mdtraj` works). Only committed
    frames are returned: those up to the newest checkpoint (for a run that failed, up to
    the failure). Acceptance rates and step sizes are those of the newest checkpoint.

    Parameters
    ----------
    run_dir : str or PathLike

    Raises
    ------
    RunFolderError
        If ``run_dir`` is not a run folder.
    """

    run_dir = Path(run_dir)
    if run_dir.is_dir():  # reading a FIFO planted at summary.json or trajectory.h5 would block
        _refuse_special_files(run_dir)
    if not is_run_folder(run_dir):
        raise RunFolderError(f"{run_dir} is not a langevin-md run folder (no {MARKER} marker file "
                             "written by `langevin-md run`)")
    summary = read_summary(run_dir)
    found = latest_checkpoint(run_dir / CHECKPOINTS)
    ck_step = found[1]["step"] if found else 0
    committed = max(ck_step, int(summary.get("committed_step") or 0))
    try:
        data = read_trajectory(run_dir / TRAJECTORY, through_step=committed)
    except TrajectoryError as exc:
        raise TrajectoryError(f"{exc}. To recover: delete {TRAJECTORY} and {CHECKPOINTS}/ and run "
                              f"`langevin-md resume {run_dir}`, which recomputes the run from step 0",
                              exc.intact_frames, exc.intact_through_step) from None
    acc = step_sizes = None
    n_steps_run = committed
    if found is not None:
        _, sd, extra = found
        acc = acceptance_rate(sd["accepted"], sd["production_steps"], bool(extra.get("metropolis_adjusted")))
        step_sizes = sd["state"].get("step_size")
    metadata = dict(summary.get("metadata", {}))
    metadata["run_dir"] = str(run_dir)
    metadata["status"] = summary.get("status")
    metadata["units"] = data["units"]
    if "timestep" not in metadata:  # summaries written before the key existed
        metadata["timestep"] = _timestep(run_dir)
    if data["topology_json"] is not None:
        metadata["topology"] = topology_from_json(data["topology_json"])
    return SampleResult(
        positions=data["positions"], energies=data["energies"], steps=data["steps"], kT=data["kT"],
        acceptance_rate=acc, kinetic_energies=data["kinetic_energies"], step_sizes=step_sizes,
        walker_indices=data["walker_indices"], wall_time=float(summary.get("wall_time", 0.0)),
        n_steps_run=n_steps_run, metadata=metadata, system=None, fields=data["fields"],
        integrator_summary=read_integrator_summary(run_dir),
    )


def _timestep(run_dir: Path) -> Optional[float]:
    """The integrator's timestep (ps for molecular runs) from the run's config; None when the
    scheme has none (ULA, MALA, RWM; HMC's leapfrog step is a proposal, not elapsed time) or the
    config cannot be read."""
    try:
        table = tomllib.loads((run_dir / CONFIG).read_text(encoding="utf-8"))["integrator"]
        value = table.get("timestep")
        if str(table.get("name", "")).lower() == "hmc":
            return None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def checkpoints(run_dir) -> list[Path]:
    """The checkpoint files of a run folder, oldest first."""
    return list_checkpoints(Path(run_dir) / CHECKPOINTS)
