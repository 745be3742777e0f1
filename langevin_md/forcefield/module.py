"""The compiled force field: all terms evaluated together on one batch of walkers."""

from __future__ import annotations

import torch

from langevin_md.forcefield.batched import WalkerLastTerm
from langevin_md.forcefield.term import Term


class ForceFieldModule(torch.nn.Module):
    """Sum of force-field terms, batched over walkers.

    Walker-last terms (:class:`~langevin_md.forcefield.batched.WalkerLastTerm`) share one
    transposed copy of the positions and one force buffer; any other
    :class:`~langevin_md.forcefield.term.Term` (e.g. the custom-expression terms) is called
    through the walkers-first contract and its forces are added at the end.

    Parameters
    ----------
    terms : sequence of Term
    n_atoms : int
    """

    def __init__(self, terms, n_atoms: int):
        super().__init__()
        for t in terms:
            if not isinstance(t, Term):
                raise TypeError(f"force-field terms must be Term instances, got {type(t).__name__}")
        self.terms = torch.nn.ModuleList(terms)
        self.n_atoms = int(n_atoms)
        self._walker_last = [t for t in terms if isinstance(t, WalkerLastTerm)]
        self._other = [t for t in terms if not isinstance(t, WalkerLastTerm)]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Energy ``(n_walkers,)`` kJ/mol and forces ``(n_walkers, n_atoms, 3)`` kJ/mol/nm.

        Parameters
        ----------
        x : torch.Tensor, shape ``(n_walkers, n_atoms, 3)``, nm
        """
        xt = x.permute(1, 2, 0).contiguous()  # (n_atoms, 3, n_walkers)
        ft = torch.zeros_like(xt)
        energy = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
        for term in self._walker_last:
            energy = energy + term.accumulate(xt, ft)
        forces = ft.permute(2, 0, 1).contiguous()
        for term in self._other:
            e, f = term.energy_and_forces(x)
            energy = energy + e
            forces = forces + f
        return energy, forces

    def energy(self, x: torch.Tensor) -> torch.Tensor:
        """Energy ``(n_walkers,)`` only (no force arithmetic), differentiable by autograd."""
        xt = x.permute(1, 2, 0)
        energy = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
        for term in self._walker_last:
            energy = energy + term.accumulate(xt, None)
        for term in self._other:
            energy = energy + term.energy(x)
        return energy
