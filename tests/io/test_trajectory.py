"""The HDF5 trajectory store: chunked resizable datasets, steps per frame, cut-back on reopen."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

import langevin_md as lmd
from langevin_md.io.trajectory import (TrajectoryError, TrajectoryWriter, read_trajectory,
                                       topology_from_json, topology_to_json)
from langevin_md.systems import Harmonic


def _writer(path, with_kinetic=True, n_walkers=3, shape=(2,), dtype=np.float64):
    return TrajectoryWriter.create(path, n_walkers, shape, dtype, with_kinetic, np.arange(n_walkers), kT=1.5)


def _block(steps, n_walkers=3, shape=(2,)):
    steps = np.asarray(steps, dtype=np.int64)
    pos = steps[:, None, None] + np.arange(n_walkers)[None, :, None] * 0.1 + np.zeros(shape)
    return steps, pos, pos[..., 0] * 2, pos[..., 0] * 3


def test_frames_round_trip_with_steps_and_chunked_resizable_layout(tmp_path):
    path = tmp_path / "t.h5"
    w = _writer(path)
    w.write_frames(*_block([5, 10]))
    w.write_frames(*_block([15]))
    assert w.commit() == {"n_frames": 3}
    # Readable while the writer still has it open (SWMR).
    assert list(read_trajectory(path)["steps"]) == [5, 10, 15]
    w.close()
    d = read_trajectory(path)
    steps, pos, en, kin = _block([5, 10, 15])
    assert np.array_equal(d["steps"], steps) and np.array_equal(d["positions"], pos)
    assert np.array_equal(d["energies"], en) and np.array_equal(d["kinetic_energies"], kin)
    assert d["kT"] == 1.5 and d["units"] == "reduced" and d["event_shape"] == (2,)
    with h5py.File(path, "r") as f:
        for key in ("steps", "positions", "energies", "kinetic_energies"):
            assert f[key].chunks is not None and f[key].maxshape[0] is None
    assert read_trajectory(path, through_step=12)["steps"].tolist() == [5, 10]


def test_reopen_cuts_back_to_the_checkpoint_and_appends(tmp_path):
    path = tmp_path / "t.h5"
    w = _writer(path)
    w.write_frames(*_block([1, 2, 3, 4, 5]))
    w.commit()
    w.close()
    w = TrajectoryWriter.reopen(path, through_step=3, expected_frames=3)
    assert w.n_frames == 3
    w.write_frames(*_block([4, 5, 6]))
    w.close()
    d = read_trajectory(path)
    assert d["steps"].tolist() == [1, 2, 3, 4, 5, 6]
    assert np.array_equal(d["positions"], _block([1, 2, 3, 4, 5, 6])[1])


def test_reopen_refuses_a_file_with_missing_frames(tmp_path):
    path = tmp_path / "t.h5"
    w = _writer(path)
    w.write_frames(*_block([1, 2]))
    w.close()
    with pytest.raises(TrajectoryError, match="holds 2 frames up to step 3, but the checkpoint there recorded 3"):
        TrajectoryWriter.reopen(path, through_step=3, expected_frames=3)


def test_unreadable_file_is_reported(tmp_path):
    path = tmp_path / "t.h5"
    path.write_bytes(b"not hdf5")
    with pytest.raises(TrajectoryError, match="cannot read trajectory file"):
        read_trajectory(path)
    with pytest.raises(TrajectoryError, match="does not exist"):
        read_trajectory(tmp_path / "missing.h5")


def test_sampler_frame_sink_gets_every_recorded_frame(tmp_path):
    system = Harmonic(dim=2)
    s = lmd.Sampler(system, lmd.integrators.BAOAB(0.2, 1.0), n_walkers=4, seed=1, dtype="float32")
    w = TrajectoryWriter.create(tmp_path / "t.h5", 4, (2,), np.float32, True, s.rng.walker_indices, system.kT)
    r = s.run_to(100, record_every=7, record_block=3, frame_sinks=[w])
    w.close()
    d = read_trajectory(tmp_path / "t.h5")
    assert d["positions"].dtype == np.float32
    assert np.array_equal(d["steps"], r.steps) and np.array_equal(d["positions"], r.positions)
    assert np.array_equal(d["kinetic_energies"], r.kinetic_energies)


def test_mdtraj_topology_json_round_trip():
    pytest.importorskip("mdtraj")
    import mdtraj
    from mdtraj.core import element

    top = mdtraj.Topology()
    chain = top.add_chain()
    res = top.add_residue("HOH", chain, resSeq=7)
    o = top.add_atom("O", element.oxygen, res)
    h = top.add_atom("H1", element.hydrogen, res)
    top.add_bond(o, h)
    back = topology_from_json(topology_to_json(top))
    assert [a.name for a in back.atoms] == ["O", "H1"]
    assert [a.element.symbol for a in back.atoms] == ["O", "H"]
    assert back.n_bonds == 1 and next(back.residues).resSeq == 7


def test_recorded_fields_are_stored_and_survive_reopen(tmp_path):
    from ..test_sampler import _RecordingBAOAB

    system = Harmonic(dim=2)
    s = lmd.Sampler(system, _RecordingBAOAB(0.2, 1.0), n_walkers=3, seed=4)
    spec = {k: (v.shape[1:], v.dtype) for k, v in s.recorded_fields().items()}
    w = TrajectoryWriter.create(tmp_path / "t.h5", 3, (2,), np.float64, True, s.walker_indices, system.kT,
                                fields=spec)
    r = s.run_to(50, record_every=5, record_block=4, frame_sinks=[w])
    w.close()
    d = read_trajectory(tmp_path / "t.h5")
    assert set(d["fields"]) == {"v2", "right"}
    for k in d["fields"]:
        np.testing.assert_array_equal(d["fields"][k], r.fields[k])
    w = TrajectoryWriter.reopen(tmp_path / "t.h5", through_step=20, expected_frames=4)
    w.close()
    d = read_trajectory(tmp_path / "t.h5")
    np.testing.assert_array_equal(d["fields"]["v2"], r.fields["v2"][:4])
    with pytest.raises(TrajectoryError, match="stores the fields"):
        w = TrajectoryWriter.reopen(tmp_path / "t.h5", through_step=20, expected_frames=4)
        try:
            w.write_frames(*_block([25], shape=(2,)))
        finally:
            w.close()
