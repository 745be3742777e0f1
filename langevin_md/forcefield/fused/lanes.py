"""The lanes layout of the fused kernels: blocks of walkers with the walker index innermost.

A batch of positions ``(n_walkers, n_atoms, 3)`` is cut into blocks of ``B`` walkers and
stored as ``(n_blocks, n_atoms, 3, B)``: within a block, coordinate c of atom i is a
contiguous row of ``B`` walkers. Every kernel loops over its items (bonds, pairs, atoms)
outside and over the lanes of a block inside, so the same arithmetic runs on ``B``
independent walkers with unit stride, which LLVM turns into SIMD instructions. The per-walker
layout cannot vectorise: each item scatters into its own atoms' rows.

Two conditions make numba's loops vectorise, and every lanes kernel has both:

* ``error_model="numpy"``: under numba's default ("python") every ``/`` checks for a zero
  divisor and may raise, a branch that stops the vectoriser; numpy's model gives inf/nan
  as IEEE arithmetic does;
* no transcendental call (log, exp, atan2 are scalar libm calls) inside a lane loop that
  should vectorise: such loops are split, the call in a short loop of its own.

Each lane computes the same operations in the same order whatever the block size and
whichever walkers share its block (``fastmath`` stays off: no contraction into FMA, no
reassociation), so a walker's energy and forces are bitwise independent of the batch it is
evaluated in.

Walkers are padded to whole blocks with copies of the last walker, so pad lanes are finite
and their results are dropped.
"""

from __future__ import annotations

import numpy as np

#: Walkers per block: enough for several AVX-512 vectors and to amortise a pair's set-up,
#: small enough that a block's positions, velocities and forces stay in L2 cache. Measured on
#: alanine dipeptide pairs: 64 lanes 0.46, 256 lanes 0.35, 1024 lanes 0.45 µs per walker.
BLOCK = 128


def block_size(n_walkers: int) -> int:
    """Lanes per block for ``n_walkers`` walkers: :data:`BLOCK`, or fewer for a small batch."""
    if n_walkers < 1:
        raise ValueError(f"n_walkers must be positive, got {n_walkers}")
    if n_walkers <= BLOCK:
        return n_walkers
    # as few pad lanes as possible with blocks of at most BLOCK lanes
    n_blocks = -(-n_walkers // BLOCK)
    return -(-n_walkers // n_blocks)


def to_lanes(x: np.ndarray, lanes: int) -> np.ndarray:
    """``(n_walkers, n_atoms, 3)`` → ``(n_blocks, n_atoms, 3, lanes)``, a new array; pad lanes copy the last walker."""
    n = x.shape[0]
    n_blocks = -(-n // lanes)
    pad = n_blocks * lanes - n
    if pad:
        x = np.concatenate([x, np.broadcast_to(x[-1:], (pad,) + x.shape[1:])])
    # always a copy: with one lane the transposed view is already "contiguous", and kernels
    # write into lanes in place
    return np.array(x.reshape((n_blocks, lanes) + x.shape[1:]).transpose(0, 2, 3, 1), order="C", copy=True)


def from_lanes(x: np.ndarray, n_walkers: int, out: np.ndarray = None) -> np.ndarray:
    """``(n_blocks, n_atoms, 3, lanes)`` → ``(n_walkers, n_atoms, 3)`` (into ``out`` when given)."""
    n_blocks, n_atoms, _, lanes = x.shape
    walkers = x.transpose(0, 3, 1, 2).reshape(n_blocks * lanes, n_atoms, 3)[:n_walkers]
    if out is None:
        return np.ascontiguousarray(walkers)
    out[...] = walkers
    return out


def energies_from_lanes(e: np.ndarray, n_walkers: int) -> np.ndarray:
    """``(n_blocks, lanes)`` energies → ``(n_walkers,)``."""
    return e.reshape(-1)[:n_walkers]
