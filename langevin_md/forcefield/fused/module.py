""":class:`FusedForceField`: the standard terms of a force field through numba kernels, the rest in torch.

The eager torch path (:class:`~langevin_md.forcefield.module.ForceFieldModule`) launches
dozens of small ops per term and scatters forces with ``index_add_``; on alanine dipeptide
that per-op overhead is most of a step. Here each kernel family (bonded, pairs, OBC2) is one
compiled loop that computes energies and closed-form forces, adding forces directly into
their rows, with no gather and no scatter. The kernels work on the lanes layout
(:mod:`.lanes`: blocks of walkers, the walker index innermost), so the same arithmetic runs
on many walkers at once in SIMD registers; :meth:`FusedForceField.__call__` converts to and
from it, and an integrator that keeps its state in lanes (:mod:`langevin_md.integrators.lanes_langevin`)
calls :meth:`FusedForceField.accumulate_lanes` directly. Terms no kernel recognises are
evaluated by a :class:`ForceFieldModule` of the remaining terms and added.

Parameters and results are in the dtype of the positions (float32 or float64); a float32
kernel still does much of its arithmetic in float64 (numba widens float32 combined with
float64 constants), so it is more accurate than the float32 torch terms and not faster than
the float64 kernel. No autograd: :class:`FusedForceField` is for forces of
positions that need no gradient; the torch module stays the differentiable reference.

Threads: numba's pool is set to torch's current intra-op thread count (the run's choice, see
:mod:`langevin_md.threads`), capped by numba's pool size; with one thread the serial driver
runs on the calling thread and numba's pool is not used at all. Each block of walkers is
computed by one thread in a fixed order, so results do not depend on the thread count.
"""

from __future__ import annotations

import numba
import numpy as np
import torch

from langevin_md.forcefield.fused import bonded, obc2, pairs
from langevin_md.forcefield.fused.lanes import block_size, energies_from_lanes, from_lanes, to_lanes
from langevin_md.forcefield.module import ForceFieldModule

#: Kernel families, in the order they are evaluated: (name, module).
FAMILIES = (("bonded", bonded), ("pairs", pairs), ("obc2", obc2))
_FAMILY = dict(FAMILIES)

_DTYPES = {torch.float32: np.float32, torch.float64: np.float64}


def numba_threads(parallel_items: int) -> int:
    """Threads for the kernels: torch's current intra-op count, capped by numba's pool and the walkers."""
    return max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS, parallel_items))


class FusedForceField:
    """Energies and forces of a :class:`ForceFieldModule`, recognised terms through numba kernels.

    Parameters
    ----------
    module : ForceFieldModule
        Terms in the dtype the kernels will see (float32 or float64, CPU); its parameters are
        copied into numpy arrays once, here.

    Attributes
    ----------
    fused_kinds : list of str
        ``kind`` of every term a kernel evaluates.
    torch_kinds : list of str
        ``kind`` of every term left to torch.
    """

    def __init__(self, module: ForceFieldModule):
        if not isinstance(module, ForceFieldModule):
            raise TypeError(f"module must be a ForceFieldModule, got {type(module).__name__}")
        dtype = next((b.dtype for b in module.buffers() if b.is_floating_point()), torch.float64)
        if dtype not in _DTYPES:
            raise ValueError(f"fused kernels take float32 or float64 terms, got {dtype}")
        self.dtype = dtype
        self.n_atoms = module.n_atoms
        np_dtype = _DTYPES[dtype]
        self._params = []  # (family name, parameters): names, not modules, so instances pickle
        fused = []
        for name, family in FAMILIES:
            mine = [t for t in module.terms if family.is_fusable(t)]
            if mine:
                if name == "obc2":  # one parameter set per GB term
                    self._params += [(name, family.pack(t, np_dtype)) for t in mine]
                else:
                    self._params.append((name, family.pack(mine, np_dtype)))
            fused += mine
        rest = [t for t in module.terms if not any(t is u for u in fused)]
        self.fused_kinds = [t.kind for t in module.terms if any(t is u for u in fused)]
        self.torch_kinds = [t.kind for t in rest]
        self._rest = ForceFieldModule(rest, module.n_atoms) if rest else None

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Energy ``(n_walkers,)`` kJ/mol and forces ``(n_walkers, n_atoms, 3)`` kJ/mol/nm.

        Parameters
        ----------
        x : torch.Tensor, shape ``(n_walkers, n_atoms, 3)``, nm
            CPU, in this force field's dtype; no gradient is tracked.
        """
        if x.device.type != "cpu":
            raise ValueError(f"fused kernels run on CPU tensors; got positions on {x.device}")
        if x.dtype != self.dtype:
            raise ValueError(f"positions are {x.dtype} but this FusedForceField was built for {self.dtype}")
        x = x.detach().contiguous()
        n = x.shape[0]
        if self._rest is not None:
            energy, forces = self._rest(x)
            energy, forces = energy.contiguous(), forces.contiguous()
        else:
            energy = torch.zeros(n, dtype=x.dtype)
            forces = torch.zeros_like(x)
        lanes = block_size(n)
        parallel = self.set_threads(-(-n // lanes))
        xn, fn, en = x.numpy(), forces.numpy(), energy.numpy()
        # the lanes start from the torch terms' results, so each force row sums in the order
        # torch terms, then each family in turn, whatever the layout
        xl, fl = to_lanes(xn, lanes), to_lanes(fn, lanes)
        el = to_lanes(en[:, None, None], lanes)[:, 0, 0].copy()
        self.accumulate_lanes(xl, fl, el, parallel)
        from_lanes(fl, n, out=fn)
        en[:] = energies_from_lanes(el, n)
        return energy, forces

    @property
    def lanes_ready(self) -> bool:
        """Whether every term runs in a lanes kernel (no term is left to torch)."""
        return self._rest is None

    def set_threads(self, n_blocks: int) -> bool:
        """Size numba's pool for ``n_blocks`` blocks of walkers (:func:`numba_threads`); True if parallel."""
        threads = numba_threads(n_blocks)
        if threads > 1 and numba.get_num_threads() != threads:
            numba.set_num_threads(threads)
        return threads > 1

    def accumulate_lanes(self, x: np.ndarray, f: np.ndarray, e: np.ndarray, parallel: bool) -> None:
        """Add every term's energy to ``e`` ``(n_blocks, B)`` and forces to ``f``, in the lanes layout.

        The torch terms (:attr:`torch_kinds`) are not included. ``x``, ``f``: ``(n_blocks, n_atoms, 3, B)`` in this force
        field's dtype (:mod:`.lanes`); ``parallel``: blocks over numba's pool (see :meth:`set_threads`).
        """
        for name, params in self._params:
            _FAMILY[name].accumulate_lanes(x, f, e, params, parallel)

    def __repr__(self) -> str:
        return f"FusedForceField(fused={self.fused_kinds}, torch={self.torch_kinds}, dtype={self.dtype})"
