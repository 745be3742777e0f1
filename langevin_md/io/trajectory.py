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
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional

import numpy as np

FORMAT = "langevin_md.trajectory"
VERSION = 1
_FRAME_KEYS = ("positions", "energies", "kinetic_energies")
_CHUNK_BYTES = 1 << 20
#: Room kept free for HDF5 metadata and checkpoints when checking space before a write.
_RESERVE_BYTES = 4 << 20


class TrajectoryError(RuntimeError):
    """A trajectory file is missing, unreadable, or inconsistent with its checkpoint."""


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
    """``"molecular"`` (nm, kJ/mol, amu) for systems with a topology, else ``"reduced"``."""
    return "molecular" if getattr(system, "topology", None) is not None else "reduced"


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
            with h5py.File(path, "r", libver="latest", swmr=True) as src:
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

        need = 2 * nbytes + self._chunk_bytes + _RESERVE_BYTES
        st = os.statvfs(self.path.parent)
        if st.f_bavail * st.f_frsize < need:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self.path))
        soft = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
        if soft != resource.RLIM_INFINITY and os.path.getsize(self.path) + need > soft:
            raise OSError(errno.EFBIG, os.strerror(errno.EFBIG), str(self.path))


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
        f.create_dataset("steps", shape=(0,), maxshape=(None,), dtype=np.int64,
                         chunks=(max(chunk_frames, 256),))
        f.create_dataset("positions", shape=(0, n_walkers) + event_shape,
                         maxshape=(None, n_walkers) + event_shape, dtype=dtype,
                         chunks=(chunk_frames, n_walkers) + event_shape)
        per_walker = dict(shape=(0, n_walkers), maxshape=(None, n_walkers), dtype=dtype,
                          chunks=(max(1, min(1024, _CHUNK_BYTES // (n_walkers * dtype.itemsize))), n_walkers))
        f.create_dataset("energies", **per_walker)
        if with_kinetic:
            f.create_dataset("kinetic_energies", **per_walker)
        for name, (shape, field_dtype) in fields.items():
            shape = tuple(int(d) for d in shape)
            field_bytes = max(1, n_walkers * int(np.prod(shape, dtype=np.int64)) * np.dtype(field_dtype).itemsize)
            f.create_dataset(f"fields/{name}", shape=(0, n_walkers) + shape, maxshape=(None, n_walkers) + shape,
                             dtype=np.dtype(field_dtype),
                             chunks=(max(1, min(1024, _CHUNK_BYTES // field_bytes)), n_walkers) + shape)
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
    h5py = _h5py()
    path = Path(path)
    if not path.exists():
        raise TrajectoryError(f"trajectory file {str(path)!r} does not exist")
    try:
        # SWMR read mode opens files whose writer was killed (their "open for write" flag
        # is still set) as well as closed ones.
        f = h5py.File(path, "r", libver="latest", swmr=True)
    except OSError as exc:
        raise TrajectoryError(f"cannot read trajectory file {str(path)!r}: {exc}") from None
    with f:
        if f.attrs.get("format") != FORMAT:
            raise TrajectoryError(f"{str(path)!r} is not a langevin_md trajectory file")
        keys = ("steps",) + tuple(k for k in _FRAME_KEYS if k in f) + _field_keys(f)
        n = min(f[k].shape[0] for k in keys)
        steps = f["steps"][:n]
        if n and np.any(np.diff(steps) <= 0):
            raise TrajectoryError(f"{str(path)!r}: frame steps are not increasing")
        if through_step is not None:
            n = int(np.searchsorted(steps, through_step, side="right"))
            steps = steps[:n]
        topo = f["topology"][()] if "topology" in f else None
        if isinstance(topo, bytes):
            topo = topo.decode()
        def take(key):
            return f[key][:n] if frames and key in f else None

        return {
            "steps": steps,
            "positions": take("positions"),
            "energies": take("energies"),
            "kinetic_energies": take("kinetic_energies"),
            "walker_indices": f["walker_indices"][:],
            "kT": float(f.attrs["kT"]),
            "units": str(f.attrs["units"]),
            "event_shape": tuple(int(v) for v in f.attrs["event_shape"]),
            "n_walkers": int(f["positions"].shape[1]),
            "topology_json": topo,
            "fields": {key.split("/", 1)[1]: take(key) for key in _field_keys(f)} if frames else {},
        }
