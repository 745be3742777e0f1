"""The Boltzmann-target protocol, and weighted sums of targets.

A system describes p(x) ∝ exp(−U(x)/kT). Implementations provide ``event_shape``, ``kT``,
``masses`` and ``_energy_and_forces``; this base class adds input checks, arithmetic
(``a + b``, ``0.5 * a``), default initial positions and, where a system has one, an exact
sampler that runs start from only when asked (``initial_positions="exact"``).
"""

from __future__ import annotations

import math
from typing import NamedTuple, Optional, Sequence

import numpy as np
import torch


def check_positive(name: str, value, allow_zero: bool = False) -> float:
    """Return ``value`` as a float, or raise ``ValueError`` naming it and what was expected."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    ok = v >= 0 if allow_zero else v > 0
    if not math.isfinite(v) or not ok:
        what = "non-negative" if allow_zero else "positive"
        raise ValueError(f"{name} must be a finite {what} number, got {value!r}")
    return v


class ExactMarginal(NamedTuple):
    """A system's exact Boltzmann law of one coordinate, binned and as a density.

    Attributes
    ----------
    edges : numpy.ndarray, shape ``(n_bins + 1,)``
        Increasing bin edges (those asked for, or the system's own tabulation).
    probabilities : numpy.ndarray, shape ``(n_bins,)``
        Exact probability of each bin; mass outside the edges is not counted.
    grid : numpy.ndarray, shape ``(n_grid,)``
        Points spanning the edges, for plotting.
    density : numpy.ndarray, shape ``(n_grid,)``
        Exact normalised marginal density at ``grid`` (1/length).
    """

    edges: np.ndarray
    probabilities: np.ndarray
    grid: np.ndarray
    density: np.ndarray


def check_edges(edges) -> np.ndarray:
    """``edges`` as a strictly increasing float64 array of at least two values (else ValueError)."""
    e = np.asarray(edges, dtype=np.float64)
    if e.ndim != 1 or e.size < 2 or not np.all(np.diff(e) > 0):
        raise ValueError(f"edges must be a strictly increasing 1-D array of >= 2 values, got shape {e.shape}")
    return e


def per_coordinate(name: str, value, dim: int) -> np.ndarray:
    """A positive scalar broadcast to, or an array of, shape ``(dim,)`` (float64; else ValueError)."""
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim == 0:
        arr = np.full(dim, float(arr))
    if arr.shape != (dim,):
        raise ValueError(f"{name} must be a scalar or have shape ({dim},), got shape {arr.shape}")
    for v in arr:
        check_positive(name, v)
    return arr


def check_axis(axis, dim: int) -> int:
    """``axis`` as an int in ``[0, dim)`` (else ValueError naming it)."""
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)) or not 0 <= axis < dim:
        raise ValueError(f"axis must be an integer in [0, {dim}), got {axis!r}")
    return int(axis)


class System:
    """Base class of Boltzmann targets p(x) ∝ exp(−U(x)/kT).

    Subclasses set ``event_shape`` (tuple), ``kT`` (float, energy units) and ``masses``
    (numpy float64, shape ``event_shape[:1]``: per coordinate for analytic systems of shape
    ``(dim,)``, per particle for molecular systems of shape ``(n_particles, 3)``), and
    implement :meth:`_energy_and_forces`.

    Attributes
    ----------
    constrained : bool
        True when the system carries holonomic constraints (only OpenMM systems do).
    score_only : bool
        True when forces come from a score model with no energy (Metropolis schemes refuse it).
    units : str
        ``"reduced"`` (kT and energies in arbitrary reduced units, the default) or
        ``"molecular"`` (nm, ps, amu, kJ/mol; temperatures in kelvin through
        :func:`langevin_md.units.kT_from_temperature`). Code that must tell the two apart reads
        this attribute and nothing else.
    """

    event_shape: tuple = ()
    kT: float = 1.0
    masses: np.ndarray
    topology = None
    constrained: bool = False
    score_only: bool = False
    units: str = "reduced"

    # ----------------------------------------------------------------- energy and forces
    def energy_and_forces(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Potential energy and forces for a batch of walkers.

        Parameters
        ----------
        x : torch.Tensor, shape ``(n_walkers, *event_shape)``
            Positions (nm for molecular systems, dimensionless otherwise).

        Returns
        -------
        energy : torch.Tensor, shape ``(n_walkers,)``
            U(x) in energy units (kJ/mol for molecular systems).
        forces : torch.Tensor, shape ``(n_walkers, *event_shape)``
            −∇U(x), same dtype and device as ``x``.
        """
        self.check_positions(x)
        return self._energy_and_forces(x)

    def energy(self, x: torch.Tensor) -> torch.Tensor:
        """U(x), shape ``(n_walkers,)``."""
        return self.energy_and_forces(x)[0]

    def _energy_and_forces(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError(f"{type(self).__name__} must implement _energy_and_forces")

    def check_positions(self, x) -> None:
        """Raise a clear error unless ``x`` is a floating tensor of shape ``(n, *event_shape)``."""
        if not isinstance(x, torch.Tensor):
            raise TypeError(
                f"positions must be a torch.Tensor of shape (n_walkers, {_fmt(self.event_shape)}), "
                f"got {type(x).__name__}"
            )
        if tuple(x.shape[1:]) != tuple(self.event_shape) or x.ndim != len(self.event_shape) + 1:
            raise ValueError(
                f"positions have shape {tuple(x.shape)}; {type(self).__name__} expects "
                f"(n_walkers, {_fmt(self.event_shape)})"
            )
        if not x.is_floating_point():
            raise TypeError(f"positions must be floating point, got dtype {x.dtype}")

    # ----------------------------------------------------------------- helpers
    def dof_masses(self, like: torch.Tensor) -> torch.Tensor:
        """Masses broadcastable to ``(n_walkers, *event_shape)``, on ``like``'s dtype/device.

        The same tensor on every call for one dtype and device (integrators cache what they
        derive from it by identity).
        """
        cache = self.__dict__.setdefault("_tensor_cache", {})
        key = ("dof_masses", like.dtype, like.device)
        m = cache.get(key)
        if m is None:  # hot path: nothing is built before this lookup
            (m,) = self._as_tensors(like, "masses", np.asarray(self.masses, dtype=np.float64))
            m = cache[key] = m.reshape(m.shape + (1,) * (len(self.event_shape) - 1))
        return m

    def _as_tensors(self, like: torch.Tensor, name: str, *values) -> tuple:
        """``values`` as tensors of ``like``'s dtype and device, cached per (name, dtype, device).

        Hot paths call this every step; the conversion runs once per dtype and device.
        """
        cache = self.__dict__.setdefault("_tensor_cache", {})
        key = (name, like.dtype, like.device)
        out = cache.get(key)
        if out is None:
            out = tuple(torch.as_tensor(v, dtype=like.dtype, device=like.device) for v in values)
            cache[key] = out
        return out

    def initial_positions(self, n_walkers: int, generator) -> torch.Tensor:
        """The default start: shape ``(n_walkers, *event_shape)``, float64 on the CPU.

        The default here is a standard normal draw around the origin; systems with a natural
        starting structure (a minimum, the modes, a reference structure) override it. A
        default start must never be an exact draw from the target, nor encode its answer
        (e.g. walkers shared between modes in proportion to the mode weights): a sampler
        that does not move would then still reproduce the target's statistics. Exact draws
        are :meth:`exact_samples`, asked for explicitly (``initial_positions="exact"``).

        Parameters
        ----------
        n_walkers : int
        generator : langevin_md.random.WalkerRNG
            The walkers' streams; ``generator.walker_indices`` are their global indices, so
            walker ``i`` starts at the same point in a shard as in the full run.
        """
        return generator.normal(self.event_shape, dtype=torch.float64).cpu()

    def exact_samples(self, n_walkers: int, generator) -> torch.Tensor:
        """Independent exact draws from the Boltzmann density, one per walker.

        For tests of stationary laws only (``sample(..., initial_positions="exact")``): a
        run started here reproduces the target even when its sampler never moves. Systems
        that can draw exactly override this (:data:`EXACT_SAMPLE_SYSTEMS`); the others
        refuse.

        Parameters
        ----------
        n_walkers : int
        generator : langevin_md.random.WalkerRNG
            Walker ``i``'s draw comes from walker ``i``'s stream only.

        Returns
        -------
        torch.Tensor, shape ``(n_walkers, *event_shape)``, float64 on the CPU.

        Raises
        ------
        ValueError
            Always, here: this system has no exact sampler.
        """
        raise ValueError(no_exact_samples_message(self))

    # ----------------------------------------------------------------- exact answers
    def exact_marginal(self, axis: int, edges) -> Optional[ExactMarginal]:
        """The exact Boltzmann law of coordinate ``axis``, or None when it is not known.

        Analytic systems whose marginals are known in closed form (or by quadrature)
        override this; reports and tests compare histograms with it.

        Parameters
        ----------
        axis : int
            Coordinate index of an ``(dim,)`` system.
        edges : array_like, shape ``(n_bins + 1,)``
            Suggested bin edges; a system that tabulates its law on its own grid may return
            different edges (the returned ones are the ones to bin with).
        """
        return None

    def exact_energy_law(self):
        """The exact law of the potential energy U under p, as a frozen ``scipy.stats``
        distribution (energy units), or None when it is not known."""
        return None

    @property
    def n_dof(self) -> int:
        """Number of degrees of freedom (coordinates), before constraints."""
        return int(math.prod(self.event_shape))

    # ----------------------------------------------------------------- arithmetic
    def __add__(self, other: "System") -> "SumSystem":
        if not isinstance(other, System):
            return NotImplemented
        return SumSystem([(1.0, self), (1.0, other)])

    def __mul__(self, weight) -> "SumSystem":
        if isinstance(weight, torch.Tensor) or not isinstance(weight, (int, float, np.floating, np.integer)):
            return NotImplemented
        w = float(weight)
        if not math.isfinite(w):
            raise ValueError(f"a system's weight must be finite, got {weight!r}")
        return SumSystem([(w, self)])

    __rmul__ = __mul__

    def __repr__(self) -> str:
        return f"{type(self).__name__}(event_shape={self.event_shape}, kT={self.kT:g})"


def walker_indices(generator, n_walkers: int) -> np.ndarray:
    """Global indices of the walkers being started, ``(n_walkers,)`` int64.

    ``generator.walker_indices`` for a :class:`~langevin_md.random.WalkerRNG` (so a shard's
    walkers start where they would in the full run), else ``0 … n_walkers − 1``.
    """
    if isinstance(n_walkers, bool) or not isinstance(n_walkers, (int, np.integer)) or n_walkers < 1:
        raise ValueError(f"n_walkers must be a positive integer, got {n_walkers!r}")
    idx = getattr(generator, "walker_indices", None)
    if idx is None:
        return np.arange(int(n_walkers), dtype=np.int64)
    idx = np.asarray(idx, dtype=np.int64)
    if idx.shape != (int(n_walkers),):
        raise ValueError(f"n_walkers={n_walkers!r} but the generator serves {idx.size} walkers")
    return idx


#: Systems whose :meth:`System.exact_samples` draws exactly (the condition in brackets).
EXACT_SAMPLE_SYSTEMS = ("Harmonic", "GaussianMixture (at kT = 1)", "DoubleWell", "UniformBox")


def no_exact_samples_message(system: "System") -> str:
    """Why ``system`` refuses ``initial_positions="exact"``, and which systems accept it."""
    return (f"initial_positions=\"exact\": {system!r} has no exact sampler; exact starts exist for "
            f"{', '.join(EXACT_SAMPLE_SYSTEMS)}. Leave initial_positions unset for the system's "
            "documented start, or pass positions of shape (n_walkers, "
            f"{_fmt(system.event_shape)})")


def _fmt(shape: Sequence[int]) -> str:
    return ", ".join(str(s) for s in shape)


class SumSystem(System):
    """A weighted sum of systems: U(x) = Σ_i w_i U_i(x), at the common kT.

    Every term must have the same ``event_shape`` and ``kT``; masses and topology are taken
    from the first term that has them (the parts must describe the same particles).

    Parameters
    ----------
    terms : list of (float, System)
    """

    def __init__(self, terms: list[tuple[float, System]]):
        flat: list[tuple[float, System]] = []
        for w, s in terms:
            if isinstance(s, SumSystem):
                flat.extend((w * w2, s2) for w2, s2 in s.terms)
            else:
                flat.append((float(w), s))
        first = flat[0][1]
        for _, s in flat[1:]:
            if tuple(s.event_shape) != tuple(first.event_shape):
                raise ValueError(
                    f"cannot add {type(s).__name__} with event_shape {tuple(s.event_shape)} to "
                    f"{type(first).__name__} with event_shape {tuple(first.event_shape)}: the "
                    "terms of a sum must describe the same coordinates"
                )
            if not math.isclose(s.kT, first.kT, rel_tol=1e-9):
                raise ValueError(
                    f"cannot add {type(s).__name__} at kT={s.kT:g} to {type(first).__name__} at "
                    f"kT={first.kT:g}: the terms of a sum must share one temperature"
                )
        self.terms = flat
        # Molecular when any term is: a learned prior or bias (TorchEnergy, ScoreModel) declares
        # "reduced" by default yet is trained in the force field's kJ/mol, so a mix is allowed
        # and the molecular term's units win (as its topology does, below).
        self.units = "molecular" if any(s.units == "molecular" for _, s in flat) else "reduced"
        self.event_shape = tuple(first.event_shape)
        self.kT = first.kT
        self.masses = first.masses
        self.topology = next((s.topology for _, s in flat if s.topology is not None), None)
        self.constrained = any(s.constrained for _, s in flat)
        # A sum with a score-only term has no energy either: Metropolis schemes must refuse it.
        self.score_only = any(getattr(s, "score_only", False) for _, s in flat)

    def _energy_and_forces(self, x):
        energy = None
        forces = None
        for w, s in self.terms:
            e, f = s._energy_and_forces(x)
            energy = w * e if energy is None else energy + w * e
            forces = w * f if forces is None else forces + w * f
        return energy, forces

    def energy_components(self, x: torch.Tensor) -> list:
        """Each term's own energy, unweighted: a list of ``(weight, system, energy)``.

        ``energy`` has shape ``(n_walkers,)``; Σ weight · energy is U(x). Use it to report a
        force field's energy apart from a prior's (whose additive constant is arbitrary).
        """
        self.check_positions(x)
        return [(w, s, s._energy_and_forces(x)[0]) for w, s in self.terms]

    def initial_positions(self, n_walkers, generator):
        """The first term's default start."""
        return self.terms[0][1].initial_positions(n_walkers, generator)

    def exact_samples(self, n_walkers, generator):
        """The term's exact draws when the sum is one term of weight 1; otherwise refused
        (a weighted or summed energy has no exact sampler here)."""
        if len(self.terms) == 1 and self.terms[0][0] == 1.0:
            return self.terms[0][1].exact_samples(n_walkers, generator)
        raise ValueError(no_exact_samples_message(self))

    def __repr__(self) -> str:
        return " + ".join(f"{w:g} * {s!r}" for w, s in self.terms)
