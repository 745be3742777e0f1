"""The contract every batched force-field term follows.

A term is a ``torch.nn.Module`` whose parameters are buffers (so ``.to(device, dtype)`` moves
them) and whose non-tensor settings are a JSON-able ``spec``. Saving a force field stores each
term's ``kind``, ``spec`` and buffers; loading rebuilds it from those alone, with no OpenMM.
"""

from __future__ import annotations

from typing import Any

import torch


class Term(torch.nn.Module):
    """One energy term of a force field, batched over walkers.

    Subclasses set ``kind`` (a unique string used by the save format), register their tensors as
    buffers, and implement :meth:`energy`. Terms whose forces have a cheap closed form override
    :meth:`energy_and_forces`; the default differentiates :meth:`energy` with autograd.
    """

    #: Unique name of the term type in saved force fields.
    kind: str = ""

    def energy(self, x: torch.Tensor) -> torch.Tensor:
        """Energy of each walker.

        Parameters
        ----------
        x : torch.Tensor, shape ``(n_walkers, n_atoms, 3)``, nm

        Returns
        -------
        torch.Tensor, shape ``(n_walkers,)``, kJ/mol
        """
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.energy(x)

    def energy_and_forces(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Energy ``(n_walkers,)`` in kJ/mol and forces ``(n_walkers, n_atoms, 3)`` in kJ/mol/nm."""
        with torch.enable_grad():
            xg = x.detach().requires_grad_(True)
            e = self.energy(xg)
            (g,) = torch.autograd.grad(e.sum(), xg)
        return e.detach(), -g

    def spec(self) -> dict[str, Any]:
        """JSON-able settings that, with the buffers, rebuild this term (see :meth:`from_spec`)."""
        return {}

    @classmethod
    def from_spec(cls, spec: dict[str, Any], buffers: dict[str, torch.Tensor]) -> "Term":
        """Rebuild a term from :meth:`spec` and its buffers (no OpenMM needed)."""
        raise NotImplementedError
