"""Sampling-quality statistics and analysis of trajectories.

Statistics take a series of shape ``(n_steps,)`` or ``(n_steps, n_walkers)`` (steps first,
walkers second) and are pure numpy/scipy. Molecular observables (φ/ψ, dihedrals, distances,
metastable states) live in :mod:`.molecular`, distribution checks (histogram distances, energy
KS tests, configurational and kinetic temperatures) in :mod:`.distributions`, and
:func:`report` writes a folder of plots with ``report.md``/``report.html``.
"""

from .autocorrelation import (
    ShortChainWarning,
    autocorrelation,
    effective_sample_size,
    integrated_autocorrelation_time,
)
from .circular import circular_mean, circular_standard_error
from .convergence import mcse, rhat
from .equilibration import Equilibration, detect_equilibration
from .distributions import (
    HistogramDistance,
    KSResult,
    TemperatureEstimate,
    configurational_temperature,
    distance_to_density,
    distance_to_probabilities,
    distance_to_reference,
    energy_ks_test,
    kinetic_temperature,
    ks_test,
)
from .molecular import (
    ALANINE_DIPEPTIDE_STATES,
    Populations,
    RamachandranSurface,
    RoundTrips,
    StateCore,
    assign_states,
    core_assignment,
    dihedrals,
    distances,
    phi_psi,
    ramachandran_free_energy,
    round_trip_times,
    state_populations,
    to_trajectory,
    transition_counts,
)
from .prior_verdict import DistributionComparison, compare_distributions, jensen_shannon
from .report import Report, report
from .thermo import KineticTemperatureCheck, degrees_of_freedom, kinetic_energy_law, kinetic_temperature_check
from .protein import (
    BackboneDihedrals,
    ProteinReport,
    SecondaryStructure,
    SeriesStatistics,
    WalkerTrajectory,
    backbone_dihedrals,
    n_phi_psi_residues,
    protein_report,
    radius_of_gyration,
    rmsd_to_start,
    secondary_structure,
    series_statistics,
    walker_trajectory,
)
from .tempering import (
    SwapAcceptance,
    TemperatureRoundTrips,
    at_temperature,
    communication_barrier,
    plot_replica_traces,
    plot_swap_acceptance,
    swap_acceptance,
    temperature_round_trips,
    tempering_section,
)
# free energies and kinetics (pymbar, deeptime and matplotlib are imported only when called)
from .mbar import Reweighted, TemperatureMBAR, mbar_runs, mbar_tempering, reduced_energies, temperature_mbar
from .free_energy_surface import FreeEnergySurface, free_energy_surface, plot_free_energy_surface
from .kinetics import (FirstPassageTimes, ImpliedTimescales, implied_timescales, kmeans_states,
                       mean_first_passage_times, plot_implied_timescales, timescale_reading)
from .free_energy_report import free_energy_sections, kinetics_section, mbar_section, surface_section

__all__ = [
    "ShortChainWarning",
    "autocorrelation",
    "integrated_autocorrelation_time",
    "effective_sample_size",
    "rhat",
    "mcse",
    "detect_equilibration",
    "Equilibration",
    "circular_mean",
    "circular_standard_error",
    # distributions
    "HistogramDistance",
    "distance_to_probabilities",
    "distance_to_density",
    "distance_to_reference",
    "KSResult",
    "energy_ks_test",
    "ks_test",
    "TemperatureEstimate",
    "configurational_temperature",
    "kinetic_temperature",
    # molecular (mdtraj is imported only when these are called)
    "to_trajectory",
    "phi_psi",
    "dihedrals",
    "distances",
    "RamachandranSurface",
    "ramachandran_free_energy",
    "StateCore",
    "ALANINE_DIPEPTIDE_STATES",
    "assign_states",
    "core_assignment",
    "transition_counts",
    "RoundTrips",
    "round_trip_times",
    "Populations",
    "state_populations",
    # a verdict on a prior: two runs' feature laws compared (matplotlib only for the PNG)
    "compare_distributions",
    "DistributionComparison",
    "jensen_shannon",
    # reports (matplotlib is imported only when a report is written)
    "report",
    "Report",
    # kinetic temperature with the real degrees of freedom
    "degrees_of_freedom",
    "kinetic_energy_law",
    "KineticTemperatureCheck",
    "kinetic_temperature_check",
    # proteins (mdtraj and matplotlib are imported only when these are called)
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
    # replica exchange (matplotlib is imported only when a plot is drawn)
    "at_temperature",
    "swap_acceptance",
    "SwapAcceptance",
    "temperature_round_trips",
    "TemperatureRoundTrips",
    "communication_barrier",
    "plot_replica_traces",
    "plot_swap_acceptance",
    "tempering_section",
    # MBAR over temperature ladders (pymbar)
    "reduced_energies",
    "TemperatureMBAR",
    "Reweighted",
    "temperature_mbar",
    "mbar_tempering",
    "mbar_runs",
    # free-energy surfaces with bootstrap errors
    "FreeEnergySurface",
    "free_energy_surface",
    "plot_free_energy_surface",
    # Markov state models (deeptime)
    "kmeans_states",
    "ImpliedTimescales",
    "implied_timescales",
    "FirstPassageTimes",
    "mean_first_passage_times",
    "plot_implied_timescales",
    "timescale_reading",
    # report sections
    "mbar_section",
    "surface_section",
    "kinetics_section",
    "free_energy_sections",
]
