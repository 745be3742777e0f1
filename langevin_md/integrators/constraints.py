"""Holonomic distance constraints on batched walkers: SHAKE on positions, RATTLE on velocities.

A constraint k holds atoms ``i_k`` and ``j_k`` at distance ``d_k``:
g_k(x) = |x_i − x_j|² − d_k² = 0. Its gradient row G_k has +r_k at atom i and −r_k at atom j
(r_k = x_i − x_j, a factor 2 absorbed into the multipliers).

* **Positions (SHAKE, Ryckaert, Ciccotti & Berendsen, J. Comput. Phys. 23, 327 (1977)).**
  An unconstrained update x̃ from a constrained x is corrected along the constraint
  directions at x: x' = x̃ + M⁻¹ G(x)ᵀ λ, with λ solving g(x') = 0. Instead of SHAKE's
  one-constraint-at-a-time sweeps we solve for all multipliers together by Newton's method
  on the coupled system (the matrix form, M-SHAKE: Kräutler, van Gunsteren & Hünenberger,
  J. Comput. Chem. 22, 501 (2001)); its Jacobian is 2 (C M⁻¹ Cᵀ) ⊙ (S Rᵀ), with S the
  current and R the reference bond vectors and C the constraint–atom incidence matrix.
  Convergence is quadratic: from a 2–4 fs step, 3–5 iterations reach float64 round-off,
  which is why this beats iterated SHAKE for the coupled CH₃/NH₃ groups of ``HBonds``.
* **Velocities (RATTLE, Andersen, J. Comput. Phys. 52, 24 (1983)).** Velocities are
  projected onto the tangent space {v : G(x) v = 0} with the mass-weighted projection
  P = 1 − M⁻¹Gᵀ(G M⁻¹ Gᵀ)⁻¹G. It is linear, so one solve is exact (no iteration).

The constraint graph splits into connected components (a heavy atom and its hydrogens, or one
rigid water), and the matrices are block diagonal over them. Blocks are padded to the largest
component, so every solve is a batch of small dense systems ``(n_walkers, n_blocks, b, b)``
over all walkers at once, on CPU or CUDA, with no Python loop over walkers or constraints.

The same P, applied to the O step's noise, is the constrained Ornstein–Uhlenbeck update of
Leimkuhler & Matthews (Proc. R. Soc. A 472, 20160138 (2016)): it leaves the Gaussian
velocity law restricted to the tangent space invariant.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch

__all__ = ["Constraints", "ConstraintSolver", "ConstraintError", "constraints_of", "constraint_solver",
           "DEFAULT_TOLERANCE"]

#: Relative bond-length tolerance |r − d|/d that SHAKE iterates to, per dtype. float64 reaches
#: this from any step that keeps bonds within a few per cent; float32 is limited by round-off
#: of positions of order 1 nm.
DEFAULT_TOLERANCE = {torch.float64: 1e-12, torch.float32: 2e-6}

#: Newton iterations before SHAKE gives up (it needs 2–3 from a sane step).
MAX_ITERATIONS = 50

#: Largest (constraint slots × atoms) for which the incidence matrix is kept dense.
DENSE_LIMIT = 200_000


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


@dataclass(frozen=True)
class Constraints:
    """A set of distance constraints (numpy, host side).

    Attributes
    ----------
    atoms : numpy.ndarray, int64, shape ``(n_constraints, 2)``
        The two atoms of each constraint.
    distances : numpy.ndarray, float64, shape ``(n_constraints,)``
        Constrained distances (nm for molecules).
    """

    atoms: np.ndarray
    distances: np.ndarray

    def __post_init__(self):
        atoms = np.asarray(self.atoms, dtype=np.int64).reshape(-1, 2)
        distances = np.asarray(self.distances, dtype=np.float64).reshape(-1)
        if atoms.shape[0] != distances.shape[0]:
            raise ValueError(f"constraints have {atoms.shape[0]} atom pairs but {distances.shape[0]} distances")
        if np.any(atoms < 0):
            raise ValueError(f"constraint atom indices must be non-negative, got {atoms[atoms.min(1) < 0][:5].tolist()}")
        if np.any(atoms[:, 0] == atoms[:, 1]):
            raise ValueError("a constraint joins an atom to itself")
        if np.any(~np.isfinite(distances)) or np.any(distances <= 0):
            raise ValueError(f"constraint distances must be finite and positive, got {distances[:5].tolist()} ...")
        object.__setattr__(self, "atoms", atoms)
        object.__setattr__(self, "distances", distances)

    def __len__(self) -> int:
        return int(self.distances.shape[0])

    @classmethod
    def from_openmm(cls, openmm_system) -> "Constraints":
        """The constraints of an ``openmm.System`` (distances in nm)."""
        from ..units import strip

        n = openmm_system.getNumConstraints()
        atoms = np.zeros((n, 2), dtype=np.int64)
        distances = np.zeros(n, dtype=np.float64)
        for k in range(n):
            i, j, d = openmm_system.getConstraintParameters(k)
            atoms[k] = (i, j)
            distances[k] = strip(d, "nanometer")
        return cls(atoms, distances)

    def components(self) -> list[list[int]]:
        """Constraint indices grouped by connected component of the constraint graph."""
        parent: dict[int, int] = {}

        def find(a: int) -> int:
            parent.setdefault(a, a)
            while parent[a] != a:
                parent[a] = parent[parent[a]]
                a = parent[a]
            return a

        for i, j in self.atoms.tolist():
            ri, rj = find(i), find(j)
            if ri != rj:
                parent[ri] = rj
        groups: dict[int, list[int]] = {}
        for k, (i, _) in enumerate(self.atoms.tolist()):
            groups.setdefault(find(i), []).append(k)
        return list(groups.values())


def constraints_of(system) -> Optional[Constraints]:
    """The distance constraints of a system, or None when it has none.

    Read from, in order: a ``constraints`` attribute holding :class:`Constraints` (the torch
    force field carries the ``openmm.System``'s list), an ``openmm_system`` attribute (the
    OpenMM bridge), or the first term of a sum that has either. So OpenMM and the torch
    executor see the same constraints: the ``openmm.System``'s.
    """
    c = getattr(system, "constraints", None)
    if isinstance(c, Constraints):
        return c if len(c) else None
    omm = getattr(system, "openmm_system", None)
    if omm is not None and hasattr(omm, "getNumConstraints"):
        return Constraints.from_openmm(omm) if omm.getNumConstraints() else None
    for _, term in getattr(system, "terms", ()):
        found = constraints_of(term)
        if found is not None:
            return found
    if getattr(system, "constrained", False):
        raise ValueError(
            f"{type(system).__name__} says it is constrained but exposes no constraint list (a "
            "`constraints` attribute of type Constraints, or an `openmm_system`), so the torch "
            "executor cannot enforce its constraints; give it one, or run an OpenMM system with "
            "backend='openmm'"
        )
    return None


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

        groups = constraints.components()
        size = max(len(g) for g in groups)
        n_blocks = len(groups)
        k_total = len(constraints)
        # block layout: slot (b, s) holds constraint index[b, s]; padded slots point at a dummy
        # constraint k_total and are masked out of the matrices (identity there instead)
        index = np.full((n_blocks, size), k_total, dtype=np.int64)
        for b, g in enumerate(groups):
            index[b, :len(g)] = g
        valid = index < k_total
        inv_m = 1.0 / masses
        ai, aj = constraints.atoms[:, 0], constraints.atoms[:, 1]
        # coupling (C M⁻¹ Cᵀ)_kl = Σ_a C_ka C_la / m_a, with C = +1 at i, −1 at j
        coupling = np.zeros((n_blocks, size, size))
        for b, g in enumerate(groups):
            for s, k in enumerate(g):
                for t, l in enumerate(g):
                    c = 0.0
                    for a, sa in ((ai[k], 1.0), (aj[k], -1.0)):
                        for bb, sb in ((ai[l], 1.0), (aj[l], -1.0)):
                            if a == bb:
                                c += sa * sb * inv_m[a]
                    coupling[b, s, t] = c
        pad_eye = np.zeros((n_blocks, size, size))
        for b in range(n_blocks):
            for s in range(size):
                if not valid[b, s]:
                    pad_eye[b, s, s] = 1.0
        # per-slot atom indices (padding points at atom 0 with zero weight)
        safe = np.where(valid, index, 0)
        slot_i = np.where(valid, ai[safe], 0)
        slot_j = np.where(valid, aj[safe], 0)
        # padded slots get d² = 0 and 1/d² = 0: their bond vector is x_0 − x_0 = 0, so their
        # residual g = |0|² − 0 vanishes and the padded identity rows give zero multipliers,
        # which keeps masks out of the hot path
        dist2 = np.where(valid, constraints.distances[safe] ** 2, 0.0)
        inv_dist2 = np.where(valid, 1.0 / np.where(valid, dist2, 1.0), 0.0)

        def t(a, dt=dtype):
            return torch.as_tensor(a, dtype=dt, device=self.device)

        self.n_blocks, self.block_size = n_blocks, size
        n_slots = n_blocks * size
        self._flat_i = t(slot_i.reshape(-1), torch.long)
        self._flat_j = t(slot_j.reshape(-1), torch.long)
        self._mask = t(valid.astype(np.float64))                    # (B, s)
        self._coupling = t(coupling)                                # (B, s, s), zero on padding
        self._pad_eye = t(pad_eye)                                  # (B, s, s)
        self._dist2 = t(dist2)                                      # (B, s)
        self._inv_dist2 = t(inv_dist2)                              # (B, s)
        self._inv_m = t(inv_m)                                      # (n_atoms,)
        # For small molecules the incidence matrix C (slots × atoms, +1 at i, −1 at j) and
        # M⁻¹Cᵀ are small dense matrices, and one batched matmul beats gathers and
        # scatters; for large systems (many waters) the index path keeps memory linear.
        self._dense = n_slots * n_atoms <= DENSE_LIMIT
        if self._dense:
            inc = np.zeros((n_slots, n_atoms))
            flat_valid = valid.reshape(-1)
            rows = np.nonzero(flat_valid)[0]
            inc[rows, slot_i.reshape(-1)[rows]] += 1.0
            inc[rows, slot_j.reshape(-1)[rows]] -= 1.0
            self._incidence = t(inc)                                # (slots, atoms)
            self._spread = t(inc.T * inv_m[:, None])                # (atoms, slots) = M⁻¹Cᵀ

    # ------------------------------------------------------------------ helpers
    def _bonds(self, x: torch.Tensor) -> torch.Tensor:
        """Bond vectors x_i − x_j per slot, shape ``(n, B, s, 3)`` (zero on padded slots)."""
        n = x.shape[0]
        if self._dense:
            # einsum lowers to one (slots × atoms)·(atoms × 3n) product; a broadcast matmul
            # would become n tiny batched products, several times slower
            r = torch.einsum("sa,nac->nsc", self._incidence, x)
        else:
            r = x[:, self._flat_i] - x[:, self._flat_j]
            r = r * self._mask.reshape(1, -1, 1)
        return r.reshape(n, self.n_blocks, self.block_size, 3)

    def _scatter(self, weights: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
        """M⁻¹ Gᵀ μ: displacement ``(n, n_atoms, 3)`` from multipliers ``(n, B, s)`` along ``(n, B, s, 3)``."""
        n = weights.shape[0]
        f = (weights.unsqueeze(-1) * directions).reshape(n, -1, 3)
        if self._dense:
            return torch.einsum("as,nsc->nac", self._spread, f)
        out = torch.zeros(n, self.n_atoms, 3, dtype=f.dtype, device=f.device)
        out = out.index_add(1, self._flat_i, f).index_add(1, self._flat_j, -f)
        return out * self._inv_m.unsqueeze(-1)

    def _solve(self, mat: torch.Tensor, rhs: torch.Tensor) -> torch.Tensor:
        """Batched (n, B, s, s) · μ = (n, B, s); padded slots have identity rows and zero rhs."""
        mat = mat + self._pad_eye
        if self.block_size <= 3:
            return _solve_small(mat, rhs)
        out, _ = torch.linalg.solve_ex(mat, rhs.unsqueeze(-1))
        return out.squeeze(-1)

    def _check(self, x: torch.Tensor) -> None:
        if x.dtype != self.dtype or x.device != self.device:
            raise ValueError(f"this solver is for {self.dtype} on {self.device}, got {x.dtype} on {x.device}")
        if x.ndim != 3 or x.shape[1:] != (self.n_atoms, 3):
            raise ValueError(f"expected positions of shape (n_walkers, {self.n_atoms}, 3), got {tuple(x.shape)}")

    # ------------------------------------------------------------------ public operations
    def relative_violation(self, x: torch.Tensor) -> torch.Tensor:
        """max_k |r_k − d_k| / d_k per walker, shape ``(n_walkers,)``."""
        self._check(x)
        r = self._bonds(x).norm(dim=-1)
        return ((r * self._inv_dist2.sqrt() - 1.0).abs() * self._mask).flatten(1).amax(1)

    def velocity_violation(self, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """max_k |r̂_k · (v_i − v_j)| per walker, shape ``(n_walkers,)`` (velocity units)."""
        self._check(x)
        r = self._bonds(x)
        along = _dot(r, self._bonds(v)) * self._inv_dist2.sqrt()
        return along.abs().flatten(1).amax(1)

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
        r = self._bonds(x)
        rhs = _dot(r, self._bonds(v))                                  # (n, B, s)
        mu = self._solve(self._coupling * _gram(r, r), rhs)
        return v - self._scatter(mu, r)

    def shake(self, x_ref: torch.Tensor, x_new: torch.Tensor) -> torch.Tensor:
        """SHAKE: move ``x_new`` back onto the manifold along the constraint directions at ``x_ref``.

        Solves g(x_new + M⁻¹G(x_ref)ᵀλ) = 0 for λ by Newton's method, all walkers at once,
        until every walker's relative bond-length error is below the tolerance. Each
        iteration checks convergence on the host (one sync; 2–3 iterations per drift at
        2–4 fs steps).

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
        ref = self._bonds(x_ref)                                             # (n, B, s, 3)
        cur = self._bonds(x_new)
        g = _dot(cur, cur) - self._dist2
        lam = torch.zeros_like(g)
        coupling2 = 2.0 * self._coupling
        for _ in range(MAX_ITERATIONS):
            step = self._solve(coupling2 * _gram(cur, ref), -g)
            delta = torch.matmul(self._coupling * step.unsqueeze(-2), ref)  # ΔS_k = Σ_l c_kl Δλ_l R_l
            lam = lam + step
            cur = cur + delta
            g = _dot(delta, delta)
            # ½|r²/d² − 1| ≈ |r − d|/d; one host sync per iteration (2 per drift at 2–4 fs)
            if float((g * self._inv_dist2).max()) < 2.0 * self.tolerance:
                return x_new + self._scatter(lam, ref)
        x = x_new + self._scatter(lam, ref)
        err = 0.5 * (((self._bonds(x) ** 2).sum(-1) - self._dist2) * self._inv_dist2).abs().flatten(1).amax(1)
        bad = torch.nonzero(~(err < self.tolerance)).flatten().tolist()
        raise ConstraintError(
            f"SHAKE did not reach relative tolerance {self.tolerance:g} in {MAX_ITERATIONS} iterations for "
            f"walkers {bad[:10]} (worst error {float(err.max()):.3g}); the step moved constrained atoms too "
            "far. Use a smaller timestep, or start from positions that satisfy the constraints.",
            walkers=bad,
        )

    def constrain_positions(self, x: torch.Tensor) -> torch.Tensor:
        """Put arbitrary positions on the manifold (SHAKE with ``x`` as its own reference)."""
        return self.shake(x, x)


def _gram(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a_s · b_t for every pair of slots in a block: ``(n, B, s, 3) × (n, B, s, 3) -> (n, B, s, s)``."""
    return torch.matmul(a, b.transpose(-1, -2))


def _solve_small(m: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """Solve ``m x = r`` for blocks of size 1–3 in closed form (cofactors), elementwise.

    The blocks here are small, symmetric positive definite and well conditioned (G M⁻¹ Gᵀ of a
    few bonds sharing an atom, or the nearby Newton Jacobian), where Cramer's rule is as
    accurate as LU; batched LU on thousands of 3×3 systems costs several times more.
    """
    size = m.shape[-1]
    if size == 1:
        return r / m[..., 0]
    if size == 2:
        a, b, c, d = m[..., 0, 0], m[..., 0, 1], m[..., 1, 0], m[..., 1, 1]
        inv_det = 1.0 / (a * d - b * c)
        r0, r1 = r[..., 0], r[..., 1]
        return torch.stack(((d * r0 - b * r1) * inv_det, (a * r1 - c * r0) * inv_det), -1)
    m00, m01, m02 = m[..., 0, 0], m[..., 0, 1], m[..., 0, 2]
    m10, m11, m12 = m[..., 1, 0], m[..., 1, 1], m[..., 1, 2]
    m20, m21, m22 = m[..., 2, 0], m[..., 2, 1], m[..., 2, 2]
    c00, c01, c02 = m11 * m22 - m12 * m21, m12 * m20 - m10 * m22, m10 * m21 - m11 * m20
    inv_det = 1.0 / (m00 * c00 + m01 * c01 + m02 * c02)
    r0, r1, r2 = r[..., 0], r[..., 1], r[..., 2]
    x0 = r0 * c00 + r1 * (m02 * m21 - m01 * m22) + r2 * (m01 * m12 - m02 * m11)
    x1 = r0 * c01 + r1 * (m00 * m22 - m02 * m20) + r2 * (m02 * m10 - m00 * m12)
    x2 = r0 * c02 + r1 * (m01 * m20 - m00 * m21) + r2 * (m00 * m11 - m01 * m10)
    return torch.stack((x0, x1, x2), -1) * inv_det.unsqueeze(-1)


def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a · b over the last axis of length 3, written out: torch's reductions over such a short
    axis are several times slower than three products and two sums."""
    return a[..., 0] * b[..., 0] + a[..., 1] * b[..., 1] + a[..., 2] * b[..., 2]


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
