"""Counter-based per-walker random streams.

Every walker owns a stream fixed by ``(seed, walker_index)``; the n-th 64-bit word of that
stream is a pure function of ``(seed, walker_index, n)``. Draws for a batch of walkers are one
vectorised integer hash, with no Python loop over walkers, so

* the same seed gives bitwise the same numbers on any device,
* walker ``i`` sees the same numbers whether it runs alone, with 10⁶ others, or in a shard
  on another machine, and
* a stream is restored from ``(seed, walker indices, counter)`` alone: a checkpoint needs no
  opaque generator state.

The word function is SplitMix64's output function (Steele, Lea & Flood, "Fast splittable
pseudorandom number generators", OOPSLA 2014) applied to ``key_w + n * GAMMA``, where the
per-walker key ``key_w`` is itself a SplitMix64 hash of ``(seed, w)``. SplitMix64 passes
BigCrush; distinct walker keys are 64-bit pseudo-random, so streams overlap only with
probability ~ n_walkers² · n_words / 2⁶⁴.

Torch has no unsigned 64-bit arithmetic on every device, so the hash runs in ``int64``:
multiplication wraps modulo 2⁶⁴ (two's complement), and logical right shifts are arithmetic
shifts followed by a mask.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch

_GAMMA = 0x9E3779B97F4A7C15
_MIX1 = 0xBF58476D1CE4E5B9
_MIX2 = 0x94D049BB133111EB


def _signed(c: int) -> int:
    """Reinterpret an unsigned 64-bit constant as int64."""
    c &= (1 << 64) - 1
    return c - (1 << 64) if c >= 1 << 63 else c


GAMMA = _signed(_GAMMA)
MIX1 = _signed(_MIX1)
MIX2 = _signed(_MIX2)


def _shr(z: torch.Tensor, s: int) -> torch.Tensor:
    """Logical right shift of int64 values."""
    return (z >> s) & ((1 << (64 - s)) - 1)


def mix64(z: torch.Tensor) -> torch.Tensor:
    """SplitMix64 finaliser on an int64 tensor (bijective on 64-bit words)."""
    z = (z ^ _shr(z, 30)) * MIX1
    z = (z ^ _shr(z, 27)) * MIX2
    return z ^ _shr(z, 31)


def _mix64_int(z: int) -> int:
    """The same finaliser on a Python int, for keys."""
    m = (1 << 64) - 1
    z &= m
    z = ((z ^ (z >> 30)) * _MIX1) & m
    z = ((z ^ (z >> 27)) * _MIX2) & m
    return _signed(z ^ (z >> 31))


class _Draws:
    """Uniform and normal draws built on ``_words``; shared by the eager and compiled streams."""

    n_walkers: int

    def _words(self, n: int) -> torch.Tensor:
        raise NotImplementedError

    def uniform(self, shape: Sequence[int] = (), dtype=torch.float64) -> torch.Tensor:
        """Uniform draws in [0, 1), shape ``(n_walkers, *shape)``."""
        shape = tuple(shape)
        n = math.prod(shape)
        w = self._words(n)
        if dtype == torch.float64:
            u = _shr(w, 11).to(torch.float64) * 2.0**-53
        else:
            u = (_shr(w, 40).to(torch.float32) * 2.0**-24).to(dtype)
        return u.reshape((self.n_walkers,) + shape)

    def normal(self, shape: Sequence[int] = (), dtype=torch.float64) -> torch.Tensor:
        """Standard normal draws, shape ``(n_walkers, *shape)`` (Box–Muller, both outputs used)."""
        shape = tuple(shape)
        n = math.prod(shape)
        m = (n + 1) // 2
        w = self._words(2 * m)
        # Box-Muller in float64 whatever the output dtype: it costs little and keeps the
        # tails right (|z| up to 8.6 rather than 5.6 for 24-bit uniforms).
        u1 = 1.0 - _shr(w[:, :m], 11).to(torch.float64) * 2.0**-53  # (0, 1]
        u2 = _shr(w[:, m:], 11).to(torch.float64) * 2.0**-53
        return _box_muller(u1, u2, n, dtype).reshape((self.n_walkers,) + shape)


def _box_muller(u1: torch.Tensor, u2: torch.Tensor, n: int, dtype) -> torch.Tensor:
    """``n`` normals per walker from uniforms ``u1`` in (0, 1] and ``u2`` in [0, 1), each ``(w, m)``.

    ``u1`` and ``u2`` must be contiguous ``(n_walkers, m)`` float64 tensors; ``u1`` is
    overwritten. Every path (eager torch, eager numpy words, compiled) ends here, so the
    transcendental functions (log, cos, sin) always run on tensors of the same shape and
    layout: their vectorised and scalar code paths may differ in the last bit, and which one
    an element takes depends on its position in the tensor (torch's sqrt is not numpy's
    either). Every other operation on the way is exact or one correctly rounded IEEE
    multiplication, the same wherever it runs.
    """
    if torch.compiler.is_compiling():
        r = torch.sqrt(-2.0 * torch.log(u1))
        theta = (2.0 * math.pi) * u2
        z = torch.cat([r * torch.cos(theta), r * torch.sin(theta)], dim=1)[:, :n]
        return z.to(dtype)
    r = torch.log(u1, out=u1).mul_(-2.0).sqrt_()
    theta = u2.mul((2.0 * math.pi))
    m = u1.shape[1]
    z = torch.empty((u1.shape[0], 2 * m), dtype=torch.float64, device=u1.device)
    torch.mul(r, torch.cos(theta), out=z[:, :m])
    torch.mul(r, theta.sin_(), out=z[:, m:])
    z = z[:, :n]
    return z if dtype == torch.float64 else z.to(dtype)


class WalkerRNG(_Draws):
    """Independent, reproducible random streams for a set of walkers.

    Parameters
    ----------
    seed : int
        Non-negative integer seed of the whole run.
    walker_indices : sequence of int or int
        Global indices of the walkers this generator serves (an int ``n`` means ``range(n)``).
        A shard of a run passes its slice of indices and draws exactly the numbers that the
        same walkers draw in the full run.
    device : torch.device or str, optional
    counter : int, optional
        Number of 64-bit words already consumed per walker (restored from a checkpoint).

    Notes
    -----
    All walkers consume the same number of words per draw, so a single counter (a Python
    int, never a device tensor) describes the state of every stream: drawing never syncs
    with the device.
    """

    def __init__(self, seed: int, walker_indices, device=None, counter: int = 0):
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        if seed >= 1 << 64:
            # Keys are 64-bit words: a larger seed would wrap and repeat a smaller one's streams.
            raise ValueError(f"seed must be below 2**64 (streams are keyed by 64-bit words), got {seed!r}")
        if isinstance(walker_indices, (int, np.integer)):
            if walker_indices < 1:
                raise ValueError(f"n_walkers must be a positive integer, got {walker_indices!r}")
            walker_indices = range(int(walker_indices))
        idx = np.asarray(list(walker_indices), dtype=np.int64)
        if idx.ndim != 1 or idx.size == 0 or (idx < 0).any():
            raise ValueError("walker_indices must be a non-empty list of non-negative integers")
        self.seed = int(seed)
        self.walker_indices = idx
        self._n_walkers = int(idx.size)
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.counter = int(counter)
        seed_key = _mix64_int(self.seed * _GAMMA + 0x2545F4914F6CDD1D)
        keys = torch.as_tensor(idx, dtype=torch.int64) * GAMMA + seed_key
        self._keys = mix64(mix64(keys)).to(self.device)
        self._offsets: dict[int, torch.Tensor] = {}
        # On the CPU the integer hash runs in numpy: it has unsigned 64-bit arithmetic (no
        # masks after shifts), works in place in reused buffers, and costs about a third of
        # the same torch ops. The words are the same integers either way.
        self._host = self.device.type == "cpu"
        self._keys_u64 = self._keys.numpy().view(np.uint64)[:, None] if self._host else None
        self._scratch: dict[tuple, np.ndarray] = {}

    @property
    def n_walkers(self) -> int:
        return self._n_walkers

    @property
    def keys(self) -> torch.Tensor:
        """Per-walker stream keys, ``(n_walkers,)`` int64 on :attr:`device` (read-only use).

        Word ``k`` of walker ``i``'s stream is ``mix64(keys[i] + k * GAMMA)`` (mod 2⁶⁴); a
        :class:`CounterStream` built from these keys and :attr:`counter` continues the
        streams exactly.
        """
        return self._keys

    def state_dict(self) -> dict:
        """Everything needed to restore these streams exactly."""
        return {"seed": self.seed, "walker_indices": self.walker_indices.copy(), "counter": self.counter}

    @classmethod
    def from_state_dict(cls, state: dict, device=None) -> "WalkerRNG":
        return cls(state["seed"], state["walker_indices"], device=device, counter=state["counter"])

    def _words(self, n: int) -> torch.Tensor:
        """The next ``n`` 64-bit words of every walker's stream, shape ``(n_walkers, n)``."""
        offs = self._offsets.get(n)
        if offs is None:
            offs = torch.arange(n, dtype=torch.int64, device=self.device) * GAMMA
            self._offsets[n] = offs
        base = _signed(self.counter * _GAMMA)
        self.counter += n
        return mix64(self._keys[:, None] + (offs + base))

    # ------------------------------------------------------------------ CPU fast path
    def _buffer(self, name: str, shape: tuple, dtype) -> np.ndarray:
        key = (name, shape)
        buf = self._scratch.get(key)
        if buf is None:
            if len(self._scratch) > 16:  # many different draw sizes: keep memory bounded
                self._scratch.clear()
            buf = self._scratch[key] = np.empty(shape, dtype=dtype)
        return buf

    def _host_shifted_words(self, n: int, shift: int) -> np.ndarray:
        """The next ``n`` words of every walker, logically shifted right by ``shift``.

        A reused ``(n_walkers, n)`` uint64 scratch buffer: valid until the next draw.
        """
        shape = (self.n_walkers, n)
        w = self._buffer("words", shape, np.uint64)
        tmp = self._buffer("tmp", shape, np.uint64)
        # Word k of a draw is key + (counter + k)·GAMMA = (key + k·GAMMA) + counter·GAMMA
        # (mod 2⁶⁴). The first bracket is fixed per draw size, so it is built once and each draw
        # adds one scalar to a contiguous buffer: adding the (n_walkers, 1) keys to the (n,)
        # offsets afresh would broadcast with an inner loop of n (often 1-3) elements, which
        # costs more than the whole hash that follows.
        start = self._scratch.get(("start", n))
        if start is None:
            steps = np.arange(n, dtype=np.uint64)
            np.multiply(steps, np.uint64(_GAMMA), out=steps)  # wraps mod 2^64, as int64 torch does
            start = self._scratch[("start", n)] = self._keys_u64 + steps
        np.add(start, np.uint64((self.counter * _GAMMA) & ((1 << 64) - 1)), out=w)
        self.counter += n
        for s, mult in ((30, _MIX1), (27, _MIX2)):
            np.right_shift(w, np.uint64(s), out=tmp)
            np.bitwise_xor(w, tmp, out=w)
            np.multiply(w, np.uint64(mult), out=w)
        np.right_shift(w, np.uint64(31), out=tmp)
        np.bitwise_xor(w, tmp, out=w)
        np.right_shift(w, np.uint64(shift), out=w)
        return w

    def uniform(self, shape: Sequence[int] = (), dtype=torch.float64) -> torch.Tensor:
        """Uniform draws in [0, 1), shape ``(n_walkers, *shape)``."""
        shape = tuple(shape)
        n = math.prod(shape)
        if not self._host or n == 0 or dtype not in (torch.float64, torch.float32):
            return super().uniform(shape, dtype)
        if dtype == torch.float64:
            w = self._host_shifted_words(n, 11)
            u = np.multiply(w, 2.0**-53, dtype=np.float64)  # exact: w < 2^53
        else:
            w = self._host_shifted_words(n, 40)
            u = np.multiply(w, np.float32(2.0**-24), dtype=np.float32)  # exact: w < 2^24
        return torch.from_numpy(u).reshape((self.n_walkers,) + shape)

    def normal(self, shape: Sequence[int] = (), dtype=torch.float64) -> torch.Tensor:
        """Standard normal draws, shape ``(n_walkers, *shape)`` (Box–Muller, both outputs used).

        The numbers equal :meth:`_Draws.normal`'s bit for bit: log, sqrt, cos and sin run in
        torch on contiguous ``(n_walkers, m)`` tensors exactly as there (see
        :func:`_box_muller`); every other operation is exact or one correctly rounded IEEE
        multiplication, and runs in numpy, whose calls cost a fraction of a torch op's.
        """
        shape = tuple(shape)
        n = math.prod(shape)
        if not self._host or n == 0:
            return super().normal(shape, dtype)
        m = (n + 1) // 2
        w = self._host_shifted_words(2 * m, 11)
        r = self._buffer("u1", (self.n_walkers, m), np.float64)
        theta = self._buffer("u2", (self.n_walkers, m), np.float64)
        cos = self._buffer("cos", (self.n_walkers, m), np.float64)
        np.multiply(w[:, :m], 2.0**-53, out=r)
        np.subtract(1.0, r, out=r)  # u1 in (0, 1]
        r_t = torch.from_numpy(r)
        torch.log(r_t, out=r_t)
        np.multiply(r, -2.0, out=r)
        torch.sqrt(r_t, out=r_t)  # torch's vectorised sqrt is not numpy's to the last bit
        np.multiply(w[:, m:], 2.0**-53, out=theta)  # u2 in [0, 1)
        np.multiply(theta, 2.0 * math.pi, out=theta)
        theta_t = torch.from_numpy(theta)
        torch.cos(theta_t, out=torch.from_numpy(cos))
        torch.sin(theta_t, out=theta_t)
        z = np.empty((self.n_walkers, 2 * m), dtype=np.float64)
        np.multiply(r, cos, out=z[:, :m])
        np.multiply(r, theta, out=z[:, m:])
        out = torch.from_numpy(z)[:, :n]
        if dtype != torch.float64:
            out = out.to(dtype)
        return out.reshape((self.n_walkers,) + shape)


class CounterStream(_Draws):
    """The same streams with the counter held in a 0-d int64 tensor, for compiled graphs.

    ``torch.compile`` specialises on Python ints, so a compiled chunk of steps takes the
    counter as a tensor input and tracks only the (trace-time constant) words it consumes
    since the chunk started. Draws equal the :class:`WalkerRNG` draws word for word.

    Parameters
    ----------
    keys : torch.Tensor of int64, shape ``(n_walkers,)``
        Per-walker keys (:attr:`WalkerRNG.keys`).
    counter : torch.Tensor of int64, shape ``()``
        Words consumed before this chunk.
    """

    def __init__(self, keys: torch.Tensor, counter: torch.Tensor):
        self._keys = keys
        self.counter = counter
        self.consumed = 0
        self.n_walkers = keys.shape[0]

    def _words(self, n: int) -> torch.Tensor:
        # Inductor turns ``arange(n) * GAMMA`` into a symbolic index expression and folds it in
        # exact integer arithmetic, which overflows int64 once n ≥ 3 (GAMMA is ~2^63). Taking
        # the multiplier from a graph input keeps it a run-time value, so the product wraps
        # like every other int64 product here (bitwise the eager words).
        gamma = self.counter - self.counter + GAMMA
        offs = torch.arange(n, dtype=torch.int64, device=self._keys.device) * gamma
        base = (self.counter + self.consumed) * GAMMA
        self.consumed += n
        return mix64(self._keys[:, None] + (offs + base))
