"""Batched Verlet neighbour lists on a skin, for non-periodic cutoff terms.

A cutoff term (``CutoffNonPeriodic``) evaluates a fixed list of *candidate* pairs (every pair
its force could ever count); with all pairs that is O(a²) work per walker even though only the
pairs within r_c contribute. :class:`NeighbourList` keeps the subset of candidates that lie
within r_c + skin in **any** walker, measured at the last rebuild, and rebuilds when some atom
of some walker has moved more than skin/2 since then. Between rebuilds a pair left out was
farther apart than r_c + skin in every walker, and two atoms that each moved at most skin/2
are still farther apart than r_c, so the term's own cutoff test would have zeroed it: the
result equals the all-pairs masked one exactly, up to the rounding of the sums (the same
nonzero pair terms in the same relative order; only exact zeros are left out).

Design choices, and their trade-offs:

- **One list shared by all walkers** (the union over walkers), not one per walker: the terms
  keep the walker-last layout ``(pairs, 3, n_walkers)`` in which every operation is a long
  vector loop over walkers. Walkers of one molecule near one structure share almost all their
  neighbours, so the union is barely larger than any one walker's list; walkers spread over
  very different conformations make it grow towards all pairs (never wrong, only slower).
- **The displacement check costs one pass over the positions and one host sync per call**
  (``max`` of squared displacements compared on the host): the selected pair count decides
  tensor shapes, so a rebuild cannot stay on the device without padding to a fixed capacity.
  On a CPU the sync is free; on a GPU it stalls the stream once per force call, which matters
  only for small systems, where all pairs are cheap anyway.
- **Precision.** The rebuild and the displacement test run in the dtype of the positions;
  in float32 a pair at the very edge could be misjudged by rounding (~1e-7 nm), far below
  float32's own force error. Exactness to 1e-10 is a float64 statement.
- **Compilation.** :meth:`NeighbourList.select` is excluded from ``torch.compile`` graphs;
  the number of listed pairs changes at rebuilds, so a compiled caller sees a dynamic size.
- **The rebuild** computes distances of all candidates (in chunks, without forces or
  parameters) and keeps those within r_c + skin: a cost of about one plain distance pass over
  all pairs, amortised over the steps between rebuilds.

The list is transient state, not a parameter: it is not saved with a force field and is
rebuilt whenever the walker count, device or dtype of the positions changes.
"""

from __future__ import annotations

from typing import Optional

import torch

#: Default Verlet skin in nm: with thermal motion at 300 K an atom rarely moves 0.1 nm in
#: fewer than ~20 steps of 1–2 fs, so lists are rebuilt every few tens of steps.
DEFAULT_SKIN = 0.2

#: Candidate pairs × walkers per chunk of a rebuild's distance pass (bounds its memory).
_ELEMENTS_PER_CHUNK = 1 << 22


def check_skin(skin) -> Optional[float]:
    """``skin`` as a float > 0 in nm, or None; a clear error otherwise."""
    if skin is None:
        return None
    if isinstance(skin, bool) or not isinstance(skin, (int, float)) or not skin > 0 or skin != skin:
        raise ValueError(f"neighbour-list skin must be a positive number of nm or None (all pairs), got {skin!r}")
    return float(skin)


class NeighbourList:
    """The candidate pairs within r_c + skin of each other in any walker, kept up to date.

    Parameters
    ----------
    first, second : torch.Tensor, shape ``(p,)``, int64
        The candidate pairs (atom indices); :meth:`select` returns positions in this list.
    cutoff : float
        r_c in nm.
    skin : float
        nm; rebuilt when an atom moved more than ``skin / 2`` since the last rebuild.
    """

    def __init__(self, first: torch.Tensor, second: torch.Tensor, cutoff: float, skin: float):
        if first.shape != second.shape or first.ndim != 1:
            raise ValueError(f"candidate pairs must be two equal 1-d index tensors, got shapes "
                             f"{tuple(first.shape)} and {tuple(second.shape)}")
        self.first, self.second = first, second
        self.cutoff = float(cutoff)
        self.skin = check_skin(skin)
        if self.skin is None:
            raise ValueError("NeighbourList needs a skin > 0")
        self.reference: Optional[torch.Tensor] = None  # positions at the last rebuild (a, 3, n)
        self.selected: Optional[torch.Tensor] = None   # (k,) positions in the candidate list
        self.rebuilds = 0

    def needs_rebuild(self, xt: torch.Tensor) -> bool:
        """True when the list does not describe ``xt`` (``(a, 3, n)``, nm) any more."""
        ref = self.reference
        if ref is None or ref.shape != xt.shape or ref.dtype != xt.dtype or ref.device != xt.device:
            return True
        if self.selected.device != xt.device:
            return True
        moved = xt - ref
        worst = (moved * moved).sum(1).max()
        # a hair under (skin/2)², so rounding in the squared distances cannot let a pair slip
        return bool(worst > (0.25 * (1.0 - 1e-9)) * self.skin * self.skin)

    # data-dependent control flow and output size: torch.compile runs this eagerly (a graph
    # break) and sees the list's length as a dynamic size after its first change
    @torch.compiler.disable
    def select(self, xt: torch.Tensor) -> torch.Tensor:
        """Positions in the candidate list of the pairs to evaluate at ``xt``: ``(k,)`` int64,
        ascending (so sums run in the same relative order as over all candidates)."""
        if self.needs_rebuild(xt):
            self._rebuild(xt)
        return self.selected

    def _rebuild(self, xt: torch.Tensor) -> None:
        first, second = self.first.to(xt.device), self.second.to(xt.device)
        self.first, self.second = first, second
        reach = self.cutoff + self.skin
        n_walkers = xt.shape[2]
        chunk = max(1, _ELEMENTS_PER_CHUNK // max(1, 3 * n_walkers))
        keep = []
        for start in range(0, first.shape[0], chunk):
            d = xt.index_select(0, first[start:start + chunk]) - xt.index_select(0, second[start:start + chunk])
            r2 = (d * d).sum(1)  # (c, n)
            keep.append((r2 <= reach * reach).any(1))
        mask = torch.cat(keep) if keep else torch.zeros(0, dtype=torch.bool, device=xt.device)
        self.selected = torch.nonzero(mask).flatten()
        self.reference = xt.detach().clone()
        self.rebuilds += 1


def with_skin(module, skin: Optional[float]):
    """A copy of a :class:`~langevin_md.forcefield.module.ForceFieldModule` whose cutoff terms
    use neighbour lists with ``skin`` (nm), or evaluate all pairs and mask (``skin=None``).

    Terms without a ``"skin"`` entry in their spec are shared, not copied. The all-pairs form is
    the reference the neighbour lists are tested against, and the faster choice when walkers
    roam over very different conformations (their union of neighbours is then nearly all pairs).
    """
    from langevin_md.forcefield.module import ForceFieldModule

    skin = check_skin(skin)
    terms = []
    for term in module.terms:
        spec = term.spec()
        if "skin" in spec:
            term = type(term).from_spec({**spec, "skin": skin}, dict(term.state_dict()))
        terms.append(term)
    return ForceFieldModule(terms, module.n_atoms)
