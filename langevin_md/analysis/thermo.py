"""Kinetic temperature with the degrees of freedom that are really there.

At equilibrium the kinetic energy of N_dof independent velocity degrees of freedom is
Gamma-distributed, K ~ Gamma(N_dof/2, kT), so the kinetic temperature T_kin = 2K/(N_dof k_B)
has mean T and relative standard deviation sqrt(2/N_dof). Which N_dof? Not 3N: every
holonomic constraint removes one velocity degree of freedom, and OpenMM's ``CMMotionRemover``
removes the three of the centre-of-mass momentum. Particles of zero mass (virtual sites,
fixed atoms) carry none. Counting 3N anyway makes a correct simulation look 5-25 % too cold
(alanine dipeptide with bonds to hydrogen constrained and the centre of mass fixed has
3·22 − 12 − 3 = 51, not 66). This is the count OpenMM's own ``StateDataReporter`` uses.

The check then asks whether the mean T_kin is T within its standard error (|z| ≤ 5), with
the error taken from independent walkers (or, for one chain, from its autocorrelation), not
whether it lies "within 10 %", which is either far too loose for long runs or too strict for
short ones.
"""

from __future__ import annotations

import math
from typing import NamedTuple, Optional

import numpy as np

from ..units import MOLAR_GAS_CONSTANT_KJ_PER_MOL_K, strip

__all__ = ["degrees_of_freedom", "kinetic_energy_law", "KineticTemperatureCheck", "kinetic_temperature_check"]


def degrees_of_freedom(system, backend: str = "openmm") -> int:
    """Velocity degrees of freedom: 3·(massive particles) − constraints − 3 with ``CMMotionRemover``.

    Parameters
    ----------
    system : openmm.System, OpenMMSystem or System
        An OpenMM System (or anything with an ``openmm_system`` attribute) is counted as
        above: constraints between two massless particles are not counted, and the centre
        of mass removes 3 only when the System holds a ``CMMotionRemover`` and the executor
        applies it. Any other :class:`~langevin_md.systems.base.System` has
        ``prod(event_shape)`` less its constraints (the torch force field carries the OpenMM
        System's list).
    backend : {"openmm", "torch"}
        The executor that ran the dynamics. OpenMM applies a ``CMMotionRemover``; the torch
        executor removes no centre-of-mass motion, so it keeps those 3 (also for an
        ``engine="openmm"`` system, whose forces OpenMM computes but whose steps torch takes).

    Returns
    -------
    int
    """
    if backend not in ("openmm", "torch"):
        raise ValueError(f"backend must be 'openmm' or 'torch', got {backend!r}")
    omm = getattr(system, "openmm_system", system)
    if hasattr(omm, "getNumParticles") and hasattr(omm, "getNumConstraints"):
        masses = np.array([strip(omm.getParticleMass(i), "dalton") for i in range(omm.getNumParticles())])
        n = 3 * int(np.count_nonzero(masses > 0))
        for k in range(omm.getNumConstraints()):
            i, j, _ = omm.getConstraintParameters(k)
            if masses[i] > 0 or masses[j] > 0:
                n -= 1
        if backend == "openmm" and any(type(omm.getForce(k)).__name__ == "CMMotionRemover"
                                       for k in range(omm.getNumForces())):
            n -= 3
        if n < 1:
            raise ValueError(f"the System has no velocity degrees of freedom left (count {n})")
        return n
    shape = getattr(system, "event_shape", None)
    if shape is None:
        raise TypeError(f"system must be an openmm.System or a langevin_md System, got {type(system).__name__}")
    from ..integrators.constraints import constraints_of

    # The torch executor removes no centre-of-mass motion, but its constrained schemes
    # (SHAKE/RATTLE) remove one velocity component per constraint.
    constraints = constraints_of(system)
    n_constrained = 0 if constraints is None else len(constraints.distances)
    return int(math.prod(shape)) - n_constrained


def kinetic_energy_law(n_dof: int, kT: float):
    """The exact law of the total kinetic energy: ``scipy.stats.gamma(a=n_dof/2, scale=kT)``.

    Parameters
    ----------
    n_dof : int
        Velocity degrees of freedom (:func:`degrees_of_freedom`).
    kT : float
        Thermal energy (kJ/mol for molecular systems).
    """
    from scipy import stats

    if isinstance(n_dof, bool) or not isinstance(n_dof, (int, np.integer)) or n_dof < 1:
        raise ValueError(f"n_dof must be a positive integer, got {n_dof!r}")
    kT = float(kT)
    if not math.isfinite(kT) or kT <= 0:
        raise ValueError(f"kT must be a positive number, got {kT!r}")
    return stats.gamma(a=n_dof / 2.0, scale=kT)


class KineticTemperatureCheck(NamedTuple):
    """Mean kinetic temperature against the thermostat's, with its standard error.

    Attributes
    ----------
    temperature : float
        Mean kinetic temperature, 2⟨K⟩/(N_dof k_B) in K, or 2⟨K⟩/N_dof in energy units when
        the target was given as ``kT`` (``unit`` says which).
    standard_error : float
        Standard error of ``temperature``, same unit.
    expected : float
        The target, same unit.
    z : float
        (temperature − expected) / standard_error.
    passed : bool
        |z| ≤ ``z_max``.
    n_dof : int
    n_independent : float
        Walkers used for the error (or the effective sample size for one chain).
    expected_relative_sd : float
        sqrt(2/N_dof): the relative spread of one frame's kinetic temperature under the exact law.
    observed_relative_sd : float
        The frames' relative spread (a wrong N_dof or a broken thermostat shows here too).
    unit : str
        ``"K"`` or ``"kT"`` (energy units of the system).
    """

    temperature: float
    standard_error: float
    expected: float
    z: float
    passed: bool
    n_dof: int
    n_independent: float
    expected_relative_sd: float
    observed_relative_sd: float
    unit: str = "K"

    def __str__(self) -> str:
        verdict = "ok" if self.passed else "FAILED"
        name = "kinetic temperature" if self.unit == "K" else "kinetic kT"
        return (f"{name} {self.temperature:.4g} ± {self.standard_error:.2g} {self.unit} vs {self.expected:.4g} "
                f"{self.unit} (z = {self.z:+.2f}, N_dof = {self.n_dof}): {verdict}")


def kinetic_temperature_check(kinetic_energies, n_dof: Optional[int] = None, temperature=None,
                              z_max: float = 5.0, kT: Optional[float] = None) -> KineticTemperatureCheck:
    """Test the mean kinetic temperature against the target with a z-score (pass: |z| ≤ ``z_max``).

    Parameters
    ----------
    kinetic_energies : array_like or SampleResult
        Total kinetic energy of each frame, shape ``(n_frames, n_walkers)`` or ``(n_frames,)``
        (kJ/mol for molecular systems; burn-in already removed), or a result of a scheme with
        velocities, whose ``kinetic_energies`` are used.
    n_dof : int, optional
        Velocity degrees of freedom. Default for a result: :func:`degrees_of_freedom` of its
        system under the executor that made it (``metadata["backend"]``); required for arrays.
    temperature : float or openmm Quantity, optional
        The thermostat's temperature, K. Default for a result: its system's ``temperature``.
    z_max : float
        Pass when |z| ≤ this.
    kT : float, optional
        The target as a thermal energy instead (dimensionless systems); default for a result
        whose system has no ``temperature``: the result's ``kT``. Give one of ``temperature``
        and ``kT``.

    Returns
    -------
    KineticTemperatureCheck

    Notes
    -----
    With several walkers the standard error comes from the spread of the walkers' own
    means (independent chains: no autocorrelation estimate needed). With one chain it is
    sd·sqrt(τ/n) with τ the integrated autocorrelation time.
    """
    from .autocorrelation import effective_sample_size

    if hasattr(kinetic_energies, "kinetic_energies") and hasattr(kinetic_energies, "positions"):
        result = kinetic_energies
        if result.kinetic_energies is None:
            raise ValueError("this result has no kinetic energies (an overdamped or Metropolis scheme?)")
        system = getattr(result, "system", None)
        if n_dof is None:
            if system is None:
                raise ValueError("n_dof is required for a result without its system attached")
            backend = str(result.metadata.get("backend", "torch"))
            n_dof = degrees_of_freedom(system, "openmm" if backend.startswith("openmm") else "torch")
        if temperature is None and kT is None:
            if getattr(system, "temperature", None) is not None:
                temperature = system.temperature
            else:
                kT = float(result.kT)
        kinetic_energies = result.kinetic_energies
    k = np.asarray(kinetic_energies, dtype=np.float64)
    if k.ndim == 1:
        k = k[:, None]
    if k.ndim != 2 or k.shape[0] < 2:
        raise ValueError(f"kinetic_energies must have shape (n_frames >= 2, n_walkers) or (n_frames,), got {np.shape(kinetic_energies)}")
    if not np.all(np.isfinite(k)) or np.any(k < 0):
        raise ValueError("kinetic_energies must be finite and non-negative (kJ/mol)")
    if isinstance(n_dof, bool) or not isinstance(n_dof, (int, np.integer)) or n_dof < 1:
        raise ValueError(f"n_dof must be a positive integer, got {n_dof!r}")
    if (temperature is None) == (kT is None):
        raise ValueError("give exactly one of temperature (K) and kT (energy units) as the target")
    if temperature is not None:
        target = strip(temperature, "kelvin")
        if not math.isfinite(target) or target <= 0:
            raise ValueError(f"temperature must be a positive number of kelvin, got {temperature!r}")
        scale, unit = MOLAR_GAS_CONSTANT_KJ_PER_MOL_K, "K"
    else:
        target = float(kT)
        if not math.isfinite(target) or target <= 0:
            raise ValueError(f"kT must be a positive number, got {kT!r}")
        scale, unit = 1.0, "kT"
    z_max = float(z_max)
    t = 2.0 * k / (n_dof * scale)
    mean = float(t.mean())
    n_frames, n_walkers = t.shape
    if n_walkers >= 2:
        walker_means = t.mean(axis=0)
        se = float(walker_means.std(ddof=1) / math.sqrt(n_walkers))
        n_ind = float(n_walkers)
    else:
        ess = float(np.sum(effective_sample_size(t[:, 0])))
        se = float(t.std(ddof=1) / math.sqrt(max(ess, 1.0)))
        n_ind = ess
    z = (mean - target) / se if se > 0 else (0.0 if mean == target else math.inf)
    return KineticTemperatureCheck(
        temperature=mean,
        standard_error=se,
        expected=target,
        z=float(z),
        passed=bool(abs(z) <= z_max),
        n_dof=int(n_dof),
        n_independent=n_ind,
        expected_relative_sd=math.sqrt(2.0 / n_dof),
        observed_relative_sd=float(t.std() / mean) if mean > 0 else math.nan,
        unit=unit,
    )
