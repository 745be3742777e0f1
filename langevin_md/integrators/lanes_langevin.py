"""BAOAB on the fused force kernels' lanes layout: many steps with no torch op between them.

The eager :class:`~langevin_md.integrators.underdamped.BAOAB` step is a dozen torch ops on
``(n_walkers, n_atoms, 3)`` tensors around one force call; for a small molecule those ops,
not the arithmetic, are much of a step. When every term of a force field runs in a fused
numba kernel (:class:`~langevin_md.forcefield.fused.module.FusedForceField` with
:attr:`~langevin_md.forcefield.fused.module.FusedForceField.lanes_ready`), :class:`LanesBAOAB`
keeps positions, velocities and forces in the kernels' lanes layout
(:mod:`langevin_md.forcefield.fused.lanes`) for a whole segment of steps: per step, one numba
call does the kick, drift, Ornstein–Uhlenbeck step and drift of the splitting, one call per
kernel family evaluates the forces, and the layout is converted back only at the segment's end.

The step is :class:`~langevin_md.integrators.underdamped.BAOAB`'s (Leimkuhler & Matthews,
AMRX 2013), with c = exp(−γh):

    v ← v + (h/2) F(x)/m,  x ← x + (h/2) v,  v ← c v + √(1 − c²) √(kT/m) ξ,
    x ← x + (h/2) v,  v ← v + (h/2) F(x)/m,

each operation written as the eager step writes it (``(τ/m)·F + v``, ``τ·v + x``,
``(√(1 − c²) √(kT/m))·ξ + c·v``), and the normal deviates ξ are drawn from the same
per-walker streams in the same order (:meth:`~langevin_md.random.WalkerRNG.normal`, one draw
of ``(n_atoms, 3)`` per step). No operation is fused or reordered (numba without fastmath), so
without constraints positions, velocities, energies and forces are bitwise those of the
eager step on the same fused force field, and a run may switch between the two at any step.

With holonomic constraints (HBonds, rigid water) the step is the eager constrained BAOAB
(Leimkuhler & Matthews, Proc. R. Soc. A 472, 20160138 (2016), as OpenMM's
``LangevinMiddleIntegrator``): A O A from x₀ to x̃, one SHAKE x' = x̃ + M⁻¹G(x₀)ᵀλ with
v ← v + (x' − x̃)/h, forces, the last kick, and RATTLE's projection of v onto the tangent
space, with SHAKE and RATTLE in the lanes kernels of
:mod:`~langevin_md.integrators.fused_constraints`. Those iterate each walker to its own
convergence where the torch solver iterates the batch together, so constrained runs agree
with the eager step to the SHAKE tolerance (1e-12 relative in float64), not bitwise.
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np
import torch
from numba import njit, prange

from langevin_md.forcefield.fused.lanes import block_size, energies_from_lanes, from_lanes, to_lanes
from langevin_md.forcefield.fused.module import numba_threads
from langevin_md.integrators.base import UnderdampedState, evolve
import langevin_md.integrators.fused_constraints as fused_constraints
from langevin_md.integrators.constraints import MAX_ITERATIONS, ConstraintError, constraint_solver
from langevin_md.integrators.fused_constraints import LaneConstraints
from langevin_md.integrators.underdamped import BAOAB
from langevin_md.integrators.lanes_noise import NormalLanes
from langevin_md.random import WalkerRNG
from langevin_md.systems.constraints import constraints_of


@njit(cache=True, fastmath=False, error_model="numpy", boundscheck=False)
def _kick_block(v, f, kick):
    """v ← kick[a]·f + v on one block ``(n_atoms, 3, B)``; ``kick[a]`` = (h/2)/m_a."""
    for a in range(v.shape[0]):
        k = kick[a]
        for c in range(3):
            va, fa = v[a, c], f[a, c]
            for b in range(v.shape[2]):
                va[b] = k * fa[b] + va[b]


@njit(cache=True, fastmath=False, error_model="numpy", boundscheck=False)
def _open_block(x, x0, v, f, e, xi, kick, half_h, c, noise, first, keep_start):
    """The end kick of the previous step (unless ``first``), then B A O A of this one; zeroes f and e.

    ``kick[a]`` = (h/2)/m_a, ``noise[a]`` = √(1 − c²)·√(kT/m_a), ``xi`` the step's normal
    deviates in lanes (not read when c = 1: a frictionless step draws none). With
    ``keep_start`` the positions the step starts from are copied to ``x0`` (SHAKE's
    reference); x then holds the unconstrained x̃ = x + (h/2) v + (h/2) v_O, with v_O the
    unprojected O step (SHAKE ignores normal components, see :mod:`~langevin_md.integrators.underdamped`).
    """
    lanes = v.shape[2]
    for a in range(v.shape[0]):
        k, s = kick[a], noise[a]
        for d in range(3):
            xa, x0a, va, fa, za = x[a, d], x0[a, d], v[a, d], f[a, d], xi[a, d]
            for b in range(lanes):
                vb = va[b]
                if not first:
                    vb = k * fa[b] + vb  # B(h/2) that ends the previous step
                vb = k * fa[b] + vb  # B(h/2)
                if keep_start:
                    x0a[b] = xa[b]
                xb = half_h * vb + xa[b]  # A(h/2)
                if c != 1.0:
                    vb = s * za[b] + c * vb  # O(h)
                xa[b] = half_h * vb + xb  # A(h/2)
                va[b] = vb
                fa[b] = 0.0
    for b in range(lanes):
        e[b] = 0.0


@njit(parallel=True, cache=True, fastmath=False, error_model="numpy")
def _open_parallel(x, x0, v, f, e, xi, kick, half_h, c, noise, first, keep_start):
    for k in prange(x.shape[0]):
        _open_block(x[k], x0[k], v[k], f[k], e[k], xi[k], kick, half_h, c, noise, first, keep_start)


@njit(cache=True, fastmath=False, error_model="numpy")
def _open_serial(x, x0, v, f, e, xi, kick, half_h, c, noise, first, keep_start):
    for k in range(x.shape[0]):
        _open_block(x[k], x0[k], v[k], f[k], e[k], xi[k], kick, half_h, c, noise, first, keep_start)


@njit(parallel=True, cache=True, fastmath=False, error_model="numpy")
def _kick_parallel(v, f, kick):
    for k in prange(v.shape[0]):
        _kick_block(v[k], f[k], kick)


@njit(cache=True, fastmath=False, error_model="numpy")
def _kick_serial(v, f, kick):
    for k in range(v.shape[0]):
        _kick_block(v[k], f[k], kick)


class LanesBAOAB:
    """Runs :class:`~langevin_md.integrators.underdamped.BAOAB` segments on a fused force field's lanes.

    Build with :func:`lanes_runner`, which says whether a (system, integrator, state) qualifies.

    Parameters
    ----------
    fused : FusedForceField
        The system's fused kernels for the state's dtype, every term in a lanes kernel.
    timestep, friction : float
        h (ps) and γ (1/ps) of the BAOAB integrator.
    inv_mass, thermal_velocity : torch.Tensor, shape ``(n_atoms, 1)``
        1/m and √(kT/m), the eager step's own tensors (so the products are the same numbers).
    constraints : LaneConstraints, optional
        The system's distance constraints packed for the lanes kernels
        (:func:`~langevin_md.integrators.fused_constraints.pack_clusters`); None for none.
    tolerance : float
        SHAKE's relative bond-length tolerance (the eager solver's), with ``constraints``.
    """

    def __init__(self, fused, timestep: float, friction: float, inv_mass: torch.Tensor,
                 thermal_velocity: torch.Tensor, constraints: Optional[LaneConstraints] = None,
                 tolerance: float = 0.0):
        self.fused = fused
        self.constraints = constraints
        self.tolerance = tolerance
        self._normals: Optional[NormalLanes] = None
        h = timestep
        self.h = h
        self.half_h = 0.5 * h
        self.c = math.exp(-friction * h)
        # the eager step's per-atom factors: (τ · 1/m) and (√(1 − c²) · √(kT/m)), as torch forms them
        self.kick = np.ascontiguousarray((0.5 * h * inv_mass).reshape(-1).numpy())
        self.noise = np.ascontiguousarray((math.sqrt(1.0 - self.c * self.c) * thermal_velocity)
                                          .reshape(-1).numpy())

    def run(self, state: UnderdampedState, generator, n_steps: int) -> UnderdampedState:
        """``n_steps`` BAOAB steps from ``state``, drawing from ``generator`` (advanced as the eager steps do)."""
        torch_threads = torch.get_num_threads()
        try:
            return self._run(state, generator, n_steps)
        finally:
            # numba's OpenMP layer sets the OpenMP thread count, which torch reads as its own
            if torch.get_num_threads() != torch_threads:
                torch.set_num_threads(torch_threads)

    def _run(self, state: UnderdampedState, generator, n_steps: int) -> UnderdampedState:
        x, v, f = (t.detach().numpy() for t in (state.positions, state.velocities, state.forces))
        n = x.shape[0]
        lanes = block_size(n)
        xl, vl, fl = to_lanes(x, lanes), to_lanes(v, lanes), to_lanes(f, lanes)
        el = np.zeros(xl.shape[:1] + xl.shape[3:], dtype=xl.dtype)
        parallel = self.fused.set_threads(xl.shape[0])
        opening = _open_parallel if parallel else _open_serial
        kick = _kick_parallel if parallel else _kick_serial
        xi = np.zeros_like(xl)
        event = tuple(state.positions.shape[1:])
        normals = self._normals_for(generator, event[0], lanes)
        x0 = np.empty_like(xl) if self.constraints is not None else None
        for step in range(n_steps):
            if self.c == 1.0:  # frictionless: no noise, and no random numbers drawn (as eager)
                pass
            elif normals is not None:
                xi = normals.draw()
            else:
                xi = to_lanes(generator.normal(event, dtype=state.positions.dtype).numpy(), lanes)
            if self.constraints is None:
                opening(xl, xl, vl, fl, el, xi, self.kick, self.half_h, self.c, self.noise, step == 0, False)
                self.fused.accumulate_lanes(xl, fl, el, parallel)
            else:
                self._constrained_step(xl, x0, vl, fl, el, xi, parallel, n)
        if self.constraints is None:
            kick(vl, fl, self.kick)
        positions = torch.from_numpy(from_lanes(xl, n))
        return evolve(state, positions=positions, velocities=torch.from_numpy(from_lanes(vl, n)),
                      forces=torch.from_numpy(from_lanes(fl, n)),
                      energy=torch.from_numpy(energies_from_lanes(el, n).copy()))

    def _normals_for(self, generator, n_atoms: int, lanes: int) -> Optional[NormalLanes]:
        """The :class:`NormalLanes` of ``generator`` (kept from segment to segment: its buffers), or None off the CPU."""
        if not isinstance(generator, WalkerRNG) or generator.device.type != "cpu":
            return None
        held = self._normals
        if held is None or held.generator is not generator or held.out.shape[3] != lanes:
            held = self._normals = NormalLanes(generator, n_atoms, lanes)
        held.chunks = numba_threads(generator.n_walkers)
        return held

    def _constrained_step(self, xl, x0, vl, fl, el, xi, parallel: bool, n_walkers: int) -> None:
        """One constrained BAOAB step in lanes: B, A O A with one SHAKE (and its velocity correction), forces, B, RATTLE."""
        arrays = self.constraints.arrays()
        # the previous step ended with its own kick and projection: no end kick here
        (_open_parallel if parallel else _open_serial)(
            xl, x0, vl, fl, el, xi, self.kick, self.half_h, self.c, self.noise, True, True)
        shake = fused_constraints.shake_velocities_lanes_parallel if parallel else \
            fused_constraints.shake_velocities_lanes_serial
        failed = shake(x0, xl, vl, 1.0 / self.h, *arrays, self.tolerance, MAX_ITERATIONS)
        if failed:
            self._shake_failed(xl, n_walkers)
        self.fused.accumulate_lanes(xl, fl, el, parallel)
        (_kick_parallel if parallel else _kick_serial)(vl, fl, self.kick)
        (fused_constraints.project_lanes_parallel if parallel else fused_constraints.project_lanes)(xl, vl, *arrays)

    def _shake_failed(self, xl, n_walkers: int):
        x = from_lanes(xl, n_walkers)
        atoms = self.constraints.atoms
        r2 = ((x[:, atoms[:, 0]] - x[:, atoms[:, 1]]) ** 2).sum(-1)
        err = 0.5 * np.abs((r2 - self.constraints.dist2) * self.constraints.inv_dist2).max(axis=1)
        bad = np.flatnonzero(~(err < self.tolerance)).tolist()
        raise ConstraintError(
            f"SHAKE did not reach relative tolerance {self.tolerance:g} in {MAX_ITERATIONS} iterations for "
            f"walkers {bad[:10]} (worst error {float(np.nanmax(err)) if np.isfinite(err).any() else float('nan'):.3g}); "
            "the step moved constrained atoms too far. Use a smaller timestep, or start from positions that "
            "satisfy the constraints.", walkers=bad)


def lanes_runner(system, integrator, state) -> Optional[LanesBAOAB]:
    """A :class:`LanesBAOAB` for this run, or None when the eager step must run.

    It applies to exactly :class:`~langevin_md.integrators.underdamped.BAOAB` on a system whose
    ``lanes_kernels`` gives a fused force field with every term in a lanes kernel (a
    :class:`~langevin_md.systems.torch_forcefield.TorchForceField` in double precision on the
    CPU, with or without distance constraints), a float64 state and one temperature for all
    walkers.
    """
    if type(integrator) is not BAOAB or state.kT is not None or not isinstance(state, UnderdampedState):
        return None
    if state.positions.dtype != torch.float64:
        # float32 state: torch rounds τ·v in float32 where numba would widen it; eager steps
        return None
    lanes_kernels = getattr(system, "lanes_kernels", None)
    fused = lanes_kernels(state.positions) if lanes_kernels is not None else None
    if fused is None:
        return None
    solver = constraint_solver(system, state.positions)
    constraints = None
    if solver is not None:
        constraints = fused_constraints.pack_clusters(constraints_of(system), np.asarray(system.masses), np.float64)
    inv_mass, thermal_velocity = integrator.mass_factors(system, state)
    return LanesBAOAB(fused, integrator.timestep, integrator.friction, inv_mass, thermal_velocity, constraints,
                      solver.tolerance if solver is not None else 0.0)
