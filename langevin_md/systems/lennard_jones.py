"""Lennard-Jones clusters: small many-body targets with known global minima."""

from __future__ import annotations

import math

import numpy as np
import torch

from .base import System, check_positive

# Putative global minima of LJ_N in units of ε (Wales & Doye, J. Phys. Chem. A 101, 5111
# (1997); the Cambridge Cluster Database).
LJ_GLOBAL_MINIMA = {
    2: -1.0, 3: -3.0, 4: -6.0, 5: -9.103852, 6: -12.712062, 7: -16.505384, 8: -19.821489,
    9: -24.113360, 10: -28.422532, 11: -32.765970, 12: -37.967600, 13: -44.326801,
    14: -47.845157, 15: -52.322627, 16: -56.815742, 17: -61.317995, 18: -66.530949,
    19: -72.659782, 20: -77.177043, 26: -108.315616, 38: -173.928427, 55: -279.248470,
}

_CONFINEMENTS = ("wall", "harmonic", "none")


class LennardJonesCluster(System):
    """A cluster of ``n_atoms`` Lennard-Jones particles, optionally confined.

    .. math::

        U(r) = \\sum_{i<j} 4ε\\big[(σ/r_{ij})^{12} − (σ/r_{ij})^{6}\\big] + U_\\text{conf}(r)

    with all pairs interacting (no cutoff) and ``event_shape = (n_atoms, 3)``. A free
    cluster evaporates at any kT > 0 given time, so by default a confinement keeps it
    together; both kinds act on distances from the centre of mass c = mean_i r_i (masses
    are equal) and so leave U invariant under translation and rotation:

    * ``"wall"`` (default): a flat-bottomed spherical wall,
      U_conf = (k/2) Σ_i max(|r_i − c| − R, 0)². It is exactly zero for compact
      configurations, so minima and :attr:`minimum_energy` are those of bare LJ.
    * ``"harmonic"``: U_conf = (k/2) Σ_i |r_i − c|², a weak spring on every atom; this
      shifts the minima slightly, and :attr:`minimum_energy` is then only approximate.
    * ``"none"``: bare LJ.

    Units are whatever ε and σ are in (reduced units by default; argon is ε = 0.996 kJ/mol,
    σ = 0.3405 nm). Masses are one per particle.

    Parameters
    ----------
    n_atoms : int
        Number of particles, ≥ 2.
    epsilon : float
        Well depth ε (energy), positive.
    sigma : float
        Length scale σ, positive; the pair minimum is at 2^{1/6} σ.
    kT : float
        Thermal energy, positive. The default 0.2 ε keeps LJ13 solid (it melts near 0.3 ε).
    confinement : {"wall", "harmonic", "none"}
        Kind of confinement, see above.
    confinement_stiffness : float, optional
        k (energy / length²); default 100 ε/σ² for the wall, 0.1 ε/σ² for the spring.
    confinement_radius : float, optional
        Wall radius R (length); default (0.6 N^{1/3} + 2) σ, about 2σ beyond the radius
        of a close-packed cluster of N atoms.
    """

    def __init__(self, n_atoms: int, epsilon: float = 1.0, sigma: float = 1.0, kT: float = 0.2,
                 confinement: str = "wall", confinement_stiffness=None, confinement_radius=None):
        if isinstance(n_atoms, bool) or not isinstance(n_atoms, (int, np.integer)) or n_atoms < 2:
            raise ValueError(f"n_atoms must be an integer >= 2, got {n_atoms!r}")
        self.n_atoms = int(n_atoms)
        self.epsilon = check_positive("epsilon", epsilon)
        self.sigma = check_positive("sigma", sigma)
        self.kT = check_positive("kT", kT)
        if confinement not in _CONFINEMENTS:
            raise ValueError(f"confinement must be one of {_CONFINEMENTS}, got {confinement!r}")
        self.confinement = confinement
        default_k = {"wall": 100.0, "harmonic": 0.1, "none": 0.0}[confinement] * self.epsilon / self.sigma**2
        self.confinement_stiffness = (default_k if confinement_stiffness is None
                                      else check_positive("confinement_stiffness", confinement_stiffness))
        default_r = (0.6 * self.n_atoms ** (1.0 / 3.0) + 2.0) * self.sigma
        self.confinement_radius = (default_r if confinement_radius is None
                                   else check_positive("confinement_radius", confinement_radius))
        self.event_shape = (self.n_atoms, 3)
        self.masses = np.ones(self.n_atoms)
        self._cache: dict = {}

    # ----------------------------------------------------------------- energy and forces
    def _params(self, x):
        key = (x.dtype, x.device)
        p = self._cache.get(key)
        if p is None:
            i, j = torch.triu_indices(self.n_atoms, self.n_atoms, offset=1, device=x.device)
            p = (i, j)
            self._cache[key] = p
        return p

    def _energy_and_forces(self, x):
        i, j = self._params(x)
        eps, sig2 = self.epsilon, self.sigma**2
        rij = x[:, i, :] - x[:, j, :]  # (n, P, 3)
        r2 = (rij * rij).sum(-1)
        s6 = (sig2 / r2) ** 3
        energy = (4.0 * eps) * (s6 * s6 - s6).sum(-1)
        # F_i = −dU/dr_ij · r_ij/r = 24ε (2 s¹² − s⁶)/r² · r_ij, and F_j = −F_i.
        fpair = ((24.0 * eps) * (2.0 * s6 * s6 - s6) / r2)[..., None] * rij
        forces = torch.zeros_like(x)
        forces = forces.index_add(1, i, fpair).index_add(1, j, -fpair)
        if self.confinement != "none":
            e_c, f_c = self._confinement(x)
            energy = energy + e_c
            forces = forces + f_c
        return energy, forces

    def _confinement(self, x):
        k = self.confinement_stiffness
        d = x - x.mean(dim=1, keepdim=True)
        if self.confinement == "harmonic":
            g = -k * d  # −∂U/∂d_i; the −1/N Σ g term vanishes because Σ_i d_i = 0
            return 0.5 * k * (d * d).sum((-1, -2)), g
        r = torch.sqrt((d * d).sum(-1))
        excess = torch.clamp(r - self.confinement_radius, min=0.0)
        # ∂U/∂d_i = k·excess_i·d_i/r_i; the centre of mass moves with every atom, so the
        # force on atom m is −g_m + mean_i g_i (total wall force is zero).
        g = (k * excess / torch.where(r > 0, r, torch.ones_like(r)))[..., None] * d
        return 0.5 * k * (excess * excess).sum(-1), -g + g.mean(dim=1, keepdim=True)

    # ----------------------------------------------------------------- known answers
    @property
    def minimum_energy(self):
        """Putative global-minimum energy (ε·value from :data:`LJ_GLOBAL_MINIMA`), or None.

        Exact for the bare LJ energy and for the wall confinement (zero at the minimum);
        only approximate with the harmonic confinement.
        """
        v = LJ_GLOBAL_MINIMA.get(self.n_atoms)
        return None if v is None else v * self.epsilon

    def reference_structure(self) -> np.ndarray:
        """A compact starting structure built with ASE, centred at the origin.

        For N = 13, 55, 147, … the complete Mackay icosahedron
        (``ase.cluster.Icosahedron``). Otherwise the N atoms of the smallest icosahedron
        holding at least N that lie nearest a point halfway between its centre and the
        centroid of a face of its inner 12-atom shell: an off-centre cut is more compact
        than a centred one (for 4 ≤ N ≤ 12 it relaxes to the global minimum except at
        N = 6, 7). Coordinates are centred and scaled so that the shortest interatomic
        distance is 2^{1/6} σ, the pair minimum.

        Returns
        -------
        numpy.ndarray, shape ``(n_atoms, 3)``, float64, in units of σ's length unit.
        """
        from ase.cluster import Icosahedron

        shells, size = 1, 1
        while size < self.n_atoms:
            shells += 1
            size = (10 * shells**3 - 15 * shells**2 + 11 * shells - 3) // 3
        pos = Icosahedron("Ar", shells).get_positions()
        pos = pos - pos.mean(0)
        centre = np.zeros(3)
        if size != self.n_atoms:
            inner = pos[np.argsort(np.linalg.norm(pos, axis=1), kind="stable")[1:13]]
            d = np.linalg.norm(inner[:, None] - inner[None], axis=-1)
            adjacent = np.abs(d - d[d > 0].min()) < 1e-6 * d[d > 0].min()
            j = int(np.flatnonzero(adjacent[0])[0])
            k = int(next(k for k in np.flatnonzero(adjacent[0]) if adjacent[j, k]))
            centre = 0.5 * (inner[0] + inner[j] + inner[k]) / 3.0
        order = np.argsort(np.linalg.norm(pos - centre, axis=1), kind="stable")
        pos = pos[order[: self.n_atoms]]
        pos = pos - pos.mean(0)
        diff = pos[:, None, :] - pos[None, :, :]
        dist = np.sqrt((diff**2).sum(-1))
        dmin = dist[np.triu_indices(self.n_atoms, 1)].min()
        return pos * (2.0 ** (1.0 / 6.0) * self.sigma / dmin)

    def initial_positions(self, n_walkers, generator):
        """:meth:`reference_structure` plus independent N(0, (0.02 σ)²) noise per coordinate.

        Returns
        -------
        torch.Tensor, shape ``(n_walkers, n_atoms, 3)``, float64 on the CPU.
        """
        ref = torch.as_tensor(self.reference_structure())
        return ref + 0.02 * self.sigma * generator.normal(self.event_shape, dtype=torch.float64).cpu()

    def minimize(self, positions) -> tuple[np.ndarray, float]:
        """Local minimisation (L-BFGS, gradient tolerance 1e-8) with this system's forces.

        Parameters
        ----------
        positions : array_like, shape ``(n_atoms, 3)``

        Returns
        -------
        positions : numpy.ndarray, shape ``(n_atoms, 3)``
        energy : float
        """
        from scipy.optimize import minimize

        x0 = np.asarray(positions, dtype=np.float64)
        if x0.shape != self.event_shape:
            raise ValueError(f"positions must have shape {self.event_shape}, got {x0.shape}")

        def fun(flat):
            e, f = self.energy_and_forces(torch.as_tensor(flat.reshape(1, *self.event_shape)))
            return float(e[0]), -f[0].numpy().ravel()

        res = minimize(fun, x0.ravel(), jac=True, method="L-BFGS-B",
                       options={"gtol": 1e-8, "ftol": 1e-15, "maxiter": 10_000})
        return res.x.reshape(self.event_shape), float(res.fun)

    def __repr__(self):
        return (f"LennardJonesCluster(n_atoms={self.n_atoms}, epsilon={self.epsilon:g}, sigma={self.sigma:g}, "
                f"kT={self.kT:g}, confinement={self.confinement!r})")
