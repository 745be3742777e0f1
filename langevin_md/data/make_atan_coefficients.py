"""Regenerate the polynomial of :func:`langevin_md.forcefield.fused.bonded.angle_of`.

atan(u)/u is fitted by Σₖ cₖ u²ᵏ (k = 0…12) on |u| ≤ tan(π/8): least squares with relative
weight on 400 Chebyshev nodes in u², in 50-digit arithmetic (mpmath, which torch's sympy
brings). It prints the coefficients (``bonded._ATAN``) and the largest error of their float64
Horner evaluation against atan on 4,001 points, in ulp (1.01 for the shipped set).

Run ``python langevin_md/data/make_atan_coefficients.py``.
"""

from __future__ import annotations

import mpmath as mp
import numpy as np

N_COEFFICIENTS = 13
N_NODES = 400


def fit() -> list[float]:
    mp.mp.dps = 50
    a2 = (mp.sqrt(2) - 1) ** 2  # tan²(π/8)
    nodes = [a2 * (1 - mp.cos(mp.pi * (i + 0.5) / N_NODES)) / 2 for i in range(N_NODES)]
    design, target = mp.matrix(N_NODES, N_COEFFICIENTS), mp.matrix(N_NODES, 1)
    for i, s in enumerate(nodes):
        t = mp.sqrt(s)
        value = mp.atan(t) / t
        for k in range(N_COEFFICIENTS):
            design[i, k] = s**k / value  # relative error: divide each row by the target value
        target[i] = 1
    c = mp.lu_solve(design.T * design, design.T * target)
    return [float(c[k]) for k in range(N_COEFFICIENTS)]


def max_ulp(coefficients: list[float]) -> float:
    u = np.linspace(-float(mp.sqrt(2) - 1), float(mp.sqrt(2) - 1), 4001)
    p = np.zeros_like(u)
    for c in reversed(coefficients):
        p = p * (u * u) + c
    exact = np.array([float(mp.atan(mp.mpf(v))) for v in u])
    nonzero = exact != 0
    return float(np.max(np.abs(u * p - exact)[nonzero] / np.spacing(np.abs(exact[nonzero]))))


if __name__ == "__main__":
    coefficients = fit()
    print(repr(tuple(coefficients)))
    print(f"max error {max_ulp(coefficients):.2f} ulp")
