"""Fused numba kernels for the standard force-field terms (CPU, float32 and float64).

One module per kernel family: :mod:`.bonded` (harmonic bonds and angles, periodic
torsions), :mod:`.pairs` (``NonbondedForce`` with ``NoCutoff``), :mod:`.obc2` (the OBC2
``CustomGBForce`` of Amber's ``implicit/obc2.xml``); :mod:`.module` combines them with the torch
evaluation of every other term (:class:`~langevin_md.forcefield.fused.module.FusedForceField`).

Importing this package does not import numba (about half a second); :func:`numba_available`
says whether the kernels can be used.
"""

from __future__ import annotations

import importlib.util

from langevin_md.forcefield.fused.recognise import fusable_kinds


def numba_available() -> bool:
    """Whether numba is installed (the kernels need it; the torch path does not)."""
    return importlib.util.find_spec("numba") is not None


__all__ = ["fusable_kinds", "numba_available"]
