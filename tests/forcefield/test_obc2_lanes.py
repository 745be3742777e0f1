"""The OBC2 lanes kernel (walkers innermost) against the torch term, and blocking-independent.

``obc2.accumulate_lanes`` on ``(n_blocks, n_atoms, 3, B)`` blocks must give the torch
``CustomGBTerm``'s energies and forces to rounding, and exactly the same numbers for block
sizes 1, 7 (odd: vector remainder loops) and 64, serial and parallel, in float64 and float32. The walkers include close contacts that reach every branch of the Born integral:
inactive pairs (r + sⱼ < ρᵢ), L = ρᵢ, L = r − sⱼ and L = sⱼ − r.
"""

from __future__ import annotations

import numpy as np
import pytest

import torch

from langevin_md.forcefield.fused import obc2
from langevin_md.forcefield.fused.lanes import from_lanes, to_lanes
from langevin_md.forcefield.module import ForceFieldModule
from langevin_md.systems import TorchForceField
from tests.forcefield.helpers import configurations, create_system

pytest.importorskip("openmm")
pytest.importorskip("numba")


@pytest.fixture(scope="module")
def obc2_walkers():
    """(the OBC2 term of alanine dipeptide, walkers (23, 22, 3) nm float64)."""
    system, _, positions = create_system("alanine", ("amber14-all.xml", "implicit/obc2.xml"))
    ff = TorchForceField.from_openmm(system, temperature=300.0)
    (term,) = [t for t in ff.module.terms if obc2.is_fusable(t)]
    params = obc2.pack(term, np.float64)
    x = np.concatenate([configurations(positions, 12, 0.01, seed=11), configurations(positions, 8, 0.05, seed=12)])
    # close contacts: a hydrogen (smallest ρ) moved onto an oxygen (largest s): at 0.004 nm its
    # L = sⱼ − r (> ρᵢ) and the oxygen's term is inactive; at 0.03 nm its L = ρᵢ
    h, o = int(np.argmin(params.offset_radius)), int(np.argmax(params.scaled_radius))
    contacts = []
    for r in (0.004, 0.03):
        c = positions.copy()
        c[h] = c[o] + r * np.array([0.6, 0.0, 0.8])
        contacts.append(c)
    return term, np.concatenate([x, np.array(contacts)])


def _branches(x: np.ndarray, params) -> set:
    """Which branches of the Born integral the ordered pairs (i from j) of ``x`` reach."""
    r = np.linalg.norm(x[:, :, None] - x[:, None, :], axis=-1)
    rho, s = params.offset_radius[:, None], params.scaled_radius[None, :]
    off = ~np.eye(x.shape[1], dtype=bool)
    inactive = (r + s - rho < 0) & off
    active = ~inactive & off
    out = set()
    out |= {"inactive"} if inactive.any() else set()
    out |= {"L=rho"} if (active & (np.abs(r - s) <= rho)).any() else set()
    out |= {"L=r-s"} if (active & (r - s > rho)).any() else set()
    out |= {"L=s-r"} if (active & (s - r > rho)).any() else set()
    return out


def _lanes_result(x: np.ndarray, params, block: int, f0: np.ndarray, e0: np.ndarray):
    """(E (n,), F (n, A, 3)) of accumulate_lanes added into ``e0``, ``f0``, blocks of ``block`` lanes."""
    n = x.shape[0]
    X, F = to_lanes(x, block), to_lanes(f0, block)
    E = to_lanes(e0[:, None, None], block)[:, 0, 0].copy()
    obc2.accumulate_lanes(X, F, E, params, parallel=False)
    return E.reshape(-1)[:n], from_lanes(F, n)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_lanes_agree_with_the_torch_term_and_not_with_blocking(obc2_walkers, dtype):
    term, x64 = obc2_walkers
    params = obc2.pack(term, dtype)
    assert _branches(x64, params) == {"inactive", "L=rho", "L=r-s", "L=s-r"}
    x = x64.astype(dtype)
    n = x.shape[0]
    f0 = np.random.default_rng(0).standard_normal(x.shape).astype(dtype)  # results add into what is there
    e0 = np.linspace(-1.0, 1.0, n).astype(dtype)
    results = {block: _lanes_result(x, params, block, f0, e0) for block in (1, 7, 64)}
    e, f = results[1]
    assert e.dtype == dtype and f.dtype == dtype and np.isfinite(f).all()
    for block in (7, 64):  # the layout changes speed, not numbers
        assert np.array_equal(results[block][0], e) and np.array_equal(results[block][1], f)
    # the differentiable torch term (CustomGBTerm) is the reference, in float64
    e_ref, f_ref = ForceFieldModule([term], x.shape[1])(torch.from_numpy(x64))
    e_ref, f_ref = e_ref.numpy() + e0, f_ref.numpy() + f0
    tol = 1e-11 if dtype == np.float64 else 2e-5
    assert np.abs(e - e_ref).max() <= tol * np.abs(e_ref).max()
    assert np.abs(f - f_ref).max() <= tol * np.abs(f_ref).max()


def test_parallel_lanes_equal_serial(obc2_walkers):
    term, x = obc2_walkers
    params = obc2.pack(term, np.float64)
    X = to_lanes(x, 7)
    out = {}
    for parallel in (False, True):
        F, E = np.zeros_like(X), np.zeros((X.shape[0], X.shape[3]))
        obc2.accumulate_lanes(X, F, E, params, parallel=parallel)
        out[parallel] = (F, E)
    assert np.array_equal(out[True][0], out[False][0]) and np.array_equal(out[True][1], out[False][1])


def test_bad_lanes_are_refused_by_name(obc2_walkers):
    term, x = obc2_walkers
    params = obc2.pack(term, np.float64)
    X = to_lanes(x, 8)
    F, E = np.zeros_like(X), np.zeros((X.shape[0], 8))
    with pytest.raises(ValueError, match=r"X must have shape \(n_blocks, 22, 3, B\), got \(3, 8, 22, 3\)"):
        obc2.accumulate_lanes(X.transpose(0, 3, 1, 2).copy(), F, E, params, parallel=False)
    with pytest.raises(ValueError, match=r"E shape \(3, 8\).*E \(24,\)"):
        obc2.accumulate_lanes(X, F, E.reshape(-1), params, parallel=False)
    with pytest.raises(ValueError, match="X must be C-contiguous float64.*got float32"):
        obc2.accumulate_lanes(X.astype(np.float32), F, E, params, parallel=False)
