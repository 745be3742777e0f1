"""Standard normals of the per-walker streams, written straight into the lanes layout.

:class:`NormalLanes` gives the lanes BAOAB (:mod:`langevin_md.integrators.lanes_langevin`) each
step's noise: the numbers of :meth:`langevin_md.random.WalkerRNG.normal` for shape
``(n_atoms, 3)``, bit for bit, with the stream advanced by as many words, laid out as
``(n_blocks, n_atoms, 3, B)`` (:mod:`langevin_md.forcefield.fused.lanes`). The SplitMix64
words and their uniforms take one numba pass instead of a dozen numpy ones; log, sqrt, cos
and sin stay in torch on the same ``(n_walkers, m)`` tensors as in ``WalkerRNG.normal``,
because their vectorised and scalar code paths may differ in the last bit (see
:func:`langevin_md.random._box_muller`).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from numba import njit, prange

from langevin_md.random import GAMMA, MIX1, MIX2

_GAMMA = np.uint64(GAMMA & (2**64 - 1))
_MIX1 = np.uint64(MIX1 & (2**64 - 1))
_MIX2 = np.uint64(MIX2 & (2**64 - 1))


@njit(cache=True, error_model="numpy", boundscheck=False)
def _uniform_rows(keys, first_word, u1, theta, w0, w1):
    """Box–Muller's inputs for walkers ``w0`` to ``w1``: what :meth:`WalkerRNG.normal` computes in numpy.

    Word k of walker w is SplitMix64's finaliser of ``keys[w] + (first_word + k)·GAMMA`` (mod
    2⁶⁴); the first ``m`` words give u₁ = 1 − (word ≫ 11)·2⁻⁵³ and the next ``m`` give
    θ = ((word ≫ 11)·2⁻⁵³)·2π, each product rounded as numpy rounds it.
    """
    m = u1.shape[1]
    two_pi = 2.0 * math.pi
    for w in range(w0, w1):
        key = keys[w]
        for k in range(2 * m):
            z = key + (first_word + np.uint64(k)) * _GAMMA
            z = (z ^ (z >> np.uint64(30))) * _MIX1
            z = (z ^ (z >> np.uint64(27))) * _MIX2
            z = (z ^ (z >> np.uint64(31))) >> np.uint64(11)
            if k < m:
                u1[w, k] = 1.0 - np.float64(z) * 2.0**-53
            else:
                theta[w, k - m] = (np.float64(z) * 2.0**-53) * two_pi


@njit(parallel=True, cache=True, error_model="numpy")
def _uniforms_parallel(keys, first_word, u1, theta, chunks):
    n = keys.shape[0]
    for c in prange(chunks):
        _uniform_rows(keys, first_word, u1, theta, c * n // chunks, (c + 1) * n // chunks)


@njit(cache=True, error_model="numpy", boundscheck=False)
def _normals_to_lanes(r, cos, sin, n, out):
    """ξ = (r·cos θ, r·sin θ)[:n] per walker, written in lanes ``(n_blocks, n_atoms, 3, B)`` (pad lanes: the last walker)."""
    n_walkers, m = r.shape
    lanes = out.shape[3]
    for k in range(out.shape[0]):
        last = min(lanes, n_walkers - k * lanes)  # lanes of real walkers in this block
        for i in range(n):  # writes run along the lanes; the reads gather
            row = out[k, i // 3, i % 3]
            if i < m:
                for b in range(last):
                    row[b] = r[k * lanes + b, i] * cos[k * lanes + b, i]
            else:
                for b in range(last):
                    row[b] = r[k * lanes + b, i - m] * sin[k * lanes + b, i - m]
            for b in range(last, lanes):  # pad lanes: the last walker's noise
                row[b] = row[last - 1]


class NormalLanes:
    """Each step's standard normals of a CPU :class:`~langevin_md.random.WalkerRNG`, in lanes (float64).

    Parameters
    ----------
    generator : WalkerRNG
        The run's streams (CPU); :meth:`draw` advances its counter as ``normal`` would.
    n_atoms : int
        Atoms per walker: each draw is ``(n_atoms, 3)`` normals per walker.
    lanes : int
        Lanes per block of the output (:func:`~langevin_md.forcefield.fused.lanes.block_size`).

    Attributes
    ----------
    chunks : int
        Walker chunks hashed in parallel (1: on the calling thread).
    """

    def __init__(self, generator, n_atoms: int, lanes: int):
        self.generator = generator
        self.n = 3 * n_atoms
        self.m = (self.n + 1) // 2
        n_walkers = generator.n_walkers
        self.keys = np.ascontiguousarray(generator.keys.numpy().view(np.uint64))
        self.r = np.empty((n_walkers, self.m))
        self.theta = np.empty((n_walkers, self.m))
        self.cos = np.empty((n_walkers, self.m))
        self.out = np.empty((-(-n_walkers // lanes), n_atoms, 3, lanes))
        self.chunks = 1

    def draw(self) -> np.ndarray:
        """The next step's ξ, ``(n_blocks, n_atoms, 3, B)`` (a reused buffer: valid until the next draw)."""
        g = self.generator
        first = np.uint64(g.counter & (2**64 - 1))
        g.counter += 2 * self.m
        if self.chunks > 1:
            _uniforms_parallel(self.keys, first, self.r, self.theta, self.chunks)
        else:  # a parallel launch, even of one chunk, would wake numba's pool
            _uniform_rows(self.keys, first, self.r, self.theta, 0, self.keys.shape[0])
        r_t, theta_t = torch.from_numpy(self.r), torch.from_numpy(self.theta)
        torch.log(r_t, out=r_t)
        np.multiply(self.r, -2.0, out=self.r)
        torch.sqrt(r_t, out=r_t)
        torch.cos(theta_t, out=torch.from_numpy(self.cos))
        torch.sin(theta_t, out=theta_t)
        _normals_to_lanes(self.r, self.cos, self.theta, self.n, self.out)
        return self.out
