"""What an untrusted OpenMM XML file would make OpenMM do, decided before OpenMM reads it.

Two kinds of XML reach OpenMM from user files:

* serialized objects (``openmm.XmlSerializer``): OpenMM picks the C++/Python proxy that
  rebuilds each element from its ``type`` attribute, at any depth (a ``CustomCVForce`` holds
  its collective variables, an ``ATMForce`` its inner forces, as nested ``<Force type=...>``
  elements). Since OpenMM 8.3 the ``PythonForce`` proxy *unpickles* the element's ``function``
  attribute inside ``XmlSerializer.deserialize``, i.e. runs arbitrary code. An untrusted file
  is therefore accepted only when **every** ``type`` attribute anywhere in it names a class on
  an allow-list of types known to carry data only (:data:`DATA_ONLY_TYPES`) or is a plain
  integer (an enum such as a ``CustomGBForce`` computation's type); a new OpenMM type that
  might run code is refused until it is reviewed and added here.
* force-field files (``openmm.app.ForceField``): besides ``<Script>`` and
  ``<InitializationScript>`` (checked in :mod:`langevin_md.systems.openmm_system`), the
  ``NonbondedForce`` and ``LennardJonesForce`` parsers ``eval()`` their
  ``useDispersionCorrection`` attribute. Untrusted files may give it only a plain literal.

The checks work on the parsed tree (after the caller refused DTDs and entities), and the
serialized-System check additionally refuses the text ``PythonForce`` anywhere in the string
handed to OpenMM, so a difference between Python's and OpenMM's XML parsers (comments,
CDATA, character references) cannot smuggle one past the tree check.
"""

from __future__ import annotations

#: ``type`` attribute values that OpenMM deserializes into pure data (numbers, expressions
#: compiled by Lepton, tabulated values). Containers (CustomCVForce, ATMForce) are listed
#: because their nested elements are checked on their own.
DATA_ONLY_TYPES = frozenset({
    # top-level objects
    "System", "State",
    # core forces
    "HarmonicBondForce", "HarmonicAngleForce", "PeriodicTorsionForce", "RBTorsionForce",
    "CMAPTorsionForce", "NonbondedForce", "GBSAOBCForce", "GayBerneForce", "CMMotionRemover",
    "MonteCarloBarostat", "MonteCarloAnisotropicBarostat", "MonteCarloMembraneBarostat",
    "MonteCarloFlexibleBarostat", "AndersenThermostat", "RMSDForce", "RGForce",
    "OrientationRestraintForce", "LCPOForce", "ConstantPotentialForce",
    # custom forces (Lepton expressions: no Python)
    "CustomBondForce", "CustomAngleForce", "CustomTorsionForce", "CustomExternalForce",
    "CustomNonbondedForce", "CustomGBForce", "CustomHbondForce", "CustomCompoundBondForce",
    "CustomCentroidBondForce", "CustomManyParticleForce", "CustomVolumeForce",
    # containers: their nested forces are checked element by element
    "CustomCVForce", "ATMForce",
    # tabulated functions
    "Continuous1DFunction", "Continuous2DFunction", "Continuous3DFunction",
    "Discrete1DFunction", "Discrete2DFunction", "Discrete3DFunction",
    # plugins shipped with OpenMM
    "AmoebaMultipoleForce", "AmoebaVdwForce", "AmoebaGeneralizedKirkwoodForce",
    "AmoebaWcaDispersionForce", "AmoebaTorsionTorsionForce", "HippoNonbondedForce",
    "DrudeForce",
})

#: Types known to run Python when deserialized (named in the error message).
CODE_RUNNING_TYPES = frozenset({"PythonForce"})

#: Values of ``useDispersionCorrection`` that ``eval`` turns into a bool without running code.
_DISPERSION_LITERALS = frozenset({"True", "False", "1", "0"})

_TRUST_HINT = "Pass trusted=True (config: trusted = true) only if you trust this file's author."


def _local(name) -> str:
    """An element or attribute name without its ``{namespace}`` prefix."""
    return name.rsplit("}", 1)[-1] if isinstance(name, str) else ""


def _element_path(parents: list[str], tag: str) -> str:
    return "/".join(parents + [tag])


def check_serialized_xml(path: str, text: str, root, what: str = "serialized System") -> None:
    """Refuse a serialized OpenMM object that would run code when deserialized.

    Parameters
    ----------
    path : str
        The file's name, for messages.
    text : str
        Exactly the string that would be handed to ``openmm.XmlSerializer.deserialize``.
    root : xml.etree.ElementTree.Element
        ``text`` parsed with DTDs and entities refused.
    what : str
        What the file is, for messages.

    Raises
    ------
    ValueError
        When any element at any depth has a ``type`` attribute outside
        :data:`DATA_ONLY_TYPES` (the message names the element's path and type), or when the
        text ``PythonForce`` appears anywhere in ``text``.
    """
    stack = [(root, [])]
    while stack:
        el, parents = stack.pop()
        tag = _local(el.tag)
        for key, value in el.attrib.items():
            if _local(key) != "type":
                continue
            # digits: an enum (e.g. a CustomGBForce computation's type), never a class name
            if value not in DATA_ONLY_TYPES and not value.strip().isdigit():
                where = _element_path(parents, f"{tag}[@type={value!r}]")
                if value.strip() in CODE_RUNNING_TYPES:
                    reason = "OpenMM unpickles (runs as Python) its 'function' attribute while deserializing"
                else:
                    reason = ("it is not on the list of OpenMM types known to carry data only "
                              "(langevin_md.systems.xml_trust.DATA_ONLY_TYPES)")
                raise ValueError(f"{what} {path!r} contains {where}; {reason}. Refusing to deserialize it. "
                                 + _TRUST_HINT)
        stack.extend((child, parents + [tag]) for child in reversed(list(el)))
    if "PythonForce" in text:
        raise ValueError(f"{what} {path!r} contains the text 'PythonForce' (a force whose deserialization "
                         "runs Python code), outside any element Python's XML parser sees; refusing to "
                         "deserialize it. " + _TRUST_HINT)


def check_forcefield_xml(path: str, root) -> None:
    """Refuse force-field XML attributes that ``openmm.app.ForceField`` would ``eval``.

    Parameters
    ----------
    path : str
        The file's name, for messages.
    root : xml.etree.ElementTree.Element
        The parsed file (DTDs and entities refused).

    Raises
    ------
    ValueError
        When a ``useDispersionCorrection`` attribute (``eval``-ed by OpenMM's
        ``NonbondedForce`` and ``LennardJonesForce`` parsers) is anything but a plain literal
        (``True``, ``False``, ``1``, ``0``).
    """
    for el in root.iter():
        for key, value in el.attrib.items():
            if _local(key) == "useDispersionCorrection" and value.strip() not in _DISPERSION_LITERALS:
                raise ValueError(
                    f"force-field file {path!r}: <{_local(el.tag)} useDispersionCorrection={value!r}> is "
                    "evaluated as Python by OpenMM; untrusted files may give only one of "
                    f"{sorted(_DISPERSION_LITERALS)}. " + _TRUST_HINT)
