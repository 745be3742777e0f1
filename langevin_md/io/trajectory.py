"""Chunked HDF5 trajectory files that survive a crash of the writer.

Layout of ``trajectory.h5`` (h5py; every frame dataset is chunked and resizable along frames)::

    /steps              (n_frames,) int64           integrator step of every frame
    /positions          (n_frames, n_walkers, *event_shape)  nm (molecular) or reduced units
    /energies           (n_frames, n_walkers)       potential energy U
    /kinetic_energies   (n_frames, n_walkers)       only for schemes with velocities
    /walker_indices     (n_walkers,) int64          global walker indices (random streams)
    /fields/NAME        (n_frames, n_walkers, ...)  the integrator's recorded fields, if any
    /topology           JSON string, mdtraj's HDF5 topology format (molecular systems only)
    attributes: format, version, kT, units ("molecular": nm, kJ/mol; "reduced"), dtype

Analytic systems are stored as plain arrays. The file is written in HDF5's single-writer /
multiple-reader (SWMR) mode, whose ordered metadata writes keep the file readable if the
writer is killed at any moment; frames are made durable (flush + fsync) before every
checkpoint. A file left by a killed writer can only be opened read-only in SWMR mode, so
:meth:`TrajectoryWriter.reopen` rebuilds it: it copies the frames up to the checkpoint into a
new file and renames that into place.

Damaged files fail fast. Before opening, the end-of-file address stored in the HDF5
superblock is compared with the size on disk (a truncated file would otherwise make SWMR
reads retry for minutes and read the lost tail as zeros); files closed cleanly are opened
without SWMR; every chunk of the frames read must lie inside the file, and each carries a
Fletcher-32 checksum. Errors say how many leading frames are intact.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional

import numpy as np

from ..safe_paths import UnsafePathError, check_target

FORMAT = "langevin_md.trajectory"
VERSION = 1
_FRAME_KEYS = ("positions", "energies", "kinetic_energies")
_CHUNK_BYTES = 1 << 20
#: Room kept free for HDF5 metadata and checkpoints when checking space before a write (at
#: most 1/64 of the volume, so a small volume is not reported full while it has room).
_RESERVE_BYTES = 4 << 20
#: Seconds allowed to the child process that counts the intact frames of a truncated file.
_SCAN_TIMEOUT_S = 30.0
_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


class TrajectoryError(RuntimeError):
    """A trajectory file is missing, unreadable, damaged or inconsistent with its checkpoint.

    Attributes
    ----------
    intact_frames : int or None
        For a damaged file: how many leading frames are intact (None when unknown).
    intact_through_step : int or None
        The step of the last intact frame (None when no frame is intact or it is unknown).
    """

    def __init__(self, message: str, intact_frames: Optional[int] = None,
                 intact_through_step: Optional[int] = None):
        super().__init__(message)
        self.intact_frames = intact_frames
        self.intact_through_step = intact_through_step


def _intact_words(n: Optional[int], last_step: Optional[int]) -> str:
    if n is None:
        return "which frames are intact cannot be told (the file's own index is damaged)"
    if n == 0:
        return "no frame is intact"
    return f"the first {n} frames (through step {last_step}) are intact"


# --------------------------------------------------------------------------- integrity
def _superblock(path: Path) -> Optional[tuple[int, int]]:
    """``(consistency flags, stored end-of-file address)`` from an HDF5 superblock v2/v3.

    Returns None for older superblock versions (HDF5 checks those files itself).

    Raises
    ------
    TrajectoryError
        If the file does not start with the HDF5 signature.
    """
    with open(path, "rb") as fh:
        head = fh.read(48)
    if not head.startswith(_HDF5_SIGNATURE):
        raise TrajectoryError(f"cannot read trajectory file {str(path)!r}: not an HDF5 file (no HDF5 "
                              "signature at its start)", 0)
    if len(head) < 12 or head[8] not in (2, 3):
        return None
    size_of_offsets = head[9]
    start = 12 + 2 * size_of_offsets  # after the base and superblock-extension addresses
    if len(head) < start + size_of_offsets:
        raise TrajectoryError(f"{str(path)!r} is truncated inside its HDF5 header", 0)
    return head[11], int.from_bytes(head[start:start + size_of_offsets], "little")


# Run in a child process: a truncated file can make HDF5's SWMR reader retry its metadata
# reads for minutes, and a child can be stopped after a timeout; this process cannot. A file
# that was closed cleanly (consistency flags 0) is opened without SWMR: HDF5 then fails at
# once on zeroed metadata instead of retrying it (30 s, the whole timeout, on a 3.8 kB
# remnant of a 115 kB file).
_SCAN_SCRIPT = r"""
import json, sys
import h5py
path, physical, swmr = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1"
opened = h5py.File(path, "r", libver="latest", swmr=True) if swmr else h5py.File(path, "r")
with opened as f:
    keys = [k for k in ("steps", "positions", "energies", "kinetic_energies") if k in f]
    if "fields" in f:
        keys += ["fields/" + name for name in f["fields"]]
    n = min(f[k].shape[0] for k in keys)
    for k in keys:
        ds = f[k]
        for i in range(ds.id.get_num_chunks()):
            info = ds.id.get_chunk_info(i)
            if info.byte_offset is None or info.byte_offset + info.size > physical:
                n = min(n, info.chunk_offset[0])
    last = int(f["steps"][n - 1]) if n else None
print(json.dumps({"n": int(n), "last": last}))
"""


def _scan_truncated(path: Path, physical: int, stored_eof: int,
                    swmr: bool = True) -> tuple[Optional[int], Optional[int]]:
    """Intact leading frames of a truncated file, found on a zero-padded copy in a child process."""
    import shutil
    import subprocess
    import sys
    import tempfile

    with tempfile.TemporaryDirectory(prefix="langevin-md-scan-") as tmp:
        copy = Path(tmp) / "copy.h5"
        try:
            shutil.copyfile(path, copy)
            os.truncate(copy, stored_eof)  # sparse zeros where the file was cut
            proc = subprocess.run([sys.executable, "-c", _SCAN_SCRIPT, str(copy), str(physical), "1" if swmr else "0"],
                                  capture_output=True, text=True, timeout=_SCAN_TIMEOUT_S)
            out = json.loads(proc.stdout) if proc.returncode == 0 else None
        except (OSError, ValueError, subprocess.TimeoutExpired):
            out = None
    if out is None:
        return None, None
    return out["n"], out["last"]


def _open_checked(path: Path):
    """Open a trajectory for reading after checking it is whole; never hangs on a damaged file.

    The stored end-of-file address is compared with the size on disk first: HDF5's SWMR
    reader would otherwise retry failing metadata reads of a truncated file for minutes, and
    read the missing tail of a dataset as zeros. Files closed cleanly are opened without
    SWMR (HDF5 then runs its own checks); only files left open by a killed writer need SWMR
    read mode.
    """
    h5py = _h5py()
    info = _superblock(path)
    physical = os.stat(path).st_size
    if info is not None and physical < info[1]:
        n, last = _scan_truncated(path, physical, info[1], swmr=info[0] != 0)
        raise TrajectoryError(
            f"trajectory file {str(path)!r} is truncated: its header says it ends at byte {info[1]}, "
            f"but only {physical} bytes are on disk; {_intact_words(n, last)}", n, last)
    swmr = info is not None and info[0] != 0  # consistency flags still set: the writer died
    try:
        if swmr:
            return h5py.File(path, "r", libver="latest", swmr=True)
        return h5py.File(path, "r")
    except OSError as exc:
        raise TrajectoryError(f"cannot read trajectory file {str(path)!r}: {exc}", None) from None


def _intact_prefix(f, keys, n: int, physical: int) -> int:
    """Leading frames whose chunks are all allocated and lie inside the file."""
    intact = n
    for key in keys:
        ds = f[key]
        per = ds.chunks[0]
        have = set()
        for i in range(ds.id.get_num_chunks()):
            info = ds.id.get_chunk_info(i)
            if info.byte_offset is not None and info.byte_offset + info.size <= physical:
                have.add(info.chunk_offset[0])
        first = 0
        while first < intact and first in have:
            first += per
        intact = min(intact, first)
    return intact


def _read_checked(f, key: str, n: int, path: Path, steps) -> np.ndarray:
    """``f[key][:n]``; a chunk failing its checksum raises naming the intact frames."""
    ds = f[key]
    try:
        return ds[:n]
    except OSError:
        pass
    per = ds.chunks[0]
    first_bad = 0
    for a in range(0, n, per):
        try:
            ds[a:min(n, a + per)]
        except OSError:
            first_bad = a
            break
    if key == "steps" and first_bad:
        steps = ds[:first_bad]  # the chunks before the bad one read fine
    last = int(steps[first_bad - 1]) if first_bad and len(steps) >= first_bad else None
    raise TrajectoryError(f"trajectory file {str(path)!r} is corrupted: dataset {key!r} fails its "
                          f"checksum at frame {first_bad}; {_intact_words(first_bad, last)}",
                          first_bad, last)


def _h5py():
    import h5py

    return h5py


def _fsync_h5(f) -> None:
    f.flush()
    try:
        os.fsync(f.id.get_vfd_handle())
    except (AttributeError, TypeError, ValueError, OSError):
        # Drivers without a POSIX descriptor: fsync the path instead (same inode on Linux).
        fd = os.open(f.filename, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def topology_to_json(topology) -> str:
    """An mdtraj (or OpenMM) topology as mdtraj's HDF5 topology JSON."""
    import mdtraj
    from mdtraj.formats.hdf5 import HDF5TrajectoryFile

    if not isinstance(topology, mdtraj.Topology):
        topology = mdtraj.Topology.from_openmm(topology)
    return json.dumps(HDF5TrajectoryFile.convert_topology_to_dict(topology, bond_metadata=False))


def topology_from_json(text: str):
    """Inverse of :func:`topology_to_json` (same reading rules as mdtraj's HDF5 reader)."""
    import mdtraj
    from mdtraj.core import element as elem

    d = json.loads(text)
    top = mdtraj.Topology()
    for chain_d in sorted(d["chains"], key=lambda c: c["index"]):
        chain = top.add_chain()
        chain.chain_id = chain_d.get("chain_id")
        for res_d in sorted(chain_d["residues"], key=lambda r: r["index"]):
            res = top.add_residue(res_d["name"], chain, resSeq=res_d.get("resSeq"),
                                  segment_id=res_d.get("segmentID", ""))
            for atom_d in sorted(res_d["atoms"], key=lambda a: a["index"]):
                try:
                    element = elem.get_by_symbol(atom_d["element"])
                except KeyError:
                    element = elem.virtual
                top.add_atom(atom_d["name"], element, res)
    atoms = list(top.atoms)
    for i, j in d["bonds"]:
        top.add_bond(atoms[i], atoms[j])
    return top


def system_units(system) -> str:
    """The units a trajectory file records for ``system``: its ``units`` attribute,
    ``"molecular"`` (nm, kJ/mol, amu) or ``"reduced"``."""
    return system.units


class TrajectoryWriter:
    """A frame sink for :meth:`Sampler.run_to` that appends frames to an HDF5 file.

    Use :meth:`create` for a new file and :meth:`reopen` to continue one from a checkpoint.
    :meth:`write_frames` is what the sampler calls; :meth:`commit` makes everything written
    so far durable.
    """

    def __init__(self, h5file, path: Path):
        self._f = h5file
        self.path = Path(path)
        self.n_frames = int(min(h5file[k].shape[0] for k in ("steps",) + self._frame_keys()))
        self._broken = False
        self._chunk_bytes = sum(int(np.prod(h5file[k].chunks)) * h5file[k].dtype.itemsize
                                for k in ("steps",) + self._frame_keys())

    def _frame_keys(self):
        return tuple(k for k in _FRAME_KEYS if k in self._f) + _field_keys(self._f)

    # ----------------------------------------------------------------- construction
    @classmethod
    def create(cls, path, n_walkers: int, event_shape, dtype, with_kinetic: bool, walker_indices,
               kT: float, units: str = "reduced", topology=None, fields=None) -> "TrajectoryWriter":
        """A new, empty trajectory file (replacing any file at ``path``).

        ``fields`` maps the name of each recorded field to ``(per-walker shape, dtype)``.
        """
        path = Path(path)
        _refuse_symlink(path)
        _create_file(path, n_walkers, tuple(event_shape), np.dtype(dtype), with_kinetic,
                     np.asarray(walker_indices, dtype=np.int64), float(kT), units,
                     None if topology is None else topology_to_json(topology), fields or {})
        return cls._open_for_append(path)

    @classmethod
    def reopen(cls, path, through_step: int, expected_frames: int) -> "TrajectoryWriter":
        """Continue ``path`` from a checkpoint at ``through_step``.

        Frames after ``through_step`` (written after the checkpoint by a run that then
        stopped) are dropped by rewriting the file, so the continuation neither duplicates
        nor loses a frame.

        Raises
        ------
        TrajectoryError
            If the file holds fewer than ``expected_frames`` frames up to the checkpoint.
        """
        path = Path(path)
        info = read_trajectory(path, through_step=through_step, frames=False)
        n = info["steps"].shape[0]
        if n != expected_frames:
            raise TrajectoryError(
                f"{path} holds {n} frames up to step {through_step}, but the checkpoint there "
                f"recorded {expected_frames}; the trajectory file was modified or damaged")
        h5py = _h5py()
        tmp = path.with_name(f".{path.name}.rebuild-{os.getpid()}")
        try:
            if os.path.lexists(tmp):  # left by a killed rebuild; unlinking never follows a link
                os.unlink(tmp)
            with _open_checked(path) as src:
                _create_file(tmp, info["n_walkers"], info["event_shape"], src["positions"].dtype,
                             "kinetic_energies" in src, info["walker_indices"], info["kT"],
                             info["units"], info["topology_json"],
                             {k.split("/", 1)[1]: (src[k].shape[2:], src[k].dtype) for k in _field_keys(src)})
                frame_bytes = max(1, int(np.prod(src["positions"].shape[1:])) * src["positions"].dtype.itemsize)
                block = max(1, (64 << 20) // frame_bytes)
                with h5py.File(tmp, "r+", libver="latest") as dst:
                    for a in range(0, n, block):
                        b = min(n, a + block)
                        kin = src["kinetic_energies"][a:b] if "kinetic_energies" in src else None
                        fields = {k.split("/", 1)[1]: src[k][a:b] for k in _field_keys(src)}
                        _append(dst, src["steps"][a:b], src["positions"][a:b], src["energies"][a:b], kin,
                                fields)
                    _fsync_h5(dst)
            os.replace(tmp, path)
        except BaseException:
            if tmp.exists():
                tmp.unlink()
            raise
        from .checkpoint import fsync_dir

        fsync_dir(path.parent)
        return cls._open_for_append(path)

    @classmethod
    def _open_for_append(cls, path: Path) -> "TrajectoryWriter":
        h5py = _h5py()
        _refuse_symlink(path)
        f = h5py.File(path, "r+", libver="latest")
        try:
            f.swmr_mode = True
        except BaseException:
            f.close()
            raise
        return cls(f, path)

    # ----------------------------------------------------------------- the frame-sink protocol
    def write_frames(self, steps, positions, energies, kinetic_energies=None, fields=None) -> None:
        """Append a block of frames (called by the sampler as blocks reach the host).

        Parameters
        ----------
        steps : numpy.ndarray of int64, shape ``(k,)``
        positions : numpy.ndarray, shape ``(k, n_walkers, *event_shape)``
        energies : numpy.ndarray, shape ``(k, n_walkers)``
        kinetic_energies : numpy.ndarray or None, shape ``(k, n_walkers)``
        fields : dict of str to numpy.ndarray, optional
            The integrator's recorded fields, each ``(k, n_walkers, ...)``.
        """
        if self._broken:
            raise OSError(f"{self.path} could not be written earlier in this run")
        fields = dict(fields or {})
        arrays = [positions, energies, kinetic_energies] + list(fields.values())
        self._check_space(sum(np.asarray(a).nbytes for a in arrays if a is not None))
        try:
            _append(self._f, steps, positions, energies, kinetic_energies, fields)
            self._f.flush()  # visible to SWMR readers (e.g. load_run while running); not yet fsynced
        except BaseException:
            self._broken = True
            raise
        self.n_frames += len(steps)

    def commit(self) -> dict:
        """Flush and fsync the file; returns ``{"n_frames": ...}`` for the checkpoint."""
        if self._broken:
            raise OSError(f"{self.path} could not be written earlier in this run")
        try:
            _fsync_h5(self._f)
        except BaseException:
            self._broken = True
            raise
        return {"n_frames": self.n_frames}

    def close(self) -> None:
        # After a failed write HDF5's state is not trustworthy (it can crash on a later flush),
        # so a broken file is left for the OS to close; its committed frames are on disk.
        if self._f is not None and not self._broken and self._f.id.valid:
            self._f.close()
        self._f = None

    def _check_space(self, nbytes: int) -> None:
        """Refuse a write that could run out of room, before HDF5 meets the error.

        HDF5 does not recover cleanly from a failed write (it may crash on the next flush),
        so the space a block needs, plus a new chunk per dataset and room for metadata, is
        checked against the free disk space and the process's file-size limit first.
        """
        import errno
        import resource

        st = os.statvfs(self.path.parent)
        reserve = min(_RESERVE_BYTES, st.f_blocks * st.f_frsize // 64)
        need = 2 * nbytes + self._chunk_bytes + reserve
        if st.f_bavail * st.f_frsize < need:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self.path))
        soft = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
        if soft != resource.RLIM_INFINITY and os.path.getsize(self.path) + need > soft:
            raise OSError(errno.EFBIG, os.strerror(errno.EFBIG), str(self.path))


def _refuse_symlink(path: Path) -> None:
    """Writing through a symlink would change a file outside the run folder; a FIFO would block."""
    try:
        check_target(path)
    except UnsafePathError as exc:
        raise TrajectoryError(str(exc)) from None


def _field_keys(f) -> tuple:
    """Dataset paths of the recorded fields (``fields/NAME``), sorted."""
    if "fields" not in f:
        return ()
    return tuple(f"fields/{name}" for name in sorted(f["fields"].keys()))


def _create_file(path: Path, n_walkers: int, event_shape: tuple, dtype: np.dtype, with_kinetic: bool,
                 walker_indices: np.ndarray, kT: float, units: str, topology_json: Optional[str],
                 fields: dict) -> None:
    h5py = _h5py()
    frame_bytes = max(1, n_walkers * int(np.prod(event_shape, dtype=np.int64)) * dtype.itemsize)
    chunk_frames = int(max(1, min(1024, _CHUNK_BYTES // frame_bytes)))
    with h5py.File(path, "w", libver="latest") as f:
        f.attrs["format"] = FORMAT
        f.attrs["version"] = VERSION
        f.attrs["kT"] = kT
        f.attrs["units"] = units
        f.attrs["dtype"] = dtype.name
        f.create_dataset("walker_indices", data=walker_indices)
        # Fletcher-32 checksums on every chunk: a corrupted chunk fails to read instead of
        # returning wrong numbers.
        f.create_dataset("steps", shape=(0,), maxshape=(None,), dtype=np.int64,
                         chunks=(max(chunk_frames, 256),), fletcher32=True)
        f.create_dataset("positions", shape=(0, n_walkers) + event_shape,
                         maxshape=(None, n_walkers) + event_shape, dtype=dtype,
                         chunks=(chunk_frames, n_walkers) + event_shape, fletcher32=True)
        per_walker = dict(shape=(0, n_walkers), maxshape=(None, n_walkers), dtype=dtype,
                          chunks=(max(1, min(1024, _CHUNK_BYTES // (n_walkers * dtype.itemsize))), n_walkers),
                          fletcher32=True)
        f.create_dataset("energies", **per_walker)
        if with_kinetic:
            f.create_dataset("kinetic_energies", **per_walker)
        for name, (shape, field_dtype) in fields.items():
            shape = tuple(int(d) for d in shape)
            field_bytes = max(1, n_walkers * int(np.prod(shape, dtype=np.int64)) * np.dtype(field_dtype).itemsize)
            f.create_dataset(f"fields/{name}", shape=(0, n_walkers) + shape, maxshape=(None, n_walkers) + shape,
                             dtype=np.dtype(field_dtype),
                             chunks=(max(1, min(1024, _CHUNK_BYTES // field_bytes)), n_walkers) + shape,
                             fletcher32=True)
        if topology_json is not None:
            f.create_dataset("topology", data=topology_json, dtype=h5py.string_dtype())
        f.attrs["event_shape"] = np.asarray(event_shape, dtype=np.int64)


def _append(f, steps, positions, energies, kinetic_energies, fields=None) -> None:
    k = len(steps)
    if k == 0:
        return
    # Frame data first and steps last: a reader trusts only frames that have a step.
    items = [("positions", positions), ("energies", energies)]
    if "kinetic_energies" in f:
        if kinetic_energies is None:
            raise TrajectoryError("this trajectory stores kinetic energies but none were given")
        items.append(("kinetic_energies", kinetic_energies))
    fields = dict(fields or {})
    stored = {key.split("/", 1)[1] for key in _field_keys(f)}
    if set(fields) != stored:
        raise TrajectoryError(f"this trajectory stores the fields {sorted(stored)} but the frames carry "
                              f"{sorted(fields)}")
    items += [(f"fields/{name}", value) for name, value in fields.items()]
    items.append(("steps", np.asarray(steps, dtype=np.int64)))
    for key, value in items:
        ds = f[key]
        n = ds.shape[0]
        ds.resize(n + k, axis=0)
        ds[n:n + k] = value


def _attr(f, name: str, kind: type, path: Path, required: bool = True):
    """A file attribute as a plain ``str``, ``float`` or ``tuple`` of ints, or an error.

    Attributes are data like the rest of the file: only plain strings and numbers are
    accepted (h5py never unpickles, and opaque or compound values are refused here).
    """
    if name not in f.attrs:
        if not required:
            return None
        raise TrajectoryError(f"{str(path)!r} lacks the {name!r} attribute of a langevin_md trajectory")
    value = f.attrs[name]
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    try:
        if kind is str and isinstance(value, (str, np.str_)):
            return str(value)
        if kind is float and isinstance(value, (int, float, np.integer, np.floating)):
            return float(value)
        if kind is tuple and isinstance(value, np.ndarray) and value.ndim == 1 and value.dtype.kind in "iu":
            return tuple(int(v) for v in value)
    except (TypeError, ValueError):
        pass
    if not required:
        return None
    raise TrajectoryError(f"{str(path)!r}: attribute {name!r} holds a {type(value).__name__}, not a plain "
                          f"{kind.__name__}; the file is damaged or not a langevin_md trajectory")


def read_trajectory(path, through_step: Optional[int] = None, frames: bool = True) -> dict:
    """Read a trajectory file (also one left behind by a killed writer).

    Parameters
    ----------
    path : str or PathLike
    through_step : int, optional
        Keep only frames with ``step <= through_step``.
    frames : bool
        Read the frame arrays (False: only steps and the file's description).

    Returns
    -------
    dict
        ``steps`` (n_frames,), ``positions`` (n_frames, n_walkers, *event_shape),
        ``energies`` (n_frames, n_walkers), ``kinetic_energies`` or None, ``walker_indices``,
        ``kT``, ``units``, ``event_shape``, ``n_walkers``, ``topology_json`` (str or None),
        ``fields`` (name -> (n_frames, n_walkers, ...); empty when ``frames`` is False).
    """
    path = Path(path)
    if not path.exists():
        raise TrajectoryError(f"trajectory file {str(path)!r} does not exist")
    if path.is_symlink() or not path.is_file():
        raise TrajectoryError(f"trajectory file {str(path)!r} is not a regular file (a symlink or "
                              "a folder); refusing to read it")
    f = _open_checked(path)
    with f:
        if _attr(f, "format", str, path, required=False) != FORMAT:
            raise TrajectoryError(f"{str(path)!r} is not a langevin_md trajectory file")
        keys = ("steps",) + tuple(k for k in _FRAME_KEYS if k in f) + _field_keys(f)
        n = min(f[k].shape[0] for k in keys)
        # Frames whose data is missing would read as zeros (HDF5's fill value): never data.
        # Only the frames asked for are checked, so frames a live writer is still flushing
        # past the last checkpoint do not make a reader fail.
        physical = os.stat(path).st_size
        have_steps = _intact_prefix(f, ("steps",), n, physical)
        steps = _read_checked(f, "steps", have_steps, path, np.zeros(0))
        if len(steps) and np.any(np.diff(steps) <= 0):
            bad = int(np.argmax(np.diff(steps) <= 0)) + 1
            raise TrajectoryError(f"{str(path)!r}: frame steps are not increasing at frame {bad}; "
                                  f"{_intact_words(bad, int(steps[bad - 1]))}", bad, int(steps[bad - 1]))
        want = n
        if through_step is not None:
            want = int(np.searchsorted(steps, through_step, side="right"))
            if want == have_steps < n:  # the frames asked for may go on past the damage
                want = n
        intact = min(have_steps, _intact_prefix(f, keys, min(want, have_steps), physical))
        if intact < want:
            last = int(steps[intact - 1]) if intact else None
            raise TrajectoryError(f"trajectory file {str(path)!r} is damaged: frames {intact} to {want - 1} have "
                                  f"no data on disk; {_intact_words(intact, last)}", intact, last)
        n = want
        steps = steps[:n]
        topo = f["topology"][()] if "topology" in f else None
        if isinstance(topo, bytes):
            topo = topo.decode()
        def take(key):
            return _read_checked(f, key, n, path, steps) if frames and key in f else None

        return {
            "steps": steps,
            "positions": take("positions"),
            "energies": take("energies"),
            "kinetic_energies": take("kinetic_energies"),
            "walker_indices": f["walker_indices"][:],
            "kT": _attr(f, "kT", float, path),
            "units": _attr(f, "units", str, path),
            "event_shape": _attr(f, "event_shape", tuple, path),
            "n_walkers": int(f["positions"].shape[1]),
            "topology_json": topo,
            "fields": {key.split("/", 1)[1]: take(key) for key in _field_keys(f)} if frames else {},
        }
