"""A force field plus a weighted learned prior, whose two energies are recorded apart.

``ForceFieldWithPrior(ff, prior, weight)`` is the :class:`~.base.SumSystem`
U = U_ff + λ·U_prior, and declares two per-walker energies that executors record with every
frame (:attr:`recorded_energy_names`, evaluated only at recorded frames, never every step):

* ``U_ff``: the force field's own energy (kJ/mol);
* ``U_prior``: the prior's contribution λ·U_prior, so U_ff + U_prior = U up to rounding.

A learned prior's additive constant is arbitrary (a network trained on forces or scores
knows the energy only up to a constant), so ⟨U_prior⟩ alone means nothing; its fluctuations
and differences between states do. ⟨U_ff⟩ is the physically meaningful average.

Also :class:`AtomSelection`, the feature function that hands a CG model the positions of the
atoms it acts on.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch

from .base import SumSystem, System


class ForceFieldWithPrior(SumSystem):
    """U(x) = U_ff(x) + λ U_prior(x), recording ``U_ff`` and ``U_prior`` at every frame.

    Parameters
    ----------
    forcefield : System
        The physical energy (its masses, topology and start are the sum's).
    prior : System
        The learned energy, same ``event_shape`` and ``kT``.
    weight : float
        λ, finite.
    """

    #: Per-walker energies the executors record with each frame (``fields/NAME`` in trajectory.h5).
    recorded_energy_names = ("U_ff", "U_prior")

    def __init__(self, forcefield: System, prior: System, weight: float = 1.0):
        if not isinstance(forcefield, System) or not isinstance(prior, System):
            raise TypeError("forcefield and prior must be Systems")
        w = float(weight)
        if not math.isfinite(w):
            raise ValueError(f"the prior's weight must be finite, got {weight!r}")
        super().__init__([(1.0, forcefield), (w, prior)])
        # SumSystem flattens nested sums: the force field's terms come first.
        self.n_forcefield_terms = len(forcefield.terms) if isinstance(forcefield, SumSystem) else 1
        self.weight = w
        self.forcefield = forcefield
        self.prior = prior

    def recorded_energies(self, x: torch.Tensor) -> dict:
        """``{"U_ff": ..., "U_prior": λ·U_prior}``, each ``(n_walkers,)`` in the system's energy unit."""
        parts = self.energy_components(x)
        n = self.n_forcefield_terms
        u_ff = sum(w * e for w, _, e in parts[:n])
        u_prior = sum(w * e for w, _, e in parts[n:])
        return {"U_ff": u_ff, "U_prior": u_prior}

    def initial_positions(self, n_walkers, generator):
        """The force field's start."""
        return self.forcefield.initial_positions(n_walkers, generator)

    def __repr__(self) -> str:
        return f"ForceFieldWithPrior({self.forcefield!r}, {self.prior!r}, weight={self.weight:g})"


class AtomSelection(torch.nn.Module):
    """Feature function ``(n, n_atoms, 3) -> (n, len(atoms), 3)``: the positions of some atoms.

    Parameters
    ----------
    atoms : sequence of int
        Atom indices, in bead order.
    """

    def __init__(self, atoms: Sequence[int]):
        super().__init__()
        self.atoms = tuple(int(a) for a in np.asarray(atoms, dtype=np.int64).reshape(-1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, list(self.atoms), :]


__all__ = ["ForceFieldWithPrior", "AtomSelection"]
