"""Who evaluates a molecule's energies and forces: the ``engine`` and ``hydrogen_mass`` keys.

Every molecular builder (the catalogue's molecules, :func:`~langevin_md.systems.inputs.from_pdb`,
``from_xml``, ``from_amber``, ``from_gromacs``, ``from_charmm``) builds an
:class:`~langevin_md.systems.openmm_system.OpenMMSystem` and finishes it here with
:func:`finish_molecule`: masses repartitioned when ``hydrogen_mass`` is given, then converted
to the batched torch force field when the engine is torch. So the two keys mean the same in
every builder, in configs and in the API.
"""

from __future__ import annotations

from typing import Sequence

from langevin_md.systems.torch_forcefield import PRECISIONS

__all__ = ["ENGINES", "choose_engine", "check_engine", "finish_molecule", "openmm_options", "split_precision"]

#: Engines of the molecule builders.
ENGINES = ("auto", "torch", "openmm")


def choose_engine(system, engine: str = "auto", openmm_options=()) -> str:
    """``"torch"`` or ``"openmm"``: who evaluates ``system`` (an OpenMMSystem).

    The rule for ``"auto"``: torch, unless an OpenMM-only option was given (``openmm_options``
    names them: platform, precision, device index) or the torch force field lacks
    one of the System's forces (e.g. PME, or custom forces when
    :mod:`langevin_md.forcefield.custom` is absent). Constraints do not decide it: both
    executors enforce them (the torch executor's BAOAB and OBABO with SHAKE/RATTLE).

    Measured with ``benchmarks/bench_vs_openmm.py`` (alanine dipeptide, per core, against one
    OpenMM Context at its best, quiet machine; README "Molecules against OpenMM"): the torch
    force field with its fused CPU kernels runs 1.5–1.8× OpenMM in vacuum and 11–12× with OBC2
    from 64 walkers, and is slower than one Context for a single walker in vacuum. Torch is also
    the only engine that batches walkers on a GPU and fuses with learned priors in one graph, so
    it is the default; for few walkers ``sample``'s ``backend="auto"`` runs the torch force
    field as the ``openmm.System`` it was compiled from on the OpenMM executor when a probe
    finds that faster (:mod:`langevin_md.executors.backend_choice`). A run config with
    ``backend = "openmm"`` chooses the OpenMM engine itself unless ``engine = "torch"`` pins
    the system.

    ``engine="torch"`` with an unsupported force raises the torch compiler's ValueError
    (naming the force); ``"openmm"`` always keeps the bridge.
    """
    if engine == "openmm":
        return "openmm"
    if engine == "torch":
        return "torch"
    if engine != "auto":
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
    if openmm_options:
        return "openmm"
    from langevin_md.forcefield.build import unsupported_forces

    return "openmm" if unsupported_forces(system.openmm_system) else "torch"


def check_engine(engine) -> str:
    """``engine`` when it is one of :data:`ENGINES` (checked before anything is built)."""
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
    return engine


def finish_molecule(system, engine: str = "auto", hydrogen_mass=None, openmm_options: Sequence[str] = (),
                    torch_precision: str = "double"):
    """``system`` with ``hydrogen_mass`` applied, as the engine ``engine`` evaluates it.

    Parameters
    ----------
    system : OpenMMSystem
    engine : {"auto", "torch", "openmm"}
        See :func:`choose_engine`.
    hydrogen_mass : float or openmm Quantity, optional
        amu; every hydrogen weighs this much (:func:`~langevin_md.systems.hmr.with_hydrogen_mass`).
    openmm_options : sequence of str
        OpenMM-only options the caller was given (they make ``"auto"`` choose OpenMM).
    torch_precision : {"double", "mixed"}
        The torch force field's precision when the engine is torch
        (:data:`~langevin_md.systems.torch_forcefield.PRECISIONS`).

    Returns
    -------
    OpenMMSystem or TorchForceField
    """
    check_engine(engine)
    if hydrogen_mass is not None:
        from langevin_md.systems.hmr import with_hydrogen_mass

        system = with_hydrogen_mass(system, hydrogen_mass)
    if choose_engine(system, engine, list(openmm_options)) == "torch":
        return system.to_torch(precision=torch_precision)
    return system


def openmm_options(platform: str = "auto", precision=None, device_index=None) -> list:
    """The OpenMM-only options among these that were given (for :func:`choose_engine`)."""
    given = {"platform": platform != "auto", "precision": precision is not None,
             "device_index": device_index is not None}
    return [k for k, v in given.items() if v]


def split_precision(engine: str, precision):
    """``(torch_precision, openmm_precision)``: who a builder's ``precision`` is for.

    With ``engine="torch"`` it is the torch force field's
    (:data:`~langevin_md.systems.torch_forcefield.PRECISIONS`) and OpenMM gets none; otherwise
    it is OpenMM's platform precision and the torch force field, if ``"auto"`` builds one,
    stays in double.
    """
    if engine == "torch" and precision is not None:
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS} for engine='torch', got {precision!r}")
        return precision, None
    return "double", precision
