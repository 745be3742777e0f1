"""No code runs from data: force-field XML, serialized Systems, npz, torch and safetensors files.

Every hostile file carries a payload that creates a marker file when executed. Each test
asserts the file is refused and the marker does not exist; where the payload's format allows
it, a positive control (``trusted=True``) shows the payload is real, i.e. it does run when
trust is given explicitly.
"""

from __future__ import annotations

import json
import os
import pickle
import time
from pathlib import Path

import numpy as np
import pytest

from tests.hostile.support import finished_run, run_cli

openmm = pytest.importorskip("openmm")

from langevin_md.systems.molecules import ALANINE_DIPEPTIDE_PDB  # noqa: E402
from langevin_md.systems.openmm_system import OpenMMSystem  # noqa: E402


def _payload(marker: Path) -> str:
    return f"open({str(marker)!r}, 'w').write('ran')"


def _entity_script_xml(marker: Path) -> str:
    # The Script element exists only after entity expansion: no "<Script" in the raw bytes.
    return ('<?xml version="1.0"?>\n'
            '<!DOCTYPE ForceField [\n'
            f'  <!ENTITY s "&#60;Script&#62;{_payload(marker)}&#60;/Script&#62;">\n'
            ']>\n'
            '<ForceField>&s;</ForceField>\n')


def _utf16_script_xml(marker: Path) -> bytes:
    text = f'<?xml version="1.0" encoding="UTF-16"?>\n<ForceField><Script>{_payload(marker)}</Script></ForceField>\n'
    return text.encode("utf-16")  # with a byte-order mark; no b"<Script" in the bytes


def _load(path: Path, trusted: bool):
    # Amber's templates make createSystem succeed, after which OpenMM runs the <Script>s.
    return OpenMMSystem.from_pdb(ALANINE_DIPEPTIDE_PDB, forcefield=["amber14-all.xml", str(path)],
                                 platform="Reference", trusted=trusted)


@pytest.mark.parametrize("kind", ["entity", "utf16"])
def test_script_hidden_from_a_byte_scan_does_not_run(tmp_path, kind):
    marker = tmp_path / "marker"
    path = tmp_path / "evil.xml"
    if kind == "entity":
        path.write_text(_entity_script_xml(marker))
        assert b"<Script" not in path.read_bytes()
        match = "document type declaration"
    else:
        path.write_bytes(_utf16_script_xml(marker))
        assert b"<Script" not in path.read_bytes()
        match = "<Script> element"
    with pytest.raises(ValueError, match=match):
        _load(path, trusted=False)
    assert not marker.exists()
    # Positive control: the payload is real, OpenMM runs it once trust is given.
    _load(path, trusted=True)
    assert marker.read_text() == "ran"


def test_script_in_an_included_file_and_in_a_namespace_is_refused(tmp_path):
    marker = tmp_path / "marker"
    (tmp_path / "inner.xml").write_text(f"<ForceField><Script\n>{_payload(marker)}</Script\n></ForceField>\n")
    (tmp_path / "outer.xml").write_text('<ForceField><Include file="inner.xml"/></ForceField>\n')
    with pytest.raises(ValueError, match="inner.xml.*<Script> element"):
        _load(tmp_path / "outer.xml", trusted=False)
    (tmp_path / "ns.xml").write_text(
        f'<ForceField xmlns:x="urn:x"><x:InitializationScript>{_payload(marker)}</x:InitializationScript></ForceField>\n')
    with pytest.raises(ValueError, match="InitializationScript"):
        _load(tmp_path / "ns.xml", trusted=False)
    assert not marker.exists()


def test_entity_expansion_bomb_is_refused_at_once(tmp_path):
    lines = ['<?xml version="1.0"?>', "<!DOCTYPE ForceField [", '  <!ENTITY a0 "xxxxxxxxxx">']
    lines += [f'  <!ENTITY a{i} "{("&a%d;" % (i - 1)) * 10}">' for i in range(1, 10)]
    lines += ["]>", "<ForceField><AtomTypes>&a9;</AtomTypes></ForceField>"]
    path = tmp_path / "bomb.xml"
    path.write_text("\n".join(lines))
    t0 = time.perf_counter()
    with pytest.raises(ValueError, match="document type declaration"):
        _load(path, trusted=False)
    assert time.perf_counter() - t0 < 5.0


def test_serialized_system_with_a_dtd_is_refused(tmp_path):
    system = openmm.System()
    system.addParticle(1.0)
    xml = openmm.XmlSerializer.serialize(system)
    marker = tmp_path / "marker"
    head, body = xml.split("\n", 1)
    path = tmp_path / "system.xml"
    path.write_text(head + '\n<!DOCTYPE System [<!ENTITY s "&#60;Script&#62;' + _payload(marker)
                    + '&#60;/Script&#62;">]>\n' + body.replace("</System>", "&s;</System>"))
    with pytest.raises(ValueError, match="document type declaration"):
        OpenMMSystem.from_xml(path, ALANINE_DIPEPTIDE_PDB, platform="Reference")
    assert not marker.exists()


def test_cli_refuses_the_entity_force_field_before_a_run_folder_exists(tmp_path):
    marker = tmp_path / "marker"
    (tmp_path / "evil.xml").write_text(_entity_script_xml(marker))
    (tmp_path / "c.toml").write_text(f"""
[system]
name = "openmm_pdb"
pdb_path = {json.dumps(ALANINE_DIPEPTIDE_PDB)}
forcefield = ["evil.xml"]
platform = "Reference"
[integrator]
name = "baoab"
[sampler]
n_steps = 10
""")
    proc = run_cli("run", tmp_path / "c.toml", "-o", tmp_path / "run", "--no-progress")
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("langevin-md: error:") and "Traceback" not in proc.stderr
    assert "document type declaration" in proc.stderr
    assert not marker.exists() and not (tmp_path / "run").exists()


class _Payload:
    """Unpickling this runs ``touch MARKER`` (what a hostile pickle can do)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickled_checkpoint_is_not_unpickled_and_the_run_restarts_announced(tmp_path):
    run_dir = finished_run(tmp_path)
    marker = tmp_path / "marker"
    for ck in sorted((run_dir / "checkpoints").glob("step_*.npz")):
        np.savez(ck, meta=np.array([_Payload(marker)], dtype=object))
    proc = run_cli("resume", run_dir, "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert not marker.exists()
    log = (run_dir / "run.log").read_text()
    assert "no checkpoint" in log and "restarting the run from step 0" in log
    assert "restarting the run from step 0" in proc.stderr  # announced, not only logged


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_pickled_training_samples_and_torch_model_are_refused(tmp_path):
    from langevin_md.training.config import load_samples
    from langevin_md.learned.io import load_model

    marker = tmp_path / "marker"
    np.save(tmp_path / "samples.npy", np.array([_Payload(marker)], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="unpickling"):
        load_samples(str(tmp_path / "samples.npy"))
    with open(tmp_path / "model.pt", "wb") as fh:
        pickle.dump({"state_dict": _Payload(marker)}, fh)
    with pytest.raises(ValueError, match="refused"):
        load_model(tmp_path / "model.pt")
    assert not marker.exists()


def test_safetensors_metadata_cannot_name_code(tmp_path):
    from safetensors.torch import save_file
    import torch

    from langevin_md.learned.io import load_model

    path = tmp_path / "m.safetensors"
    arch = json.dumps({"class": "os.system", "kwargs": {"command": f"touch {tmp_path / 'marker'}"}})
    save_file({"w": torch.zeros(2)}, str(path), metadata={"langevin_md.architecture": arch})
    with pytest.raises(ValueError, match="unknown model class"):
        load_model(path)
    assert not (tmp_path / "marker").exists()


def test_hdf5_attributes_are_read_as_plain_values(tmp_path):
    """A trajectory whose attributes are pickled objects is refused, never unpickled."""
    import h5py

    from langevin_md.io.trajectory import TrajectoryError, read_trajectory

    run_dir = finished_run(tmp_path)
    marker = tmp_path / "marker"
    with h5py.File(run_dir / "trajectory.h5", "r+") as f:
        f.attrs["format"] = np.void(pickle.dumps(_Payload(marker)))
    with pytest.raises(TrajectoryError, match="not a langevin_md trajectory"):
        read_trajectory(run_dir / "trajectory.h5")
    assert not marker.exists()


def test_a_toml_config_cannot_run_code(tmp_path):
    """TOML has no code: a config that looks like Python is a syntax error, nothing more."""
    marker = tmp_path / "marker"
    (tmp_path / "c.toml").write_text(f"__import__('os').system('touch {marker}')\n")
    proc = run_cli("run", tmp_path / "c.toml", "-o", tmp_path / "run")
    assert proc.returncode == 2 and "not valid TOML" in proc.stderr and "Traceback" not in proc.stderr
    assert not marker.exists() and not (tmp_path / "run").exists()
