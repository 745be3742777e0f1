"""Holonomic distance constraints on batched walkers: SHAKE on positions, RATTLE on velocities.

A constraint k holds atoms ``i_k`` and ``j_k`` at distance ``d_k``:
g_k(x) = |x_i − x_j|² − d_k² = 0. Its gradient row G_k has +r_k at atom i and −r_k at atom j
(r_k = x_i − x_j, a factor 2 absorbed into the multipliers). The constraint list itself is
data, :class:`langevin_md.systems.constraints.Constraints`; this module solves it.

* **Positions (SHAKE, Ryckaert, Ciccotti & Berendsen, J. Comput. Phys. 23, 327 (1977)).**
  An unconstrained update x̃ from a constrained x is corrected along the constraint
  directions at x: x' = x̃ + M⁻¹ G(x)ᵀ λ, with λ solving g(x') = 0. Instead of SHAKE's
  one-constraint-at-a-time sweeps we solve for all multipliers of a cluster together by
  Newton's method (the matrix form, M-SHAKE: Kräutler, van Gunsteren & Hünenberger,
  J. Comput. Chem. 22, 501 (2001)); its Jacobian is 2 (C M⁻¹ Cᵀ) ⊙ (S Rᵀ), with S the
  current and R the reference bond vectors and C the constraint–atom incidence matrix.
  Convergence is quadratic: one SHAKE per BAOAB step takes 3 iterations to float64 round-off
  at 2 fs and 3–4 at 4 fs with 4 amu hydrogens (2 in float32; alanine dipeptide, 1024 walkers).
* **Velocities (RATTLE, Andersen, J. Comput. Phys. 52, 24 (1983)).** Velocities are
  projected onto the tangent space {v : G(x) v = 0} with the mass-weighted projection
  P = 1 − M⁻¹Gᵀ(G M⁻¹ Gᵀ)⁻¹G. It is linear, so one solve is exact (no iteration).

**Clusters.** The constraint graph splits into connected components — for ``HBonds`` a heavy
atom with its one to three hydrogens, for rigid water its three distances — and the matrices
are block diagonal over them. Components are grouped by their number of constraints b, and
each group is solved as one batch of b×b dense systems over all walkers and clusters at
once: closed form (cofactors) for b ≤ 3, batched LU above. Nothing loops over walkers or
constraints in Python; one step costs a few tens of tensor operations per group.

**Layout.** Inside the solver, bond vectors are stored component-major with the walkers
last, ``(3, b, n_clusters, n_walkers)``: every dot product over x, y, z is then a sum of
three contiguous slabs, where torch's reductions over a trailing axis of length 3 cost
several times more than the arithmetic.

The same P, applied to the O step's noise, is the constrained Ornstein–Uhlenbeck update of
Leimkuhler & Matthews (Proc. R. Soc. A 472, 20160138 (2016)): it leaves the Gaussian
velocity law restricted to the tangent space invariant.
"""

from __future__ import annotations

import weakref
from typing import Optional

import numpy as np
import torch

from ..systems.constraints import Constraints, constraints_of

__all__ = ["Constraints", "ConstraintSolver", "ConstraintError", "constraints_of", "constraint_solver",
           "DEFAULT_TOLERANCE"]

#: Relative bond-length tolerance |r − d|/d that SHAKE iterates to, per dtype. float64 reaches
#: this from any step that keeps bonds within a few per cent; float32 is limited by round-off
#: of positions of order 1 nm.
DEFAULT_TOLERANCE = {torch.float64: 1e-12, torch.float32: 2e-6}

#: Newton iterations before SHAKE gives up (it needs 3–4 from a sane step).
MAX_ITERATIONS = 50


class ConstraintError(RuntimeError):
    """SHAKE did not converge: some walker's step moved its constrained atoms too far.

    Attributes
    ----------
    walkers : list of int
        Batch indices of the walkers that did not converge.
    """

    def __init__(self, message: str, walkers=()):
        super().__init__(message)
        self.walkers = list(walkers)


#: Largest (3·slots × 3·atoms) for which a group's incidence matrix is kept dense: gathering
#: bond vectors and scattering corrections are then one matrix product each (GEMM reads the
#: positions through a transposed view, with no copy), several times faster than index
#: gathers for small molecules; above it, index gathers keep memory linear (water boxes).
DENSE_LIMIT = 200_000


class _Group:
    """The clusters with b constraints each, laid out for batched solves (tensors on one dtype/device).

    Slot (t, c) is constraint t of cluster c, flattened as t·n_clusters + c; a bond tensor is
    ``(3, b, n_clusters, n_walkers)``, row (xyz, t, c) of a ``(3·b·n_clusters, n_walkers)`` matrix.
    """

    def __init__(self, clusters: list[list[int]], constraints: Constraints, inv_m: np.ndarray, tensor):
        b, n_c = len(clusters[0]), len(clusters)
        n_atoms = inv_m.shape[0]
        index = np.array(clusters, dtype=np.int64).T.reshape(-1)             # (b·n_c,) slot -> constraint
        ai, aj = constraints.atoms[index, 0], constraints.atoms[index, 1]
        # coupling (C M⁻¹ Cᵀ)_kl = Σ_a C_ka C_la / m_a, with C = +1 at i, −1 at j
        si, sj = ai.reshape(b, n_c), aj.reshape(b, n_c)
        coupling = ((si[:, None] == si[None, :]) * inv_m[si][:, None] + (sj[:, None] == sj[None, :]) * inv_m[sj][:, None]
                    - (si[:, None] == sj[None, :]) * inv_m[si][:, None] - (sj[:, None] == si[None, :]) * inv_m[sj][:, None])
        d2 = constraints.distances[index].reshape(b, n_c) ** 2
        self.b, self.n_clusters = b, n_c
        # rows of the flattened (3·n_atoms) coordinates, in the bond tensor's (xyz, t, c) order
        rows_i = (3 * ai[None, :] + np.arange(3)[:, None]).reshape(-1)
        rows_j = (3 * aj[None, :] + np.arange(3)[:, None]).reshape(-1)
        n_rows = rows_i.shape[0]
        self.dense = n_rows * 3 * n_atoms <= DENSE_LIMIT
        if self.dense:
            gather = np.zeros((n_rows, 3 * n_atoms))
            gather[np.arange(n_rows), rows_i] += 1.0
            gather[np.arange(n_rows), rows_j] -= 1.0
            spread = np.zeros((n_rows, 3 * n_atoms))
            spread[np.arange(n_rows), rows_i] += inv_m[rows_i // 3]
            spread[np.arange(n_rows), rows_j] -= inv_m[rows_j // 3]
            self.gather = tensor(gather)                                     # (3·slots, 3·atoms)
            self.spread = tensor(spread)                                     # rows: M⁻¹Gᵀ per slot
        else:
            self.rows_i = tensor(rows_i, torch.long)
            self.rows_j = tensor(rows_j, torch.long)
            self.inv_m_i = tensor(inv_m[rows_i // 3].reshape(-1, 1))
            self.neg_inv_m_j = tensor(-inv_m[rows_j // 3].reshape(-1, 1))
        self.coupling = tensor(coupling[..., None])                          # (b, b, n_c, 1)
        self.coupling2 = tensor(2.0 * coupling[..., None])
        self.dist2 = tensor(d2[..., None])                                   # (b, n_c, 1)
        self.inv_dist2 = tensor(1.0 / d2[..., None])
        self.inv_dist = tensor(1.0 / np.sqrt(d2[..., None]))
        if b == 3:
            # cof[i, j] = m[i+1, j+1] m[i+2, j+2] − m[i+1, j+2] m[i+2, j+1] (indices mod 3)
            r1, r2 = (np.arange(3) + 1) % 3, (np.arange(3) + 2) % 3
            flat = [(ri[:, None] * 3 + cj[None, :]).reshape(-1) for ri, cj in ((r1, r1), (r2, r2), (r1, r2), (r2, r1))]
            self.cofactor_index = tensor(np.concatenate(flat), torch.long)

    def bonds(self, rows: torch.Tensor) -> torch.Tensor:
        """Bond vectors x_i − x_j, ``(3, b, n_clusters, n)``, from coordinates as rows ``(3·n_atoms, n)``."""
        if self.dense:
            r = torch.mm(self.gather, rows)
        else:
            r = rows.index_select(0, self.rows_i) - rows.index_select(0, self.rows_j)
        return r.view(3, self.b, self.n_clusters, -1)

    def solve(self, m: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        """Solve m μ = r for every cluster and walker: m ``(b, b, n_c, n)``, r ``(b, n_c, n)``.

        The blocks are small and well conditioned (G M⁻¹ Gᵀ of a few bonds sharing an atom,
        or the nearby Newton Jacobian), where cofactors are as accurate as LU, and batched LU
        on thousands of 3×3 systems costs several times more.
        """
        b = self.b
        if b == 1:
            return r / m[0]
        if b == 2:
            inv_det = 1.0 / (m[0, 0] * m[1, 1] - m[0, 1] * m[1, 0])
            return torch.stack((m[1, 1] * r[0] - m[0, 1] * r[1], m[0, 0] * r[1] - m[1, 0] * r[0])) * inv_det
        if b == 3:
            # cofactors from one gather of the flattened 3×3 (few large operations rather
            # than some forty small ones: at small N every operation's overhead counts)
            tail = m.shape[2:]
            g = m.reshape(9, *tail).index_select(0, self.cofactor_index).view(4, 9, *tail)
            cof = (g[0] * g[1]).sub_(g[2] * g[3]).view(3, 3, *tail)          # cof[i, j]
            det = (m[0] * cof[0]).sum(0)
            # (m⁻¹)_ji = cof_ij / det, so μ_j = Σ_i cof_ij r_i / det
            return (cof * r.unsqueeze(1)).sum(0).div_(det)
        out, _ = torch.linalg.solve_ex(m.permute(2, 3, 0, 1), r.permute(1, 2, 0).unsqueeze(-1))
        return out.squeeze(-1).permute(2, 0, 1).contiguous()

    def scatter(self, out: torch.Tensor, weights: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
        """out + M⁻¹ Gᵀ μ: ``out`` ``(n, 3·n_atoms)``, μ ``(b, n_c, n)`` along ``(3, b, n_c, n)``."""
        f = (weights * directions).view(3 * self.b * self.n_clusters, -1)
        if self.dense:
            return torch.addmm(out, f.t(), self.spread)
        rows = torch.zeros(out.shape[1], out.shape[0], dtype=out.dtype, device=out.device)
        rows.index_add_(0, self.rows_i, f * self.inv_m_i).index_add_(0, self.rows_j, f * self.neg_inv_m_j)
        return out + rows.t()


def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a · b over the leading xyz axis: ``(3, ...) -> (...)`` (a sum of three contiguous slabs)."""
    return (a * b).sum(0)


def _gram(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a_k · b_l for every pair of slots in a cluster: ``(3, b, n_c, n) × (3, b, n_c, n) -> (b, b, n_c, n)``."""
    return _dot(a.unsqueeze(2), b.unsqueeze(1))


def _combine(coupling: torch.Tensor, step: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """ΔS_k = Σ_l c_kl Δλ_l R_l: ``(b, b, n_c, 1) × (b, n_c, n) × (3, b, n_c, n) -> (3, b, n_c, n)``."""
    w = coupling * step.unsqueeze(0)                                         # (b, b, n_c, n): c_kl Δλ_l
    return (w.unsqueeze(0) * ref.unsqueeze(1)).sum(2)


class ConstraintSolver:
    """SHAKE/RATTLE for a fixed constraint set and masses, on one dtype and device.

    Parameters
    ----------
    constraints : Constraints
    masses : array_like, shape ``(n_atoms,)``
        Particle masses (amu); all constrained atoms must be massive.
    dtype : torch.dtype
    device : torch.device
    tolerance : float, optional
        Relative bond-length tolerance of SHAKE (default :data:`DEFAULT_TOLERANCE`).

    Attributes
    ----------
    cluster_sizes : dict[int, int]
        Number of clusters per cluster size b (constraints per cluster).
    """

    def __init__(self, constraints: Constraints, masses, dtype=torch.float64, device="cpu",
                 tolerance: Optional[float] = None):
        masses = np.asarray(masses, dtype=np.float64).reshape(-1)
        n_atoms = masses.shape[0]
        if len(constraints) == 0:
            raise ValueError("a ConstraintSolver needs at least one constraint")
        if constraints.atoms.max() >= n_atoms:
            raise ValueError(f"a constraint names atom {int(constraints.atoms.max())}, but there are {n_atoms} atoms")
        if np.any(masses[constraints.atoms] <= 0):
            raise ValueError("a constrained atom has zero mass; constraints need massive atoms")
        self.constraints = constraints
        self.n_atoms = n_atoms
        self.dtype = dtype
        self.device = torch.device(device)
        if tolerance is None:
            tolerance = DEFAULT_TOLERANCE.get(dtype, 1e-6)
        if not (isinstance(tolerance, (int, float)) and 0 < tolerance < 1):
            raise ValueError(f"tolerance must be a number in (0, 1), got {tolerance!r}")
        self.tolerance = float(tolerance)

        def tensor(a, dt=dtype):
            return torch.as_tensor(np.ascontiguousarray(a), dtype=dt, device=self.device)

        by_size: dict[int, list[list[int]]] = {}
        for cluster in constraints.components():
            by_size.setdefault(len(cluster), []).append(cluster)
        inv_m = 1.0 / np.where(masses > 0, masses, 1.0)
        self._groups = [_Group(by_size[b], constraints, inv_m, tensor) for b in sorted(by_size)]
        self.cluster_sizes = {b: len(by_size[b]) for b in sorted(by_size)}

    # ------------------------------------------------------------------ helpers
    def _check(self, x: torch.Tensor) -> None:
        if x.dtype != self.dtype or x.device != self.device:
            raise ValueError(f"this solver is for {self.dtype} on {self.device}, got {x.dtype} on {x.device}")
        if x.ndim != 3 or x.shape[1:] != (self.n_atoms, 3):
            raise ValueError(f"expected positions of shape (n_walkers, {self.n_atoms}, 3), got {tuple(x.shape)}")

    def _rows(self, x: torch.Tensor) -> torch.Tensor:
        """Coordinates ``(n, n_atoms, 3)`` as rows ``(3·n_atoms, n)``: a transposed view for the
        dense groups (the matrix product reads it as is), a contiguous copy for index gathers."""
        rows = x.reshape(x.shape[0], -1).t()
        return rows if all(g.dense for g in self._groups) else rows.contiguous()

    def _max_over_groups(self, per_group) -> torch.Tensor:
        """Per-walker maximum over every group's ``(b, n_c, n)`` values, shape ``(n,)``."""
        return torch.stack([v.flatten(0, 1).amax(0) for v in per_group]).amax(0)

    # ------------------------------------------------------------------ public operations
    def relative_violation(self, x: torch.Tensor) -> torch.Tensor:
        """max_k |r_k − d_k| / d_k per walker, shape ``(n_walkers,)``."""
        self._check(x)
        xt = self._rows(x)
        return self._max_over_groups([(_dot(r, r).sqrt() * grp.inv_dist - 1.0).abs()
                                      for grp in self._groups for r in (grp.bonds(xt),)])

    def velocity_violation(self, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """max_k |r̂_k · (v_i − v_j)| per walker, shape ``(n_walkers,)`` (velocity units)."""
        self._check(x)
        xt, vt = self._rows(x), self._rows(v)
        return self._max_over_groups([(_dot(grp.bonds(xt), grp.bonds(vt)) * grp.inv_dist).abs()
                                      for grp in self._groups])

    def project_velocities(self, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """RATTLE's velocity stage: the M-orthogonal projection of ``v`` onto the tangent space at ``x``.

        v ← v − M⁻¹Gᵀ μ with (G M⁻¹ Gᵀ) μ = G v, G the constraint gradients at ``x``.

        Parameters
        ----------
        x : torch.Tensor, shape ``(n_walkers, n_atoms, 3)``
            Positions on the constraint manifold (nm).
        v : torch.Tensor, same shape
            Velocities (or any vector field, e.g. forces/m or noise), nm/ps.

        Returns
        -------
        torch.Tensor, same shape: G(x) v = 0 up to round-off.
        """
        self._check(x)
        xt, vt = self._rows(x), self._rows(v)
        out = v.reshape(v.shape[0], -1)
        for grp in self._groups:
            r = grp.bonds(xt)
            mu = grp.solve(grp.coupling * _gram(r, r), _dot(r, grp.bonds(vt)))
            out = grp.scatter(out, -mu, r)
        return out.view(v.shape)

    def shake(self, x_ref: torch.Tensor, x_new: torch.Tensor) -> torch.Tensor:
        """SHAKE: move ``x_new`` back onto the manifold along the constraint directions at ``x_ref``.

        Solves g(x_new + M⁻¹G(x_ref)ᵀλ) = 0 for λ by Newton's method, every cluster size as
        one batch over all walkers and clusters, until every walker's relative bond-length
        error is below the tolerance. Each iteration checks convergence on the host (one
        sync; 3–4 iterations at 2–4 fs steps).

        Parameters
        ----------
        x_ref : torch.Tensor, shape ``(n_walkers, n_atoms, 3)``
            The constrained positions the unconstrained update started from (nm).
        x_new : torch.Tensor, same shape
            The unconstrained update (nm).

        Returns
        -------
        torch.Tensor, same shape
            Constrained positions.

        Raises
        ------
        ConstraintError
            When some walker has not converged after :data:`MAX_ITERATIONS` iterations.
        """
        self._check(x_ref)
        self._check(x_new)
        # Newton's method in bond space. x = x_new + M⁻¹G(x_ref)ᵀλ moves bond k by
        # Σ_l (C M⁻¹ Cᵀ)_kl λ_l R_l, which is linear in λ, so the current bonds S are updated
        # by the same products instead of being recomputed from positions, and the atoms
        # move once, at the end. g is quadratic in λ, so after a Newton step the residual is
        # exactly |ΔS_k|² (g + J·Δλ = 0 leaves only the quadratic term).
        rt, nt = self._rows(x_ref), self._rows(x_new)
        work = []
        for grp in self._groups:
            ref, cur = grp.bonds(rt), grp.bonds(nt)
            work.append([grp, ref, cur, _dot(cur, cur) - grp.dist2, None])
        active = list(work)
        for iteration in range(MAX_ITERATIONS):
            # no real step converges in one iteration (2 in float32, 3–4 in float64), so the
            # first skips its check and host sync; constrain_positions(x) may start converged
            check = iteration > 0 or x_ref is x_new
            errors = []
            for item in active:
                grp, ref, cur, g, lam = item
                step = grp.solve(grp.coupling2 * _gram(cur, ref), -g)
                delta = _combine(grp.coupling, step, ref)
                item[2] = cur + delta
                item[3] = g = _dot(delta, delta)
                item[4] = step if lam is None else lam + step
                if check:  # ½|r²/d² − 1| ≈ |r − d|/d
                    errors.append((g * grp.inv_dist2).amax())
            if not check:
                continue
            done = (torch.stack(errors) < 2.0 * self.tolerance).tolist()  # one host sync per iteration
            active = [item for item, ok in zip(active, done) if not ok]
            if not active:
                break
        out = x_new.reshape(x_new.shape[0], -1)
        for grp, ref, _, _, lam in work:
            out = grp.scatter(out, lam, ref)
        x = out.view(x_new.shape)
        if active:
            xt = self._rows(x)
            err = 0.5 * self._max_over_groups([((_dot(r, r) - grp.dist2) * grp.inv_dist2).abs()
                                               for grp in self._groups for r in (grp.bonds(xt),)])
            bad = torch.nonzero(~(err < self.tolerance)).flatten().tolist()
            raise ConstraintError(
                f"SHAKE did not reach relative tolerance {self.tolerance:g} in {MAX_ITERATIONS} iterations for "
                f"walkers {bad[:10]} (worst error {float(err.max()):.3g}); the step moved constrained atoms too "
                "far. Use a smaller timestep, or start from positions that satisfy the constraints.",
                walkers=bad,
            )
        return x

    def constrain_positions(self, x: torch.Tensor) -> torch.Tensor:
        """Put arbitrary positions on the manifold (SHAKE with ``x`` as its own reference)."""
        return self.shake(x, x)


_SOLVERS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def constraint_solver(system, like: torch.Tensor) -> Optional[ConstraintSolver]:
    """The system's :class:`ConstraintSolver` on ``like``'s dtype and device (cached), or None.

    Parameters
    ----------
    system : System
        A molecular system (event shape ``(n_atoms, 3)``) with constraints, or any system.
    like : torch.Tensor
        A tensor of the dtype and device to solve on.
    """
    if not getattr(system, "constrained", False):
        return None
    try:
        per_system = _SOLVERS.setdefault(system, {})
    except TypeError:  # not weak-referenceable: build without caching
        per_system = {}
    key = (like.dtype, like.device)
    solver = per_system.get(key)
    if solver is None:
        constraints = constraints_of(system)
        if constraints is None:
            return None
        if len(system.event_shape) != 2 or system.event_shape[1] != 3:
            raise ValueError(f"constraints need particles in 3D, event_shape (n, 3); got {system.event_shape}")
        solver = ConstraintSolver(constraints, system.masses, like.dtype, like.device)
        per_system[key] = solver
    return solver
