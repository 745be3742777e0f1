"""Molecular observables: dihedrals, distances, Ramachandran free energies and metastable states.

Inputs are a :class:`~langevin_md.result.SampleResult` of a molecular system (positions of
shape ``(n_frames, n_walkers, n_atoms, 3)`` in nm, with an mdtraj topology on ``result.system``
or in ``result.metadata["topology"]``) or an ``mdtraj.Trajectory`` (treated as one walker).
Outputs keep the sampler's layout: steps first, walkers second, ``(n_frames, n_walkers)``,
so every statistic of :mod:`langevin_md.analysis` applies directly (with ``period=2π`` for
angles).

Atom selection (which atoms make φ and ψ) comes from mdtraj (``mdtraj.compute_phi`` /
``compute_psi`` on one frame); the geometry itself is computed here in float64 numpy straight
from the position array, which avoids copying a long run into an ``mdtraj.Trajectory`` and
agrees with mdtraj's values to float32 round-off.

Metastable states
-----------------
A state is a *core* region in (φ, ψ). Frames are assigned by the core they visited last
(transition-based assignment, Buchete & Hummer 2008): a walker that leaves a core keeps that
core's label until it enters another one, so recrossings of the barrier region are not counted
as transitions. Frames before a walker's first core visit are unassigned (−1).

References
----------
N.-V. Buchete, G. Hummer, "Coarse master equations for peptide folding dynamics",
J. Phys. Chem. B 112, 6057–6069 (2008).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, Optional, Sequence

import numpy as np

__all__ = [
    "StateCore",
    "ALANINE_DIPEPTIDE_STATES",
    "to_trajectory",
    "phi_psi",
    "phi_psi_if_molecule",
    "dihedrals",
    "distances",
    "RamachandranSurface",
    "ramachandran_free_energy",
    "assign_states",
    "core_assignment",
    "transition_counts",
    "RoundTrips",
    "round_trip_times",
    "Populations",
    "state_populations",
]


# --------------------------------------------------------------------------- inputs
def _topology(result):
    top = getattr(getattr(result, "system", None), "topology", None)
    if top is None:
        top = getattr(result, "metadata", {}).get("topology")
    if top is None:
        raise ValueError(
            "this result has no mdtraj topology (neither result.system.topology nor "
            "result.metadata['topology']); molecular observables need one"
        )
    return top


def _positions(x) -> tuple[np.ndarray, object]:
    """``(positions (n_frames, n_walkers, n_atoms, 3) nm, mdtraj topology)`` of a result or a
    Trajectory (one walker; a view, not a copy)."""
    import mdtraj

    if isinstance(x, mdtraj.Trajectory):
        return x.xyz[:, None], x.topology
    positions = getattr(x, "positions", None)
    if positions is None:
        raise TypeError(
            f"expected a SampleResult or an mdtraj.Trajectory, got {type(x).__name__}"
        )
    positions = np.asarray(positions)
    if positions.ndim != 4 or positions.shape[-1] != 3:
        raise ValueError(
            f"molecular observables need positions of shape (n_frames, n_walkers, n_atoms, 3); "
            f"this result has {positions.shape} (an analytic system?)"
        )
    return positions, _topology(x)


def to_trajectory(result, walker: Optional[int] = None):
    """The frames of a result as an ``mdtraj.Trajectory``.

    Parameters
    ----------
    result : SampleResult or mdtraj.Trajectory
        A Trajectory is returned unchanged.
    walker : int, optional
        One walker's chain; by default all walkers joined one after another (walker 0's
        frames, then walker 1's, ...), as :meth:`SampleResult.to_mdtraj` does.

    Returns
    -------
    mdtraj.Trajectory
        Positions in nm.
    """
    import mdtraj

    if isinstance(result, mdtraj.Trajectory):
        return result
    return result.to_mdtraj(walker=walker, topology=_topology(result))


def _check_indices(indices, width: int, n_atoms: int, what: str) -> tuple[np.ndarray, bool]:
    idx = np.asarray(indices)
    if idx.dtype.kind not in "iu":
        raise TypeError(f"{what} must be integer atom indices, got dtype {idx.dtype}")
    single = idx.ndim == 1
    if single:
        idx = idx[None]
    if idx.ndim != 2 or idx.shape[1] != width or idx.shape[0] == 0:
        raise ValueError(
            f"{what} must have shape ({width},) or (n, {width}), got shape {np.shape(indices)}"
        )
    if idx.min() < 0 or idx.max() >= n_atoms:
        raise ValueError(
            f"{what} must be atom indices in [0, {n_atoms}), got values from {idx.min()} to {idx.max()}"
        )
    return idx.astype(np.intp), single


# --------------------------------------------------------------------------- geometry
def _dihedral_angles(positions: np.ndarray, quads: np.ndarray) -> np.ndarray:
    """Dihedral angles (radians in (−π, π]) for ``quads`` (n, 4): shape (F, W, n).

    IUPAC sign convention, the same as mdtraj.compute_dihedrals (Blondel & Karplus 1996).
    Works in blocks of frames to keep the float64 temporaries small for long runs.
    """
    n_frames = positions.shape[0]
    out = np.empty(positions.shape[:2] + (len(quads),), dtype=np.float64)
    block = max(1, 2_000_000 // max(1, positions.shape[1] * len(quads)))
    for start in range(0, n_frames, block):
        p = np.asarray(positions[start:start + block][:, :, quads], dtype=np.float64)  # (f, W, n, 4, 3)
        b1 = p[..., 1, :] - p[..., 0, :]
        b2 = p[..., 2, :] - p[..., 1, :]
        b3 = p[..., 3, :] - p[..., 2, :]
        c1 = np.cross(b2, b3)
        c2 = np.cross(b1, b2)
        p1 = (b1 * c1).sum(-1) * np.sqrt((b2 * b2).sum(-1))
        p2 = (c1 * c2).sum(-1)
        out[start:start + block] = np.arctan2(p1, p2)
    return out


def dihedrals(result, indices) -> np.ndarray:
    """Dihedral angles of atom quadruples, in radians.

    Parameters
    ----------
    result : SampleResult or mdtraj.Trajectory
        Molecular frames (a Trajectory counts as one walker).
    indices : array_like of int, shape ``(4,)`` or ``(n_dihedrals, 4)``
        Atom indices (0-based, topology order) of each dihedral.

    Returns
    -------
    numpy.ndarray
        Radians in (−π, π], IUPAC sign convention (as ``mdtraj.compute_dihedrals``); shape
        ``(n_frames, n_walkers)`` for a single quadruple, ``(n_frames, n_walkers,
        n_dihedrals)`` otherwise.
    """
    positions, _ = _positions(result)
    quads, single = _check_indices(indices, 4, positions.shape[2], "indices")
    out = _dihedral_angles(positions, quads)
    return out[..., 0] if single else out


def distances(result, pairs) -> np.ndarray:
    """Distances between atom pairs (no periodic images), in nm.

    Parameters
    ----------
    result : SampleResult or mdtraj.Trajectory
    pairs : array_like of int, shape ``(2,)`` or ``(n_pairs, 2)``
        Atom indices (0-based).

    Returns
    -------
    numpy.ndarray
        nm; shape ``(n_frames, n_walkers)`` for a single pair, ``(n_frames, n_walkers,
        n_pairs)`` otherwise.
    """
    positions, _ = _positions(result)
    idx, single = _check_indices(pairs, 2, positions.shape[2], "pairs")
    d = np.asarray(positions[:, :, idx[:, 1]], dtype=np.float64) - positions[:, :, idx[:, 0]]
    out = np.sqrt((d * d).sum(-1))
    return out[..., 0] if single else out


def phi_psi_indices(topology) -> tuple[np.ndarray, np.ndarray]:
    """Atom quadruples of the backbone φ and ψ of every residue that has both, paired.

    Parameters
    ----------
    topology : mdtraj.Topology

    Returns
    -------
    phi_atoms, psi_atoms : numpy.ndarray of int, shape ``(n_residues_with_both, 4)``
        Row ``i`` of each belongs to the same residue (matched on its Cα).
    """
    import mdtraj

    # mdtraj's selection needs a trajectory; one frame of zeros is enough to get indices.
    probe = mdtraj.Trajectory(np.zeros((1, topology.n_atoms, 3), dtype=np.float32), topology)
    phi_idx, _ = mdtraj.compute_phi(probe)
    psi_idx, _ = mdtraj.compute_psi(probe)
    psi_by_ca = {int(q[1]): q for q in psi_idx}  # ψ = N-CA-C-N(+1)
    pairs = [(q, psi_by_ca[int(q[2])]) for q in phi_idx if int(q[2]) in psi_by_ca]  # φ = C(-1)-N-CA-C
    if not pairs:
        raise ValueError(
            "the topology has no residue with both a backbone φ and ψ (mdtraj.compute_phi/psi "
            "found none): not a peptide?"
        )
    return (np.array([p[0] for p in pairs], dtype=np.intp),
            np.array([p[1] for p in pairs], dtype=np.intp))


def phi_psi(result, residue: Optional[int] = None) -> tuple[np.ndarray, np.ndarray]:
    """Backbone dihedrals φ and ψ, in radians.

    Parameters
    ----------
    result : SampleResult or mdtraj.Trajectory
        Molecular frames; a Trajectory counts as one walker.
    residue : int, optional
        Which (φ, ψ) pair, counted over residues that have both (0 is the first). Needed only
        when there is more than one pair; alanine dipeptide has exactly one.

    Returns
    -------
    phi, psi : numpy.ndarray, shape ``(n_frames, n_walkers)``
        Radians in (−π, π]; equal to ``mdtraj.compute_phi`` / ``compute_psi`` of each
        walker's trajectory (to float32 round-off).
    """
    positions, top = _positions(result)
    phi_q, psi_q = phi_psi_indices(top)
    if residue is None:
        if len(phi_q) != 1:
            raise ValueError(
                f"the topology has {len(phi_q)} residues with both φ and ψ; pass residue= an "
                f"integer in [0, {len(phi_q)}) to choose one"
            )
        residue = 0
    if isinstance(residue, bool) or not isinstance(residue, (int, np.integer)) or not 0 <= residue < len(phi_q):
        raise ValueError(f"residue must be an integer in [0, {len(phi_q)}), got {residue!r}")
    angles = _dihedral_angles(positions, np.stack([phi_q[residue], psi_q[residue]]))
    return angles[..., 0], angles[..., 1]


def phi_psi_if_molecule(result) -> Optional[tuple[np.ndarray, np.ndarray]]:
    """:func:`phi_psi` of a molecular result with one (φ, ψ) pair, or None for anything else.

    The reports use it to decide whether the backbone-angle sections apply: a result that is
    not made of 3-D atom positions, or whose topology has no single (φ, ψ) pair, gets None
    instead of an error.

    Returns
    -------
    tuple of numpy.ndarray or None
        ``(phi, psi)`` in radians, ``(n_frames, n_walkers)`` each.
    """
    if len(result.event_shape) != 2:
        return None
    try:
        return phi_psi(result)
    except (ValueError, TypeError):
        return None


# --------------------------------------------------------------------------- free energy
class RamachandranSurface(NamedTuple):
    """Result of :func:`ramachandran_free_energy`.

    Attributes
    ----------
    free_energy : numpy.ndarray, shape ``(bins, bins)``
        F(φ, ψ) = −kT ln p, in the unit of ``kT`` (kJ/mol for molecules), shifted so that its
        minimum is 0; ``inf`` in empty bins. ``free_energy[i, j]`` is the bin
        ``phi_edges[i:i+2] × psi_edges[j:j+2]``.
    phi_edges, psi_edges : numpy.ndarray, shape ``(bins + 1,)``
        Bin edges in radians, from −π to π.
    """

    free_energy: np.ndarray
    phi_edges: np.ndarray
    psi_edges: np.ndarray


def ramachandran_free_energy(phi, psi, kT: float, bins: int = 60) -> RamachandranSurface:
    """Free-energy surface F(φ, ψ) = −kT ln p(φ, ψ) from a 2-D histogram, minimum 0.

    Parameters
    ----------
    phi, psi : array_like, same shape (any, e.g. ``(n_frames, n_walkers)``)
        Radians (any branch; they are wrapped into [−π, π)).
    kT : float
        Thermal energy; F comes out in its unit (``result.kT`` is kJ/mol for molecules).
    bins : int
        Bins per angle (default 60, i.e. 6°).

    Returns
    -------
    RamachandranSurface
    """
    from ._validation import check_positive_number

    kT = check_positive_number("kT", kT)
    phi = np.asarray(phi, dtype=np.float64)
    psi = np.asarray(psi, dtype=np.float64)
    if phi.shape != psi.shape or phi.size == 0:
        raise ValueError(f"phi and psi must have the same non-empty shape, got {phi.shape} and {psi.shape}")
    if isinstance(bins, bool) or not isinstance(bins, (int, np.integer)) or bins < 2:
        raise ValueError(f"bins must be an integer >= 2, got {bins!r}")
    edges = np.linspace(-np.pi, np.pi, int(bins) + 1)
    wrap = lambda a: (a.ravel() + np.pi) % (2 * np.pi) - np.pi  # noqa: E731
    counts, _, _ = np.histogram2d(wrap(phi), wrap(psi), bins=(edges, edges))
    with np.errstate(divide="ignore"):
        f = -kT * np.log(counts / counts.sum())
    return RamachandranSurface(f - f[np.isfinite(f)].min(), edges, edges.copy())


# --------------------------------------------------------------------------- states
@dataclass(frozen=True)
class StateCore:
    """A core region of a metastable state: a box in (φ, ψ), in degrees.

    Each range ``(low, high)`` is an arc of the circle from ``low`` to ``high`` going up; if
    ``low > high`` it wraps through ±180° (``(120, -150)`` means ψ ≥ 120° or ψ ≤ −150°).
    """

    name: str
    phi: tuple[float, float]
    psi: tuple[float, float]

    def contains(self, phi_deg: np.ndarray, psi_deg: np.ndarray) -> np.ndarray:
        return _in_arc(phi_deg, *self.phi) & _in_arc(psi_deg, *self.psi)


def _in_arc(a: np.ndarray, low: float, high: float) -> np.ndarray:
    a = (a + 180.0) % 360.0 - 180.0
    return (a >= low) & (a <= high) if low <= high else (a >= low) | (a <= high)


#: Cores of the three classic alanine-dipeptide basins (vacuum and implicit solvent), in
#: degrees, separated by barrier regions where frames keep their last core's label:
#: C7eq/β (the extended basin, φ < 0 with ψ from 50° through 180° to −160°), αR (φ < 0,
#: −100° < ψ < −10°) and αL (φ > 0, including C7ax). The gap −10° < ψ < 50° lies between
#: the C7eq minimum (near ψ = 70° in vacuum) and αR (near −40°). Cores stop short of the basin
#: borders so that thermal fluctuations at a border are not counted as transitions.
ALANINE_DIPEPTIDE_STATES: tuple[StateCore, ...] = (
    StateCore("C7eq/β", phi=(-180.0, -45.0), psi=(50.0, -160.0)),
    StateCore("αR", phi=(-180.0, -45.0), psi=(-100.0, -10.0)),
    StateCore("αL", phi=(30.0, 120.0), psi=(-120.0, 100.0)),
)


def core_assignment(in_core) -> np.ndarray:
    """Label every frame with the last core visited (transition-based assignment).

    Parameters
    ----------
    in_core : array_like of int, shape ``(n_frames,)`` or ``(n_frames, n_walkers)``
        Index of the core each frame is in, −1 outside every core.

    Returns
    -------
    numpy.ndarray of int64, same shape
        The most recent core along axis 0 (per walker); −1 before a walker's first core.
    """
    c = np.asarray(in_core)
    if c.dtype.kind not in "iu" or c.ndim not in (1, 2) or c.shape[0] == 0:
        raise ValueError(
            f"in_core must be an integer array of shape (n_frames,) or (n_frames, n_walkers), "
            f"got dtype {c.dtype} and shape {c.shape}"
        )
    c = c.astype(np.int64)
    frame = np.arange(c.shape[0]).reshape((-1,) + (1,) * (c.ndim - 1))
    last = np.maximum.accumulate(np.where(c >= 0, frame, -1), axis=0)
    out = np.take_along_axis(c, np.maximum(last, 0), axis=0)
    out[last < 0] = -1
    return out


def assign_states(phi, psi, states: Sequence[StateCore] = ALANINE_DIPEPTIDE_STATES,
                  cores: bool = True) -> np.ndarray:
    """Metastable-state labels of frames from their (φ, ψ).

    Parameters
    ----------
    phi, psi : array_like, shape ``(n_frames,)`` or ``(n_frames, n_walkers)``
        Radians.
    states : sequence of StateCore
        Core regions (default: C7eq/β, αR, αL of alanine dipeptide); label ``i`` is
        ``states[i]``. The first matching core wins where cores overlap.
    cores : bool, default True
        True: transition-based assignment, each frame labelled by the core visited last
        (:func:`core_assignment`), so barrier recrossings are not transitions. False: only
        frames inside a core are labelled; the rest are −1.

    Returns
    -------
    numpy.ndarray of int64, same shape as ``phi``
        State index per frame, −1 where unassigned.
    """
    phi_d = np.degrees(np.asarray(phi, dtype=np.float64))
    psi_d = np.degrees(np.asarray(psi, dtype=np.float64))
    if phi_d.shape != psi_d.shape or phi_d.ndim not in (1, 2):
        raise ValueError(
            f"phi and psi must have the same shape (n_frames,) or (n_frames, n_walkers), got "
            f"{phi_d.shape} and {psi_d.shape}"
        )
    if len(states) == 0:
        raise ValueError("states must contain at least one StateCore")
    label = np.full(phi_d.shape, -1, dtype=np.int64)
    for i in range(len(states) - 1, -1, -1):  # reversed so that the first match wins
        label[states[i].contains(phi_d, psi_d)] = i
    return core_assignment(label) if cores else label


def _labels(assignments) -> np.ndarray:
    a = np.asarray(assignments)
    if a.dtype.kind not in "iu" or a.ndim not in (1, 2) or a.shape[0] == 0:
        raise ValueError(
            f"assignments must be integer state labels of shape (n_frames,) or (n_frames, "
            f"n_walkers), got dtype {a.dtype} and shape {a.shape}"
        )
    return a.reshape(a.shape[0], -1).astype(np.int64)


def _n_states(a: np.ndarray, n_states: Optional[int]) -> int:
    found = int(a.max()) + 1
    if n_states is None:
        return max(found, 1)
    if isinstance(n_states, bool) or not isinstance(n_states, (int, np.integer)) or n_states < found:
        raise ValueError(f"n_states must be an integer >= {found} (largest label + 1), got {n_states!r}")
    return int(n_states)


def transition_counts(assignments, n_states: Optional[int] = None) -> np.ndarray:
    """Number of observed transitions i → j (i ≠ j) between consecutive frames, all walkers.

    Parameters
    ----------
    assignments : array_like of int, shape ``(n_frames,)`` or ``(n_frames, n_walkers)``
        State labels (−1 = unassigned; frames pairs involving −1 are not counted), e.g. from
        :func:`assign_states`.
    n_states : int, optional
        Matrix size (default: largest label + 1).

    Returns
    -------
    numpy.ndarray of int64, shape ``(n_states, n_states)``
        ``counts[i, j]``: transitions from state i to state j; the diagonal is 0.
    """
    a = _labels(assignments)
    k = _n_states(a, n_states)
    src, dst = a[:-1].ravel(), a[1:].ravel()
    moved = (src != dst) & (src >= 0) & (dst >= 0)
    return np.bincount(src[moved] * k + dst[moved], minlength=k * k).reshape(k, k)


class RoundTrips(NamedTuple):
    """Result of :func:`round_trip_times`.

    Attributes
    ----------
    mean : float
        Mean round-trip time a → b → a, in the unit of ``dt`` (frames by default); NaN if
        no round trip was completed.
    standard_error : float
        Standard error of the mean from the spread of the round trips (NaN for fewer than 2).
    n_round_trips : int
        Completed round trips, all walkers.
    times : numpy.ndarray, shape ``(n_round_trips,)``
        Every completed round trip.
    """

    mean: float
    standard_error: float
    n_round_trips: int
    times: np.ndarray


def round_trip_times(assignments, a: int, b: int, dt: float = 1.0) -> RoundTrips:
    """Round trips between states ``a`` and ``b``: from an entry into a (coming from b), via
    b, to the next entry into a.

    Only visits to a and b count: a walker that goes a → c → a has not made a round trip,
    and a → c → b → a has. Round trips are collected over all walkers.

    Parameters
    ----------
    assignments : array_like of int, shape ``(n_frames,)`` or ``(n_frames, n_walkers)``
        State labels, e.g. from :func:`assign_states`.
    a, b : int
        The two state labels (different).
    dt : float
        Time between frames (e.g. ``record_every · timestep`` in ps); default 1 (frames).

    Returns
    -------
    RoundTrips
    """
    lab = _labels(assignments)
    if a == b:
        raise ValueError(f"a and b must be different states, got a = b = {a}")
    from ._validation import check_positive_number

    dt = check_positive_number("dt", dt)
    times = []
    for w in range(lab.shape[1]):
        col = lab[:, w]
        ab = np.where(col == a, 0, np.where(col == b, 1, -1))
        last = core_assignment(ab)  # last of {a, b} visited
        entries_a = np.flatnonzero((last[1:] == 0) & (last[:-1] == 1)) + 1
        if len(entries_a) > 1:
            times.append(np.diff(entries_a))
    t = np.concatenate(times).astype(np.float64) * dt if times else np.zeros(0)
    n = t.size
    mean = float(t.mean()) if n else float("nan")
    se = float(t.std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan")
    return RoundTrips(mean, se, n, t)


class Populations(NamedTuple):
    """Result of :func:`state_populations`.

    Attributes
    ----------
    populations : numpy.ndarray, shape ``(n_states,)``
        Fraction of assigned frames in each state, averaged over walkers (each walker's
        fractions weighted by its number of assigned frames).
    standard_errors : numpy.ndarray, shape ``(n_states,)``
        Standard errors of ``populations``. With ≥ 2 walkers: from the spread of the
        per-walker fractions across the independent walkers (ratio estimator), which needs no
        model of the autocorrelation but assumes every walker is long enough to visit the
        states in proportion. With one walker: the MCSE of the state indicator
        (:func:`langevin_md.analysis.mcse`).
    per_walker : numpy.ndarray, shape ``(n_walkers, n_states)``
        Each walker's fractions (NaN for a walker with no assigned frame).
    n_assigned : numpy.ndarray of int64, shape ``(n_walkers,)``
        Assigned frames per walker.
    """

    populations: np.ndarray
    standard_errors: np.ndarray
    per_walker: np.ndarray
    n_assigned: np.ndarray


def state_populations(assignments, n_states: Optional[int] = None) -> Populations:
    """Population of each state with its standard error across independent walkers.

    Parameters
    ----------
    assignments : array_like of int, shape ``(n_frames,)`` or ``(n_frames, n_walkers)``
        State labels; unassigned frames (−1) are left out.
    n_states : int, optional
        Number of states (default: largest label + 1).

    Returns
    -------
    Populations
    """
    lab = _labels(assignments)
    k = _n_states(lab, n_states)
    n_w = lab.shape[1]
    counts = np.stack([(lab == s).sum(0) for s in range(k)], axis=1).astype(np.float64)  # (W, k)
    n_assigned = counts.sum(1)
    if n_assigned.sum() == 0:
        raise ValueError("no frame is assigned to a state (all labels are -1)")
    with np.errstate(invalid="ignore", divide="ignore"):
        per_walker = counts / n_assigned[:, None]
    pops = counts.sum(0) / n_assigned.sum()
    used = n_assigned > 0
    if used.sum() >= 2:
        # Ratio estimator p = Σ c_w / Σ n_w over walkers: Var ≈ Var_w(c_w − p n_w) / (W n̄²).
        c, n = counts[used], n_assigned[used]
        resid = c - pops * n[:, None]
        se = np.sqrt(resid.var(axis=0, ddof=1) / used.sum()) / n.mean()
    else:
        from .convergence import mcse

        col = lab[:, np.flatnonzero(used)[0]]
        col = col[col >= 0]
        se = np.array([mcse((col == s).astype(float)) if 0 < (col == s).sum() < col.size else 0.0
                       for s in range(k)])
    return Populations(pops, se, per_walker, n_assigned.astype(np.int64))
