"""Serialized Systems and force-field XML whose loading would run code are refused first.

OpenMM >= 8.3 unpickles a ``PythonForce``'s ``function`` attribute inside
``XmlSerializer.deserialize``. Each hostile file here carries a pickle that creates a marker
file when unpickled; the tests check the refusal and that the marker does not exist, and a
positive control (``trusted=True``) shows the payload really runs once trust is given.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

openmm = pytest.importorskip("openmm")

from langevin_md.systems.molecules import ALANINE_DIPEPTIDE_PDB  # noqa: E402
from langevin_md.systems.openmm_system import OpenMMSystem  # noqa: E402

N_ATOMS = 22  # alanine dipeptide


class _Payload:
    """Unpickling this object writes the marker file (what an attacker's pickle would do)."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return exec, (f"open({self.marker!r}, 'w').write('ran')",)


def _python_force_xml(marker: Path) -> str:
    payload = pickle.dumps(_Payload(marker)).hex()
    return (f'<Force forceGroup="0" function="{payload}" name="PythonForce" type="PythonForce" '
            'usesPeriodic="0" version="2"><GlobalParameters/><Particles/></Force>')


def _system_xml(*forces: str) -> str:
    """A 22-particle System with one harmonic bond plus the given serialized forces."""
    system = openmm.System()
    for _ in range(N_ATOMS):
        system.addParticle(12.0)
    bond = openmm.HarmonicBondForce()
    bond.addBond(0, 1, 0.15, 1000.0)
    system.addForce(bond)
    text = openmm.XmlSerializer.serialize(system)
    return text.replace("</Forces>", "".join(forces) + "</Forces>")


def _cv_wrapping(inner: str) -> str:
    """A CustomCVForce whose collective variable is the given serialized force."""
    return ('<Force energy="cv" forceGroup="0" name="CustomCVForce" type="CustomCVForce" version="0">'
            '<GlobalParameters/><EnergyParameterDerivatives/><CollectiveVariables>'
            f'<CollectiveVariable name="cv">{inner}</CollectiveVariable>'
            '</CollectiveVariables><Functions/></Force>')


def _load(path: Path, trusted: bool = False) -> OpenMMSystem:
    return OpenMMSystem.from_xml(path, ALANINE_DIPEPTIDE_PDB, platform="Reference", trusted=trusted)


@pytest.mark.parametrize("nesting", ["top", "cv", "cv_in_cv", "atm"])
def test_python_force_at_any_depth_is_refused_before_deserializing(tmp_path, nesting):
    marker = tmp_path / "marker"
    force = _python_force_xml(marker)
    if nesting == "cv":
        force = _cv_wrapping(force)
    elif nesting == "cv_in_cv":
        force = _cv_wrapping(_cv_wrapping(force))
    elif nesting == "atm":
        atm = openmm.ATMForce(0, 0, 0, 0, 0, 0, 0, 0, 1)
        atm.addForce(openmm.HarmonicBondForce())
        for _ in range(N_ATOMS):
            atm.addParticle(openmm.Vec3(0, 0, 0))
        text = openmm.XmlSerializer.serialize(atm)
        text = text.split("?>", 1)[1]
        start = text.index('<Force forceGroup="0" name="HarmonicBondForce"')
        end = text.index("</Force>", start) + len("</Force>")
        force = text[:start] + force + text[end:]
    path = tmp_path / "system.xml"
    path.write_text(_system_xml(force))
    with pytest.raises(ValueError, match=r"system\.xml.*PythonForce.*trusted=True"):
        _load(path)
    assert not marker.exists()
    # Positive control: OpenMM really runs the pickle once trust is given.
    try:
        _load(path, trusted=True)
    except Exception:
        pass  # the payload returns None, not a callable; what matters is that it ran
    assert marker.read_text() == "ran"


def test_unknown_type_and_hidden_text_are_refused(tmp_path):
    marker = tmp_path / "marker"
    # A type OpenMM might add later: refused until reviewed (allow-list, not deny-list).
    path = tmp_path / "unknown.xml"
    path.write_text(_system_xml('<Force forceGroup="0" type="FuturePluginForce" version="1"/>'))
    with pytest.raises(ValueError, match="FuturePluginForce.*known to carry data only"):
        _load(path)
    # 'PythonForce' inside a comment: invisible to Python's parser, refused on the text.
    path = tmp_path / "comment.xml"
    path.write_text(_system_xml(f"<!-- {_python_force_xml(marker)} -->"))
    with pytest.raises(ValueError, match="text 'PythonForce'"):
        _load(path)
    assert not marker.exists()


def test_legit_system_loads_trusted_or_not(tmp_path):
    cv = openmm.CustomCVForce("2*d")
    d = openmm.CustomBondForce("r")
    d.addBond(0, 4)
    cv.addCollectiveVariable("d", d)
    path = tmp_path / "system.xml"
    path.write_text(_system_xml(openmm.XmlSerializer.serialize(cv).split("?>", 1)[1]))
    for trusted in (False, True):
        system = _load(path, trusted=trusted)
        assert system.event_shape == (N_ATOMS, 3)
        assert {type(f).__name__ for f in system.openmm_system.getForces()} == {"HarmonicBondForce",
                                                                               "CustomCVForce"}


def test_cli_config_with_python_force_runs_no_code(tmp_path):
    marker = tmp_path / "marker"
    (tmp_path / "system.xml").write_text(_system_xml(_cv_wrapping(_python_force_xml(marker))))
    config = tmp_path / "evil.toml"
    config.write_text(f"""\
[system]
name = "openmm_xml"
system_xml_path = "{tmp_path / 'system.xml'}"
pdb_path_or_topology = "{ALANINE_DIPEPTIDE_PDB}"
platform = "Reference"

[integrator]
name = "mala"
step_size = 1e-4

[sampler]
n_steps = 10
n_walkers = 2
record_every = 5
seed = 3
""")
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.run([sys.executable, "-m", "langevin_md.cli", "run", str(config), "-o",
                           str(tmp_path / "run")], capture_output=True, text=True, env=env, timeout=300,
                          cwd=tmp_path)
    assert proc.returncode != 0
    assert "PythonForce" in proc.stderr and "unexpected" not in proc.stderr.lower(), proc.stderr
    assert not marker.exists()


def test_forcefield_eval_attribute_is_refused(tmp_path):
    marker = tmp_path / "marker"
    path = tmp_path / "evil.xml"
    path.write_text('<ForceField><NonbondedForce coulomb14scale="0.8" lj14scale="0.5" '
                    f'useDispersionCorrection="exec(&quot;open({str(marker)!r}, \'w\').write(\'ran\')&quot;) or True">'
                    '<UseAttributeFromResidue name="charge"/></NonbondedForce></ForceField>\n')
    with pytest.raises(ValueError, match="useDispersionCorrection.*evaluated as Python"):
        OpenMMSystem.from_pdb(ALANINE_DIPEPTIDE_PDB, forcefield=["amber14-all.xml", str(path)],
                              platform="Reference")
    assert not marker.exists()
    # Positive control: OpenMM's ForceField parser evaluates the attribute.
    from openmm import app
    app.ForceField(str(path))
    assert marker.read_text() == "ran"
