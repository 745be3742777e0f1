"""Prior terms of a CG model fitted by Boltzmann inversion of a mapped trajectory.

For a coordinate q with histogram p(q) in the mapped (bead) trajectory at temperature T, the
Boltzmann-inverted potential is U(q) = −kT ln p(q) + const (Reith, Pütz & Müller-Plathe 2003,
the first step of iterative Boltzmann inversion). Here:

* bond lengths and angles get a harmonic ½k(q − q₀)² with q₀ the mean and k = kT/Var(q), the
  exact inversion of a Gaussian histogram. Angles are not Jacobian-corrected (the sin θ
  factor): the term only needs to keep walkers in physical geometry, and force matching
  fits the network to the remainder of the mean force.
* each dihedral gets a Fourier series Σ_{n≤N} a_n cos nφ + b_n sin nφ, the weighted
  least-squares fit of −kT ln p(φ) over occupied bins (weights = counts).
* pairs joined neither by a bond nor an angle get ε (σ/r)⁶ with σ a low percentile of their
  observed distances, so it is negligible where data are and stiff where none were.

Because the network is then trained on the force residual (f − (−∇U_prior)), what the
prior gets wrong is learned; what it gets right need not be.
"""

from __future__ import annotations

import numpy as np
import torch

from ..systems.cg_terms import (CGPrior, bond_angles, bond_lengths, chain_terms, dihedral_angles,
                                nonbonded_pairs)


def _fourier_fit(phi: np.ndarray, kT: float, n_fourier: int, bins: int = 72) -> tuple[np.ndarray, np.ndarray]:
    counts, edges = np.histogram(phi, bins=bins, range=(-np.pi, np.pi))
    centres = 0.5 * (edges[1:] + edges[:-1])
    ok = counts > 0
    f = -kT * np.log(counts[ok] / counts.sum())
    n = np.arange(1, n_fourier + 1)
    basis = np.concatenate([np.ones((ok.sum(), 1)), np.cos(np.outer(centres[ok], n)),
                            np.sin(np.outer(centres[ok], n))], axis=1)
    w = np.sqrt(counts[ok].astype(np.float64))
    coef, *_ = np.linalg.lstsq(basis * w[:, None], f * w, rcond=None)
    return coef[1:1 + n_fourier], coef[1 + n_fourier:]


def boltzmann_inversion(R, kT: float, bonds=None, angles=None, dihedrals=None, n_fourier: int = 3,
                        repulsion_epsilon: float | None = None, repulsion_percentile: float = 0.5) -> CGPrior:
    """Fit a :class:`~langevin_md.systems.cg_terms.CGPrior` to mapped configurations.

    Parameters
    ----------
    R : array_like, shape ``(n_frames, n_beads, 3)``
        Bead positions (nm), e.g. ``CGMap.map_positions(positions)`` of an all-atom run.
    kT : float
        kJ/mol, the temperature of the trajectory.
    bonds, angles, dihedrals : int arrays ``(m, 2)``, ``(m, 3)``, ``(m, 4)``, optional
        Default: those of a linear chain of the beads (:func:`chain_terms`).
    n_fourier : int
        Terms of each dihedral's Fourier series (0: no dihedral prior).
    repulsion_epsilon : float, optional
        ε of the repulsion (default kT).
    repulsion_percentile : float
        σ of each pair is this percentile of its observed distances.

    Returns
    -------
    CGPrior
    """
    X = torch.as_tensor(np.asarray(R, dtype=np.float64))
    if X.ndim != 3 or X.shape[2] != 3 or X.shape[0] < 2 or X.shape[1] < 2:
        raise ValueError(f"R must have shape (n_frames >= 2, n_beads >= 2, 3), got {tuple(X.shape)}")
    if not torch.isfinite(X).all():
        raise ValueError("R contains NaN or infinite values")
    if not (isinstance(kT, (int, float)) and kT > 0):
        raise ValueError(f"kT must be a positive number (kJ/mol), got {kT!r}")
    if isinstance(n_fourier, bool) or not isinstance(n_fourier, int) or not 0 <= n_fourier <= 32:
        raise ValueError(f"n_fourier must be an integer in [0, 32], got {n_fourier!r}")
    n = X.shape[1]
    chain = chain_terms(n)
    bonds = chain["bonds"] if bonds is None else np.asarray(bonds, dtype=np.int64).reshape(-1, 2)
    angles = chain["angles"] if angles is None else np.asarray(angles, dtype=np.int64).reshape(-1, 3)
    dihedrals = chain["dihedrals"] if dihedrals is None else np.asarray(dihedrals, dtype=np.int64).reshape(-1, 4)
    # CGPrior validates the index arrays; build it once empty to get clear errors early
    probe = CGPrior(n, bonds, np.zeros(len(bonds)), np.zeros(len(bonds)), angles, np.zeros(len(angles)),
                    np.zeros(len(angles)), dihedrals, np.zeros((len(dihedrals), n_fourier)),
                    np.zeros((len(dihedrals), n_fourier)), np.zeros((0, 2), dtype=np.int64), np.zeros(0), 0.0)
    r = bond_lengths(X, probe.bonds).numpy()
    t = bond_angles(X, probe.angles).numpy()
    phi = dihedral_angles(X, probe.dihedrals).numpy()
    cos_c = np.zeros((len(dihedrals), n_fourier))
    sin_c = np.zeros((len(dihedrals), n_fourier))
    if n_fourier:
        for d in range(len(dihedrals)):
            cos_c[d], sin_c[d] = _fourier_fit(phi[:, d], float(kT), n_fourier)
    pairs = nonbonded_pairs(n, bonds, angles)
    sigma = (np.percentile(bond_lengths(X, torch.as_tensor(pairs)).numpy(), repulsion_percentile, axis=0)
             if len(pairs) else np.zeros(0))
    eps = float(kT) if repulsion_epsilon is None else float(repulsion_epsilon)
    return CGPrior(n, bonds, r.mean(0), float(kT) / r.var(0).clip(1e-12), angles, t.mean(0),
                   float(kT) / t.var(0).clip(1e-12), dihedrals, cos_c, sin_c, pairs, sigma, eps)
