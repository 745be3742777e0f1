"""Local energy minimisation of every walker: OpenMM's minimiser or a batched L-BFGS.

:func:`minimize` takes positions of shape ``(n_walkers, *event_shape)`` (or one configuration
of shape ``event_shape``) and moves each walker downhill to a nearby local minimum of U:

* OpenMM-backed systems (:class:`~langevin_md.systems.openmm_system.OpenMMSystem`: anything
  with ``openmm_system`` and ``make_context``) use ``openmm.LocalEnergyMinimizer`` walker by
  walker, in one Context on the system's platform. It honours the System's constraints.
* Every other system (analytic toys, the batched torch force field, learned energies, sums)
  uses :func:`lbfgs`, a limited-memory BFGS (Nocedal 1980; Liu & Nocedal 1989) run on all
  walkers at once: one batched force call per line-search trial, with every walker keeping its
  own curvature history, step length and convergence test.

Why minimise before sampling: a structure straight from a PDB file or a model builder can
carry clashes whose forces are large enough to blow up the first Langevin steps (the
non-finite-state error). Minimising first removes them without changing what is sampled.

The convergence test is OpenMM's, and both paths stop on the same quantity, so one
``tolerance`` means the same for both. OpenMM's documentation calls it the root-mean-square
force; what its Reference and CPU minimiser (liblbfgs, ``platforms/reference/.../
ReferenceMinimize.cpp`` in OpenMM 8.6) really tests is

    ‖F‖₂ · max(1, r₀) / max(1, ‖x‖₂) ≤ tolerance,

with ‖F‖₂ the Euclidean norm of all force components, ‖x‖₂ that of all current coordinates
and r₀ = sqrt(Σ_i |x₀,i|² / N) the start's root-mean-square distance of the N particles from
the origin (:func:`force_criterion`). For a structure whose atoms sit a nanometre or more from
the origin this is the root-mean-square force per atom, sqrt(Σ_i |F_i|² / N) (√3 times the
RMS force component, and what OpenMM's GPU minimiser tests); for a small molecule centred at
the origin it is stricter. Measured on alanine dipeptide in OBC2 at tolerance 10 kJ/mol/nm
before this test was shared: L-BFGS stopping on the RMS component ended at −136.4 kJ/mol
(RMS component 9.6), OpenMM at −142.9 (RMS component 2.3, criterion 9.9).

References
----------
J. Nocedal, "Updating quasi-Newton matrices with limited storage", Math. Comp. 35, 773 (1980).
D. C. Liu and J. Nocedal, "On the limited memory BFGS method for large scale optimization",
Math. Program. 45, 503 (1989).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
import numpy as np
import torch

__all__ = ["Minimization", "minimize", "lbfgs", "force_criterion", "DEFAULT_MOLECULAR_TOLERANCE", "DEFAULT_ANALYTIC_TOLERANCE"]

#: OpenMM's default minimiser tolerance, kJ/mol/nm (RMS force component).
DEFAULT_MOLECULAR_TOLERANCE = 10.0
#: Default for dimensionless (analytic) systems, force units of the system.
DEFAULT_ANALYTIC_TOLERANCE = 1e-6

# Armijo sufficient-decrease constant and backtracking factor of the line search.
_ARMIJO_C1 = 1e-4
_BACKTRACK = 0.5
_MAX_BACKTRACKS = 40


@dataclass(frozen=True)
class Minimization:
    """What :func:`minimize` did, walker by walker.

    Attributes
    ----------
    positions : torch.Tensor, shape ``(n_walkers, *event_shape)`` (or ``event_shape`` when one
        configuration was passed)
        Minimised positions (nm for molecular systems), float64 on the CPU for OpenMM systems,
        otherwise in the input's dtype and device.
    initial_energy, final_energy : numpy.ndarray, shape ``(n_walkers,)``
        U before and after (kJ/mol for molecular systems).
    rms_force, max_force : numpy.ndarray, shape ``(n_walkers,)``
        Root-mean-square force component and largest per-coordinate |F| at the end
        (kJ/mol/nm for molecular systems).
    force_criterion : numpy.ndarray, shape ``(n_walkers,)``
        The quantity both methods compare with ``tolerance`` (:func:`force_criterion`) at the
        end, force units.
    iterations : numpy.ndarray of int64, shape ``(n_walkers,)``
        Optimiser iterations taken (accepted line-search steps for L-BFGS; OpenMM's L-BFGS
        iterations, summed over its restraint stages, for OpenMM systems).
    converged : numpy.ndarray of bool, shape ``(n_walkers,)``
        ``force_criterion <= tolerance`` (for constrained OpenMM systems: OpenMM's minimiser stopped
        on its own criterion before ``max_iterations``, since forces along constraints
        never vanish).
    tolerance : float
    method : str
        ``"openmm"`` or ``"lbfgs"``.
    n_force_evaluations : int
        Force evaluations: batched force calls of the L-BFGS (each evaluates every searching
        walker); for OpenMM the Context's force computations during the minimisation, summed
        over walkers, counted by a zero-force ``openmm.PythonForce`` on one particle.
    """

    positions: torch.Tensor
    initial_energy: np.ndarray
    final_energy: np.ndarray
    rms_force: np.ndarray
    max_force: np.ndarray
    iterations: np.ndarray
    converged: np.ndarray
    tolerance: float
    method: str
    n_force_evaluations: int = 0
    force_criterion: np.ndarray = None

    @property
    def energy_drop(self) -> np.ndarray:
        """U_initial − U_final per walker, shape ``(n_walkers,)`` (≥ 0)."""
        return self.initial_energy - self.final_energy

    def summary(self, energy_unit: str = "kJ/mol") -> str:
        """One line for a run log: how far the energy fell and how many walkers converged."""
        n = len(self.final_energy)
        return (
            f"minimised {n} walker(s) with {self.method}: energy {np.mean(self.initial_energy):.6g} -> "
            f"{np.mean(self.final_energy):.6g} {energy_unit} (mean; fell by {np.mean(self.energy_drop):.6g}), "
            f"{int(self.converged.sum())}/{n} converged to force criterion <= {self.tolerance:g}, "
            f"max iterations {int(self.iterations.max()) if n else 0}, "
            f"{self.n_force_evaluations} force evaluations"
        )


# --------------------------------------------------------------------------- argument checks
def _positive_int(name: str, value) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _is_openmm_system(system) -> bool:
    return hasattr(system, "openmm_system") and hasattr(system, "make_context")


def _tolerance(system, tolerance) -> float:
    from langevin_md.systems.base import check_positive

    if tolerance is None:
        return DEFAULT_MOLECULAR_TOLERANCE if system.units == "molecular" else DEFAULT_ANALYTIC_TOLERANCE
    if hasattr(tolerance, "value_in_unit"):
        from openmm import unit

        try:
            tolerance = tolerance.value_in_unit(unit.kilojoule_per_mole / unit.nanometer)
        except TypeError as exc:
            raise ValueError(f"tolerance must be a force (kJ/mol/nm), got {tolerance} ({exc})") from None
    return check_positive("tolerance", tolerance)


def _batched_positions(system, positions):
    """(tensor (n_walkers, *event_shape), was_single) from a tensor, array or Quantity."""
    if positions is None:
        ref = getattr(system, "positions", None)
        if ref is None:
            raise ValueError(
                f"positions are required for {type(system).__name__} (shape (n_walkers, "
                f"{', '.join(map(str, system.event_shape))}) or the event shape); only systems with a "
                "reference structure (OpenMMSystem) default to it"
            )
        positions = ref
    if hasattr(positions, "value_in_unit"):
        from openmm import unit

        try:
            positions = np.asarray(positions.value_in_unit(unit.nanometer), dtype=np.float64)
        except TypeError as exc:
            raise ValueError(f"positions must be lengths, got units {positions.unit} ({exc})") from None
    if isinstance(positions, torch.Tensor):
        x = positions.detach()
        if not x.is_floating_point():
            x = x.to(torch.float64)
    else:
        try:
            x = torch.as_tensor(np.asarray(positions, dtype=np.float64))
        except (TypeError, ValueError) as exc:
            raise TypeError(f"positions must be a tensor, array or Quantity, got {type(positions).__name__} ({exc})") from None
    shape = tuple(system.event_shape)
    single = tuple(x.shape) == shape
    if single:
        x = x.unsqueeze(0)
    if tuple(x.shape[1:]) != shape or x.ndim != len(shape) + 1 or x.shape[0] == 0:
        raise ValueError(
            f"positions have shape {tuple(x.shape) if not single else shape}; {type(system).__name__} expects "
            f"(n_walkers, {', '.join(map(str, shape))}) or ({', '.join(map(str, shape))})"
        )
    if not bool(torch.isfinite(x).all()):
        bad = torch.nonzero(~torch.isfinite(x.reshape(x.shape[0], -1)).all(1)).flatten().tolist()
        raise ValueError(f"positions are not finite for walker(s) {bad[:10]}; minimisation needs finite starts")
    return x.clone(), single


def _rms_and_max(forces: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    flat = forces.reshape(forces.shape[0], -1)
    return flat.pow(2).mean(1).sqrt(), flat.abs().amax(1)


def force_criterion(forces, positions, start, n_particles: int):
    """OpenMM's stopping quantity ‖F‖₂ · max(1, r₀) / max(1, ‖x‖₂) per walker (module docstring).

    Parameters
    ----------
    forces, positions, start : torch.Tensor, shape ``(n_walkers, n_coordinates)``
        Forces and current coordinates, and the coordinates the minimisation started from.
    n_particles : int
        N in r₀ = sqrt(Σ |x₀|² / N): atoms for molecules (``event_shape[0]`` of an ``(N, 3)``
        system), else the number of coordinates.

    Returns
    -------
    torch.Tensor, shape ``(n_walkers,)``
        Force units (kJ/mol/nm for molecular systems).
    """
    r0 = (start.pow(2).sum(1) / n_particles).sqrt().clamp_min(1.0)
    return forces.pow(2).sum(1).sqrt() * r0 / positions.pow(2).sum(1).sqrt().clamp_min(1.0)


def _n_particles(event_shape) -> int:
    shape = tuple(event_shape)
    return shape[0] if len(shape) == 2 and shape[1] == 3 else max(1, math.prod(shape))


# --------------------------------------------------------------------------- public entry point
def minimize(system, positions=None, tolerance=None, max_iterations: int = 1000, method: str = "auto") -> Minimization:
    """Move every walker to a nearby local minimum of the potential energy.

    Parameters
    ----------
    system : System
        Any :class:`~langevin_md.systems.base.System` with an energy (score-only models have
        none to minimise).
    positions : array_like or torch.Tensor or openmm Quantity, shape ``(n_walkers, *event_shape)``
        or ``event_shape``
        Starting positions (nm for molecular systems). Optional for OpenMM systems, whose
        reference structure is then minimised.
    tolerance : float or openmm Quantity, optional
        Converged when OpenMM's stopping quantity (:func:`force_criterion`: for atoms a
        nanometre or more from the origin, the RMS force per atom) is at most this
        (kJ/mol/nm for molecular systems), for both methods. Default: 10 kJ/mol/nm
        (OpenMM's default) for molecular systems, 1e-6 for dimensionless analytic ones.
    max_iterations : int
        Iteration limit per walker.
    method : {"auto", "openmm", "lbfgs"}
        ``"auto"``: OpenMM's ``LocalEnergyMinimizer`` for OpenMM systems, :func:`lbfgs`
        otherwise. ``"lbfgs"`` on an OpenMM system runs the batched L-BFGS on its forces
        (unconstrained systems only).

    Returns
    -------
    Minimization
        Minimised positions plus per-walker energies, forces, iterations and convergence.

    Raises
    ------
    ValueError
        For bad positions, tolerance or iteration limit; for score-only systems; for the
        L-BFGS on a system with constraints (it cannot keep them).

    Examples
    --------
    >>> system = lmd.systems.alanine_dipeptide()                       # doctest: +SKIP
    >>> m = lmd.minimize(system)                                      # doctest: +SKIP
    >>> result = lmd.sample(system, integrator, 1000, initial_positions=m.positions)  # doctest: +SKIP
    """
    from langevin_md.systems.base import System

    if not isinstance(system, System):
        raise TypeError(f"system must be a langevin_md System, got {type(system).__name__}")
    if getattr(system, "score_only", False):
        raise ValueError(
            f"{type(system).__name__} provides a score but no energy, so there is nothing to minimise; "
            "start from positions drawn some other way"
        )
    if method not in ("auto", "openmm", "lbfgs"):
        raise ValueError(f"method must be 'auto', 'openmm' or 'lbfgs', got {method!r}")
    tol = _tolerance(system, tolerance)
    max_iterations = _positive_int("max_iterations", max_iterations)
    x, single = _batched_positions(system, positions)
    use_openmm = method == "openmm" or (method == "auto" and _is_openmm_system(system))
    if use_openmm:
        if not _is_openmm_system(system):
            raise ValueError(f"method='openmm' needs an OpenMM-backed system, got {type(system).__name__}")
        out = _openmm_minimize(system, x, tol, max_iterations)
    else:
        if system.constrained:
            raise ValueError(
                f"{type(system).__name__} has holonomic constraints, which the batched L-BFGS cannot keep; "
                "minimise the OpenMMSystem itself (method='openmm') or build it with constraints=None"
            )
        out = lbfgs(system, x, tol, max_iterations)
    if single:
        out = _replace_positions(out, out.positions[0])
    return out


def _replace_positions(m: Minimization, positions) -> Minimization:
    from dataclasses import replace

    return replace(m, positions=positions)


# --------------------------------------------------------------------------- OpenMM path
def _counting_context(system, integrator):
    """A Context of a copy of ``system``'s ``openmm.System`` with a zero-force ``PythonForce``
    on particle 0 that counts force computations, and that counter (a one-item list)."""
    import copy

    import openmm

    count = [0]

    def compute(state):
        count[0] += 1  # called once per energy/force computation of the Context
        return 0.0, np.zeros((1, 3))

    counted = copy.deepcopy(system.openmm_system)
    counter = openmm.PythonForce(compute)
    counter.setParticles([0])
    counter.setUsesPeriodicBoundaryConditions(counted.usesPeriodicBoundaryConditions())
    counted.addForce(counter)
    context = openmm.Context(counted, integrator, openmm.Platform.getPlatformByName(system.platform_name),
                             dict(system.platform_properties))
    return context, count


def _openmm_minimize(system, x: torch.Tensor, tolerance: float, max_iterations: int) -> Minimization:
    import openmm

    class _Counter(openmm.MinimizationReporter):
        # OpenMM restarts its iteration index at each restraint stage; count every call.
        def __init__(self):
            super().__init__()
            self.calls = 0

        def report(self, iteration, x, grad, args):
            self.calls += 1
            return False

    xs = x.to(device="cpu", dtype=torch.float64).numpy()
    n = xs.shape[0]
    integrator = openmm.VerletIntegrator(0.001)
    context, evaluations = _counting_context(system, integrator)
    out = np.empty_like(xs)
    e0 = np.empty(n)
    e1 = np.empty(n)
    rms = np.empty(n)
    fmax = np.empty(n)
    fs = np.empty_like(xs)
    iters = np.zeros(n, dtype=np.int64)
    stopped_early = np.zeros(n, dtype=bool)
    start = np.empty_like(xs)
    n_evals = 0
    for i in range(n):
        context.setPositions(xs[i])
        state0 = context.getState(getEnergy=True, getPositions=True)
        e0[i] = state0.getPotentialEnergy()._value
        start[i] = state0.getPositions(asNumpy=True)._value
        counter = _Counter()
        before = evaluations[0]
        openmm.LocalEnergyMinimizer.minimize(context, tolerance, max_iterations, counter)
        n_evals += evaluations[0] - before
        state = context.getState(getEnergy=True, getForces=True, getPositions=True)
        out[i] = state.getPositions(asNumpy=True)._value
        e1[i] = state.getPotentialEnergy()._value
        f = np.asarray(state.getForces(asNumpy=True)._value)
        rms[i] = math.sqrt(float(np.mean(f * f)))
        fmax[i] = float(np.abs(f).max())
        fs[i] = f
        iters[i] = counter.calls
        stopped_early[i] = counter.calls < max_iterations
    del context, integrator
    criterion = force_criterion(torch.from_numpy(fs.reshape(n, -1)), torch.from_numpy(out.reshape(n, -1)),
                                torch.from_numpy(start.reshape(n, -1)), xs.shape[1]).numpy()
    converged = stopped_early if system.constrained else criterion <= tolerance
    return Minimization(torch.from_numpy(out), e0, e1, rms, fmax, iters, converged, tolerance, "openmm", n_evals,
                        criterion)


# --------------------------------------------------------------------------- batched L-BFGS
def lbfgs(system, positions: torch.Tensor, tolerance: float, max_iterations: int = 1000,
          history: int = 10, initial_step: float = 0.01) -> Minimization:
    """Batched limited-memory BFGS with a per-walker backtracking (Armijo) line search.

    Each walker w keeps its own last ``history`` pairs s = x_{k+1} − x_k, y = g_{k+1} − g_k
    (g = ∇U = −F) and its own step length; the search direction is d = −H_k g from the
    two-loop recursion with H₀ = (sᵀy / yᵀy) I from the newest pair. A trial x + αd is
    accepted when U(x + αd) ≤ U(x) + c₁ α gᵀd (c₁ = 1e-4); otherwise α is halved. Pairs with
    sᵀy ≤ 0 (no positive curvature) are skipped so H stays positive definite, and a direction
    that is not downhill is replaced by steepest descent with the walker's history cleared.
    Only walkers still searching are evaluated, in one batched force call per trial.

    Parameters
    ----------
    system : System
    positions : torch.Tensor, shape ``(n_walkers, *event_shape)``
    tolerance : float
        Converged when :func:`force_criterion` (OpenMM's stopping quantity) is at most this
        (force units).
    max_iterations : int
        Accepted steps per walker at most.
    history : int
        Number of (s, y) pairs kept per walker.
    initial_step : float
        Length of the first step (largest coordinate change, length units: nm for molecular
        systems), before any curvature is known.

    Returns
    -------
    Minimization
        Positions in the input's dtype and device.
    """
    from langevin_md.systems.base import check_positive

    tolerance = check_positive("tolerance", tolerance)
    max_iterations = _positive_int("max_iterations", max_iterations)
    history = _positive_int("history", history)
    initial_step = check_positive("initial_step", initial_step)
    shape = positions.shape
    n = shape[0]
    x = positions.detach().reshape(n, -1).clone()
    dim = x.shape[1]

    n_evals = 0

    def evaluate(flat):
        nonlocal n_evals
        n_evals += 1
        e, f = system.energy_and_forces(flat.reshape((flat.shape[0],) + tuple(shape[1:])))
        return e.detach().to(x.dtype), f.detach().reshape(flat.shape[0], -1).to(x.dtype)

    energy, forces = evaluate(x)
    if not bool(torch.isfinite(energy).all() and torch.isfinite(forces).all()):
        bad = torch.nonzero(~(torch.isfinite(energy) & torch.isfinite(forces).all(1))).flatten().tolist()
        raise ValueError(f"the energy or forces are not finite at the starting positions of walker(s) {bad[:10]}")
    e_start = energy.clone()
    x_start = x.clone()
    n_particles = _n_particles(shape[1:])
    grad = -forces
    S = torch.zeros((history, n, dim), dtype=x.dtype, device=x.device)
    Y = torch.zeros_like(S)
    rho = torch.zeros((history, n), dtype=x.dtype, device=x.device)
    gamma = torch.zeros(n, dtype=x.dtype, device=x.device)  # 0: no curvature known yet
    iterations = torch.zeros(n, dtype=torch.int64, device=x.device)
    active = force_criterion(forces, x, x_start, n_particles) > tolerance
    slot = 0
    for _ in range(max_iterations):
        if not bool(active.any()):
            break
        # two-loop recursion, newest pair first (slot - 1 is the newest)
        q = grad.clone()
        alphas = []
        order = [(slot - 1 - j) % history for j in range(history)]
        for k in order:
            a = rho[k] * (S[k] * q).sum(1)
            alphas.append(a)
            q = q - a[:, None] * Y[k]
        gmax = grad.abs().amax(1).clamp_min(torch.finfo(x.dtype).tiny)
        h0 = torch.where(gamma > 0, gamma, initial_step / gmax)
        r = h0[:, None] * q
        for k, a in zip(reversed(order), reversed(alphas)):
            b = rho[k] * (Y[k] * r).sum(1)
            r = r + (a - b)[:, None] * S[k]
        d = -r
        slope = (grad * d).sum(1)
        not_descent = ~(slope < 0) & active
        if bool(not_descent.any()):
            d[not_descent] = -(initial_step / gmax[not_descent])[:, None] * grad[not_descent]
            rho[:, not_descent] = 0.0
            gamma[not_descent] = 0.0
            slope = (grad * d).sum(1)

        # backtracking line search on the active walkers only
        step = torch.ones(n, dtype=x.dtype, device=x.device)
        searching = active.clone()
        new_x = x.clone()
        new_e = energy.clone()
        new_f = forces.clone()
        for _ in range(_MAX_BACKTRACKS):
            idx = torch.nonzero(searching).flatten()
            if idx.numel() == 0:
                break
            trial = x[idx] + step[idx, None] * d[idx]
            e_t, f_t = evaluate(trial)
            ok = torch.isfinite(e_t) & torch.isfinite(f_t).all(1) & (
                e_t <= energy[idx] + _ARMIJO_C1 * step[idx] * slope[idx])
            good = idx[ok]
            new_x[good] = trial[ok]
            new_e[good] = e_t[ok]
            new_f[good] = f_t[ok]
            searching[good] = False
            step[idx[~ok]] *= _BACKTRACK
        # walkers whose search failed cannot make progress from here: they stop (below)
        moved = active & ~searching
        s = new_x - x
        new_grad = -new_f
        yv = new_grad - grad
        sy = (s * yv).sum(1)
        yy = (yv * yv).sum(1)
        keep = moved & (sy > 0)
        S[slot] = torch.where(keep[:, None], s, torch.zeros_like(s))
        Y[slot] = torch.where(keep[:, None], yv, torch.zeros_like(yv))
        rho[slot] = torch.where(keep, 1.0 / torch.where(keep, sy, torch.ones_like(sy)), torch.zeros_like(sy))
        gamma = torch.where(keep, sy / torch.where(keep, yy, torch.ones_like(yy)), gamma)
        slot = (slot + 1) % history
        x, energy, forces, grad = new_x, new_e, new_f, new_grad
        iterations += moved.to(torch.int64)
        active = active & ~searching & (force_criterion(forces, x, x_start, n_particles) > tolerance)

    rms, fmax = _rms_and_max(forces)
    criterion = force_criterion(forces, x, x_start, n_particles)
    converged = criterion <= tolerance
    return Minimization(
        positions=x.reshape(shape),
        initial_energy=e_start.cpu().numpy().astype(np.float64),
        final_energy=energy.cpu().numpy().astype(np.float64),
        rms_force=rms.cpu().numpy().astype(np.float64),
        max_force=fmax.cpu().numpy().astype(np.float64),
        iterations=iterations.cpu().numpy(),
        converged=converged.cpu().numpy(),
        tolerance=float(tolerance),
        method="lbfgs",
        n_force_evaluations=n_evals,
        force_criterion=criterion.cpu().numpy().astype(np.float64),
    )
