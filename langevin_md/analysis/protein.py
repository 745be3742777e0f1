"""Protein and peptide observables over walkers, with their sampling statistics.

All geometry is mdtraj's: backbone dihedrals (``compute_phi``/``compute_psi``), RMSD
(``rmsd``, optimal superposition), radius of gyration (``compute_rg``) and secondary structure
(``compute_dssp``, the DSSP algorithm of Kabsch & Sander 1983, simplified to helix H, strand E
and coil C). This module arranges the results walker by walker, as series of shape
``(n_frames, n_walkers)``, and attaches τ, ESS and R-hat to each
(:mod:`~langevin_md.analysis.autocorrelation`, :mod:`~langevin_md.analysis.convergence`);
φ and ψ use the circular versions (period 360°).

:func:`protein_report` writes the pictures and a table for a multi-residue molecule:
Ramachandran plots (pooled, and per residue), RMSD and radius-of-gyration traces, the
per-residue DSSP composition, and ``protein_summary.csv``/``.md`` with the statistics.

Input is a :class:`~langevin_md.result.SampleResult` of a molecular system (walkers are its
walkers), one ``mdtraj.Trajectory`` (one walker), or a list of equally long trajectories of
the same topology (one per walker).

References
----------
W. Kabsch and C. Sander, "Dictionary of protein secondary structure", Biopolymers 22, 2577
(1983).
"""

from __future__ import annotations

import csv
import math
import os
import warnings
from typing import NamedTuple, Optional

import numpy as np

from ..safe_paths import make_dirs, open_for_write, write_via_temp

__all__ = [
    "WalkerTrajectory",
    "walker_trajectory",
    "n_phi_psi_residues",
    "BackboneDihedrals",
    "backbone_dihedrals",
    "rmsd_to_start",
    "radius_of_gyration",
    "SecondaryStructure",
    "secondary_structure",
    "SeriesStatistics",
    "series_statistics",
    "ProteinReport",
    "protein_report",
]


class WalkerTrajectory(NamedTuple):
    """Frames of all walkers as one mdtraj trajectory, walker after walker.

    Attributes
    ----------
    trajectory : mdtraj.Trajectory
        ``n_walkers * n_frames`` frames: walker 0's frames, then walker 1's, ... (nm).
    n_frames : int
        Frames per walker.
    n_walkers : int
    """

    trajectory: object
    n_frames: int
    n_walkers: int

    def by_walker(self, values: np.ndarray) -> np.ndarray:
        """Per-frame values ``(n_walkers*n_frames, ...)`` as ``(n_frames, n_walkers, ...)``."""
        v = np.asarray(values)
        return np.swapaxes(v.reshape((self.n_walkers, self.n_frames) + v.shape[1:]), 0, 1)


def walker_trajectory(source, topology=None) -> WalkerTrajectory:
    """Normalise a result, a trajectory or a list of trajectories to a :class:`WalkerTrajectory`.

    Parameters
    ----------
    source : SampleResult, mdtraj.Trajectory or sequence of mdtraj.Trajectory
    topology : mdtraj.Topology, optional
        For a result whose system is not attached (e.g. loaded from a run folder without one).
    """
    import mdtraj

    if isinstance(source, mdtraj.Trajectory):
        if source.n_frames < 1:
            raise ValueError("the trajectory has no frames")
        return WalkerTrajectory(source, source.n_frames, 1)
    if isinstance(source, (list, tuple)):
        if not source or not all(isinstance(t, mdtraj.Trajectory) for t in source):
            raise TypeError("a list source must hold one or more mdtraj.Trajectory objects (one per walker)")
        n = source[0].n_frames
        if any(t.n_frames != n for t in source) or n < 1:
            raise ValueError(f"walker trajectories must be equally long and non-empty, got {[t.n_frames for t in source]}")
        if any(t.n_atoms != source[0].n_atoms for t in source):
            raise ValueError("walker trajectories must share one topology (different atom counts)")
        return WalkerTrajectory(mdtraj.join(list(source), check_topology=True, discard_overlapping_frames=False),
                                n, len(source))
    positions = getattr(source, "positions", None)
    if positions is None or not hasattr(source, "to_mdtraj"):
        raise TypeError(f"source must be a SampleResult, an mdtraj.Trajectory or a list of them, got {type(source).__name__}")
    pos = np.asarray(positions)
    if pos.ndim != 4 or pos.shape[-1] != 3:
        raise ValueError(f"a protein analysis needs a molecular result (positions (n_frames, n_walkers, n_atoms, 3)), "
                         f"got positions of shape {pos.shape}")
    traj = source.to_mdtraj(topology=topology)
    return WalkerTrajectory(traj, pos.shape[0], pos.shape[1])


def n_phi_psi_residues(topology) -> int:
    """Residues of an ``mdtraj.Topology`` that have both a φ and a ψ dihedral.

    ``langevin-md analyze`` writes a protein report when this is at least 2 (alanine
    dipeptide has 1: its φ/ψ are covered by the Ramachandran analysis of
    :mod:`~langevin_md.analysis.molecular`).
    """
    import mdtraj

    if not isinstance(topology, mdtraj.Topology):
        raise TypeError(f"topology must be an mdtraj.Topology, got {type(topology).__name__}")
    atoms = list(topology.atoms)
    dummy = mdtraj.Trajectory(np.zeros((1, topology.n_atoms, 3), dtype=np.float32), topology)
    phi_idx, _ = mdtraj.compute_phi(dummy)
    psi_idx, _ = mdtraj.compute_psi(dummy)
    return len({atoms[q[1]].residue.index for q in phi_idx} & {atoms[q[0]].residue.index for q in psi_idx})


# --------------------------------------------------------------------------- observables
class BackboneDihedrals(NamedTuple):
    """φ and ψ of every residue that has both.

    Attributes
    ----------
    residues : list of str
        Labels such as ``"ALA5"`` (mdtraj residue name and sequence number), length n_res.
    residue_indices : numpy.ndarray of int, shape ``(n_res,)``
        mdtraj residue indices.
    phi, psi : numpy.ndarray, shape ``(n_frames, n_walkers, n_res)``
        Degrees in (−180, 180].
    """

    residues: list
    residue_indices: np.ndarray
    phi: np.ndarray
    psi: np.ndarray


def backbone_dihedrals(wt: WalkerTrajectory) -> BackboneDihedrals:
    """Per-residue backbone φ/ψ (mdtraj), in degrees, walker by walker."""
    import mdtraj

    traj = wt.trajectory
    phi_idx, phi = mdtraj.compute_phi(traj)
    psi_idx, psi = mdtraj.compute_psi(traj)
    atoms = list(traj.topology.atoms)
    # φ = C(i−1)-N-CA-C belongs to the residue of its N; ψ = N-CA-C-N(i+1) to that of its N.
    phi_res = {atoms[q[1]].residue.index: k for k, q in enumerate(phi_idx)}
    psi_res = {atoms[q[0]].residue.index: k for k, q in enumerate(psi_idx)}
    both = sorted(set(phi_res) & set(psi_res))
    if not both:
        raise ValueError("no residue has both a φ and a ψ dihedral: a protein analysis needs a peptide chain")
    residues = [str(traj.topology.residue(r)) for r in both]
    phi_deg = np.degrees(phi[:, [phi_res[r] for r in both]])
    psi_deg = np.degrees(psi[:, [psi_res[r] for r in both]])
    return BackboneDihedrals(residues, np.array(both), wt.by_walker(phi_deg), wt.by_walker(psi_deg))


def _selection(topology, selection: str) -> np.ndarray:
    try:
        idx = topology.select(selection)
    except Exception as exc:  # mdtraj raises its own ValueError subclasses with the parse error
        raise ValueError(f"atom selection {selection!r} is not valid mdtraj syntax: {exc}") from None
    if idx.size == 0:
        raise ValueError(f"atom selection {selection!r} matches no atoms")
    return idx


def rmsd_to_start(wt: WalkerTrajectory, reference=None, selection: str = "backbone") -> np.ndarray:
    """RMSD after optimal superposition to the starting structure, nm, shape ``(n_frames, n_walkers)``.

    Parameters
    ----------
    wt : WalkerTrajectory
    reference : mdtraj.Trajectory or array_like (n_atoms, 3) nm, optional
        The starting structure; default the first frame of walker 0.
    selection : str
        mdtraj selection of the atoms superposed and compared (default the backbone).
    """
    import mdtraj

    traj = wt.trajectory
    idx = _selection(traj.topology, selection)
    if reference is None:
        ref = traj[0]
    elif isinstance(reference, mdtraj.Trajectory):
        if reference.n_atoms != traj.n_atoms:
            raise ValueError(f"reference has {reference.n_atoms} atoms, the trajectory {traj.n_atoms}")
        ref = reference[0]
    else:
        xyz = np.asarray(reference, dtype=np.float32)
        if xyz.shape != (traj.n_atoms, 3):
            raise ValueError(f"reference must have shape ({traj.n_atoms}, 3) in nm, got {xyz.shape}")
        ref = mdtraj.Trajectory(xyz[None], traj.topology)
    return wt.by_walker(mdtraj.rmsd(traj, ref, 0, atom_indices=idx).astype(np.float64))


def radius_of_gyration(wt: WalkerTrajectory) -> np.ndarray:
    """Radius of gyration (mdtraj, all atoms, unweighted), nm, shape ``(n_frames, n_walkers)``."""
    import mdtraj

    return wt.by_walker(mdtraj.compute_rg(wt.trajectory).astype(np.float64))


class SecondaryStructure(NamedTuple):
    """DSSP secondary structure (simplified: H helix, E strand, C coil) per residue.

    Attributes
    ----------
    residues : list of str
        Protein residues, length n_res.
    codes : numpy.ndarray of str, shape ``(n_frames, n_walkers, n_res)``
    fractions : dict of str to numpy.ndarray, shape ``(n_res,)``
        Share of frames (all walkers) in H, E and C per residue.
    helix, strand : numpy.ndarray, shape ``(n_frames, n_walkers)``
        Share of residues in H (or E) in each frame: the series whose τ/ESS/R-hat are reported.
    """

    residues: list
    codes: np.ndarray
    fractions: dict
    helix: np.ndarray
    strand: np.ndarray


def secondary_structure(wt: WalkerTrajectory) -> SecondaryStructure:
    """DSSP (mdtraj ``compute_dssp``, simplified) per residue and frame, walker by walker."""
    import mdtraj

    traj = wt.trajectory
    codes = mdtraj.compute_dssp(traj, simplified=True)  # (n_total, n_residues), 'NA' for non-protein
    protein = np.array([c != "NA" for c in codes[0]])
    if not protein.any():
        raise ValueError("DSSP found no protein residues")
    residues = [str(r) for r, p in zip(traj.topology.residues, protein) if p]
    codes = codes[:, protein]
    fractions = {k: (codes == k).mean(axis=0) for k in ("H", "E", "C")}
    helix = (codes == "H").mean(axis=1)
    strand = (codes == "E").mean(axis=1)
    return SecondaryStructure(residues, wt.by_walker(codes), fractions, wt.by_walker(helix), wt.by_walker(strand))


# --------------------------------------------------------------------------- statistics
class SeriesStatistics(NamedTuple):
    """Mean, spread and sampling statistics of one observable.

    Attributes
    ----------
    name, unit : str
    mean : float
        Circular mean for angles.
    sd : float
        Standard deviation (circular for angles).
    tau : float
        Integrated autocorrelation time in frames (nan when too short or constant).
    ess : float
        Effective sample size, all walkers.
    rhat : float
        Split rank-normalised R-hat (nan with too few frames; inf when walkers sit still at
        different values).
    """

    name: str
    unit: str
    mean: float
    sd: float
    tau: float
    ess: float
    rhat: float


def series_statistics(name: str, series, unit: str, period: Optional[float] = None) -> SeriesStatistics:
    """τ, ESS and R-hat of a ``(n_frames, n_walkers)`` series (``period=360`` for angles in degrees)."""
    from .autocorrelation import ShortChainWarning, effective_sample_size, integrated_autocorrelation_time
    from .circular import circular_mean
    from .convergence import rhat

    s = np.asarray(series, dtype=np.float64)
    if s.ndim != 2:
        raise ValueError(f"series must have shape (n_frames, n_walkers), got {s.shape}")
    if period is None:
        mean, sd = float(s.mean()), float(s.std())
    else:
        mean = float(circular_mean(s.ravel(), period=period))
        r = abs(np.mean(np.exp(2j * np.pi * s / period)))
        sd = float(period / (2 * np.pi) * math.sqrt(max(-2.0 * math.log(max(r, 1e-300)), 0.0)))
    tau = ess = r_hat = math.nan
    if s.shape[0] >= 4:
        if np.all(np.ptp(s, axis=0) == 0.0):
            tau, ess, r_hat = math.inf, 0.0, (1.0 if np.ptp(s) == 0 else math.inf)
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ShortChainWarning)
                try:
                    tau = float(integrated_autocorrelation_time(s, period=period))
                    ess = float(effective_sample_size(s, period=period))
                except ValueError:
                    pass
                try:
                    r_hat = float(rhat(s, period=period))
                except ValueError:
                    pass
    return SeriesStatistics(name, unit, mean, sd, tau, ess, r_hat)


# --------------------------------------------------------------------------- report
class ProteinReport(NamedTuple):
    """What :func:`protein_report` computed and wrote.

    Attributes
    ----------
    dihedrals : BackboneDihedrals
    rmsd : numpy.ndarray, shape ``(n_frames, n_walkers)``, nm
    radius_of_gyration : numpy.ndarray, shape ``(n_frames, n_walkers)``, nm
    secondary_structure : SecondaryStructure
    statistics : list of SeriesStatistics
        RMSD, Rg, helix and strand fractions, then φ and ψ of every residue.
    files : dict of str to str
        ``"ramachandran"``, ``"ramachandran_per_residue"``, ``"rmsd_rg"``, ``"dssp"`` (PNG),
        ``"table_csv"``, ``"table_md"``.
    """

    dihedrals: BackboneDihedrals
    rmsd: np.ndarray
    radius_of_gyration: np.ndarray
    secondary_structure: SecondaryStructure
    statistics: list
    files: dict


def protein_report(source, out_dir, topology=None, reference=None, rmsd_selection: str = "backbone",
                   max_residue_panels: int = 36) -> ProteinReport:
    """Analyse a multi-residue molecule and write plots and a table to ``out_dir``.

    Parameters
    ----------
    source : SampleResult, mdtraj.Trajectory or list of mdtraj.Trajectory
        See :func:`walker_trajectory`.
    out_dir : str or PathLike
        Created if missing.
    topology : mdtraj.Topology, optional
        For results without an attached system.
    reference : mdtraj.Trajectory or array (n_atoms, 3) nm, optional
        Starting structure for the RMSD; default: a result's system reference structure
        (``system.positions``) when there is one, else walker 0's first frame.
    rmsd_selection : str
        mdtraj selection for the RMSD.
    max_residue_panels : int
        Per-residue Ramachandran panels drawn at most (the first residues; the pooled plot
        has them all).

    Returns
    -------
    ProteinReport
    """
    if isinstance(max_residue_panels, bool) or not isinstance(max_residue_panels, int) or max_residue_panels < 1:
        raise ValueError(f"max_residue_panels must be a positive integer, got {max_residue_panels!r}")
    wt = walker_trajectory(source, topology)
    if reference is None:
        ref = getattr(getattr(source, "system", None), "positions", None)
        if ref is not None and np.shape(ref) == (wt.trajectory.n_atoms, 3):
            reference = ref
    dih = backbone_dihedrals(wt)
    rmsd = rmsd_to_start(wt, reference, rmsd_selection)
    rg = radius_of_gyration(wt)
    ss = secondary_structure(wt)
    stats = [series_statistics("RMSD to start", rmsd, "nm"), series_statistics("radius of gyration", rg, "nm"),
             series_statistics("helix fraction (DSSP)", ss.helix, ""),
             series_statistics("strand fraction (DSSP)", ss.strand, "")]
    for k, res in enumerate(dih.residues):
        stats.append(series_statistics(f"phi {res}", dih.phi[:, :, k], "deg", period=360.0))
        stats.append(series_statistics(f"psi {res}", dih.psi[:, :, k], "deg", period=360.0))

    out = os.fspath(out_dir)
    make_dirs(out)
    files = {
        "ramachandran": _plot_pooled_ramachandran(dih, os.path.join(out, "ramachandran.png")),
        "ramachandran_per_residue": _plot_residue_ramachandran(dih, os.path.join(out, "ramachandran_per_residue.png"),
                                                               max_residue_panels),
        "rmsd_rg": _plot_traces(rmsd, rg, os.path.join(out, "rmsd_rg.png")),
        "dssp": _plot_dssp(ss, os.path.join(out, "dssp.png")),
    }
    files.update(_write_tables(stats, out, wt))
    return ProteinReport(dih, rmsd, rg, ss, stats, files)


def _cell(v: float, spec: str = ".4g") -> str:
    return "" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, spec)


def _write_tables(stats, out: str, wt: WalkerTrajectory) -> dict:
    header = ["observable", "unit", "mean", "sd", "tau_frames", "ess", "rhat"]
    rows = [[s.name, s.unit, _cell(s.mean), _cell(s.sd), _cell(s.tau), _cell(s.ess), _cell(s.rhat)] for s in stats]
    csv_path = os.path.join(out, "protein_summary.csv")
    with open_for_write(csv_path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    md_path = os.path.join(out, "protein_summary.md")
    with open_for_write(md_path, "w") as f:
        f.write(f"# Protein summary\n\n{wt.n_walkers} walker(s) x {wt.n_frames} frames, "
                f"{wt.trajectory.n_atoms} atoms. R-hat above 1.01 means the walkers disagree; "
                "ESS counts effectively independent frames over all walkers.\n\n")
        f.write("| " + " | ".join(header) + " |\n|" + "---|" * len(header) + "\n")
        for r in rows:
            f.write("| " + " | ".join(r) + " |\n")
    return {"table_csv": csv_path, "table_md": md_path}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _rama_axes(ax, title: str):
    ax.set_xlim(-180, 180)
    ax.set_ylim(-180, 180)
    ax.set_xticks([-180, -90, 0, 90, 180])
    ax.set_yticks([-180, -90, 0, 90, 180])
    ax.set_title(title, fontsize=9)


def _plot_pooled_ramachandran(dih: BackboneDihedrals, path: str) -> str:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.2, 4.6))
    h = ax.hist2d(dih.phi.ravel(), dih.psi.ravel(), bins=72, range=[[-180, 180], [-180, 180]], cmap="viridis",
                  cmin=1)
    fig.colorbar(h[3], ax=ax, label="frames")
    _rama_axes(ax, f"Ramachandran, {len(dih.residues)} residues pooled")
    ax.set_xlabel("φ (deg)")
    ax.set_ylabel("ψ (deg)")
    fig.tight_layout()
    write_via_temp(path, lambda tmp: fig.savefig(tmp, dpi=110))
    plt.close(fig)
    return path


def _plot_residue_ramachandran(dih: BackboneDihedrals, path: str, max_panels: int) -> str:
    plt = _pyplot()
    n = min(len(dih.residues), max_panels)
    ncols = min(6, n)
    nrows = int(math.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(2.3 * ncols, 2.3 * nrows), squeeze=False)
    n_walkers = dih.phi.shape[1]
    colours = plt.cm.tab10(np.arange(n_walkers) % 10)
    for k in range(nrows * ncols):
        ax = axes.flat[k]
        if k >= n:
            ax.axis("off")
            continue
        for w in range(n_walkers):  # one colour per walker: walkers that never meet show apart
            ax.scatter(dih.phi[:, w, k], dih.psi[:, w, k], s=2, color=colours[w], alpha=0.5, rasterized=True)
        _rama_axes(ax, dih.residues[k])
        ax.tick_params(labelsize=6)
    fig.suptitle("φ/ψ per residue (colour: walker)", fontsize=10)
    fig.tight_layout()
    write_via_temp(path, lambda tmp: fig.savefig(tmp, dpi=100))
    plt.close(fig)
    return path


def _plot_traces(rmsd: np.ndarray, rg: np.ndarray, path: str) -> str:
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
    for ax, series, label in ((axes[0], rmsd, "RMSD to start (nm)"), (axes[1], rg, "radius of gyration (nm)")):
        for w in range(series.shape[1]):
            ax.plot(series[:, w], lw=0.8)
        ax.set_xlabel("frame")
        ax.set_ylabel(label)
    fig.tight_layout()
    write_via_temp(path, lambda tmp: fig.savefig(tmp, dpi=110))
    plt.close(fig)
    return path


def _plot_dssp(ss: SecondaryStructure, path: str) -> str:
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(12, 3.6), gridspec_kw={"width_ratios": [2, 1]})
    x = np.arange(len(ss.residues))
    bottom = np.zeros(len(ss.residues))
    for key, colour, label in (("H", "#e63946", "helix"), ("E", "#457b9d", "strand"), ("C", "#bbbbbb", "coil")):
        axes[0].bar(x, ss.fractions[key], bottom=bottom, color=colour, label=label, width=0.9)
        bottom += ss.fractions[key]
    axes[0].set_xticks(x)
    axes[0].set_xticklabels(ss.residues, rotation=90, fontsize=6)
    axes[0].set_ylabel("fraction of frames")
    axes[0].set_title("DSSP per residue")
    axes[0].legend(fontsize=8, loc="upper right")
    for w in range(ss.helix.shape[1]):
        axes[1].plot(ss.helix[:, w], lw=0.8)
    axes[1].set_xlabel("frame")
    axes[1].set_ylabel("helix fraction")
    axes[1].set_ylim(0, 1)
    fig.tight_layout()
    write_via_temp(path, lambda tmp: fig.savefig(tmp, dpi=110))
    plt.close(fig)
    return path
