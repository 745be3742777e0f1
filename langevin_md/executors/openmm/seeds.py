"""OpenMM random seeds for walkers, derived from the run seed.

OpenMM integrators take one 31-bit seed (0 means "pick one at random"), and their random
state cannot be read back or restored. So each walker's seed is a hash of ``(run seed,
walker, stream, epoch)``: ``stream`` separates the integrator's noise from the initial
Maxwell–Boltzmann velocities, and ``epoch`` is the step the seeds were (re)drawn at — 0 for a
fresh run, the checkpoint step for a resumed one (see :mod:`langevin_md.executors.openmm`).
"""

from __future__ import annotations

import hashlib

#: The integrator's noise.
INTEGRATOR_STREAM = 1
#: The initial Maxwell–Boltzmann velocities.
VELOCITY_STREAM = 2


def walker_seed(seed: int, walker: int, stream: int, epoch: int = 0) -> int:
    """A nonzero 31-bit OpenMM seed, a pure function of its arguments (all non-negative ints)."""
    digest = hashlib.blake2b(f"{int(seed)}:{int(walker)}:{int(stream)}:{int(epoch)}".encode(),
                             digest_size=8, person=b"lmd-openmm").digest()
    return (int.from_bytes(digest, "little") & 0x7FFFFFFF) or 1


__all__ = ["walker_seed", "INTEGRATOR_STREAM", "VELOCITY_STREAM"]
