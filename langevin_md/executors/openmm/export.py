"""Our integrators compiled to ``openmm.Integrator`` objects that run inside OpenMM's platform.

The compiler of the OpenMM executor (:mod:`langevin_md.executors.openmm`): the same update
equations as the torch integrators in :mod:`~langevin_md.integrators.underdamped`,
:mod:`~langevin_md.integrators.overdamped` and :mod:`~langevin_md.integrators.metropolis`,
stepped by OpenMM with no Python per step.

=========  ===========================================  ==========================================
scheme     OpenMM integrator                            constraints
=========  ===========================================  ==========================================
BAOAB      ``LangevinMiddleIntegrator`` (native)        yes (OpenMM's own handling)
OBABO      ``CustomIntegrator`` from "O B A B O"        yes (positions and velocities)
Brownian   ``BrownianIntegrator`` (native)              yes (OpenMM's own handling)
ULA        ``CustomIntegrator``                         refused
MALA       ``CustomIntegrator``                         refused
=========  ===========================================  ==========================================

HMC, random-walk Metropolis and anything else raise ``ValueError`` naming the schemes above.

Why native where possible: OpenMM's ``LangevinMiddleIntegrator`` is BAOAB written as a leapfrog,
(B B) A O A per step (Zhang, Liu, Zhang & Zhou, J. Chem. Phys. 151, 044112 (2019)); the position
sequence is BAOAB's exactly, and the native kernel is what users compare speed against.
*Its velocities are not BAOAB's step-end velocities*: OpenMM stores (and ``getState`` reports)
the velocity after O and the second A, half a kick before the step end, which has
⟨v²⟩ = kT/m exactly on a harmonic well, where BAOAB's step-end velocity has
(kT/m)(1 − h²ω²/4). The OpenMM executor reconstructs the step-end velocity
v + (h/2) F/m (projected onto the constraints) when it records kinetic energies, so both
executors report the same quantity. ``BrownianIntegrator`` is Euler–Maruyama with
x' = x + h F/(mγ) + sqrt(2 kT h/(mγ)) ξ, which is our :class:`~langevin_md.integrators.Brownian`.

The custom schemes are written from named operators, as openmmtools' splitting strings
("V R O R V") are, so the CustomIntegrator mirrors the torch operator sequence:

* ``B`` kick, v ← v + τ F/m
* ``A`` drift, x ← x + τ v
* ``O`` exact Ornstein–Uhlenbeck, v ← a v + sqrt(1 − a²) sqrt(kT/m) ξ, a = exp(−γτ)

Each letter's τ is h divided by how often that letter appears (openmmtools' rule): "B A O A B"
is BAOAB, "O B A B O" is OBABO. With constraints every drift is followed by
``addConstrainPositions`` and the velocity correction v ← v + (x − x₁)/τ (x₁ the unconstrained
positions), and every kick and O by ``addConstrainVelocities`` — the pattern of OpenMM's
``LangevinMiddleIntegrator`` and openmmtools' ``LangevinIntegrator``.
"""

from __future__ import annotations

import math
from collections import Counter

from ...integrators.metropolis import MALA
from ...integrators.overdamped import ULA, Brownian
from ...integrators.underdamped import BAOAB, OBABO

#: Integrator classes the OpenMM executor can run, in the order error messages list them.
SUPPORTED = (BAOAB, OBABO, Brownian, ULA, MALA)

#: The operator letters of :func:`splitting_integrator`.
OPERATORS = ("B", "A", "O")

#: Splitting strings of the underdamped schemes.
SPLITTINGS = {BAOAB: "B A O A B", OBABO: "O B A B O"}


def _supported_names() -> str:
    return ", ".join(c.__name__ for c in SUPPORTED)


def check_supported(integrator) -> None:
    """Raise ``ValueError`` unless ``integrator`` is one of :data:`SUPPORTED` (exact type).

    Subclasses are refused too: they may change ``step`` and the compiled scheme would then
    not be theirs.
    """
    if type(integrator) not in SUPPORTED:
        raise ValueError(
            f"{type(integrator).__name__} cannot run in the OpenMM executor (backend='openmm'): "
            f"supported schemes are {_supported_names()}. Use backend='torch' for "
            f"{type(integrator).__name__}."
        )
    if getattr(integrator, "preconditioner", None) is not None:
        raise ValueError(
            f"{type(integrator).__name__}(preconditioner={integrator.preconditioner!r}) cannot run "
            "in the OpenMM executor, whose compiled schemes have no metric; use backend='torch' "
            "for preconditioned schemes"
        )
    if isinstance(integrator, MALA) and integrator.target_accept is not None:
        raise ValueError(
            f"MALA(target_accept={integrator.target_accept!r}) adapts its step size every burn-in "
            "step in Python, which the OpenMM executor does not do; use a fixed step size "
            "(target_accept=None) with backend='openmm', or adapt with backend='torch'"
        )


def _check_system(system) -> None:
    from ...systems.openmm_system import OpenMMSystem

    if not isinstance(system, OpenMMSystem):
        raise TypeError(
            "the OpenMM executor needs an OpenMMSystem (an openmm.System with its topology), "
            f"got {type(system).__name__}; use backend='torch' for other systems"
        )


def to_openmm_integrator(integrator, system):
    """Compile ``integrator`` into an ``openmm.Integrator`` for ``system``.

    Parameters
    ----------
    integrator : BAOAB, OBABO, Brownian, ULA or MALA
        Settings in the same units as the torch executor: timesteps in ps, friction in 1/ps,
        ULA/MALA step sizes ε in nm².
    system : OpenMMSystem
        Gives kT (kJ/mol), the temperature (K) and whether there are constraints.

    Returns
    -------
    openmm.Integrator
        A fresh integrator (bind it to one Context). Its random seed is OpenMM's default
        (0: chosen at Context creation); call ``setRandomNumberSeed`` for reproducible runs.
        :func:`langevin_md.sample` with ``backend="openmm"`` does.

    Raises
    ------
    ValueError
        For schemes OpenMM cannot run (the message names the supported ones), for adaptive
        MALA, and for ULA/MALA on a constrained system.
    TypeError
        When ``system`` is not an OpenMMSystem.

    Notes
    -----
    For MALA the integrator keeps global variables ``n_accept`` and ``n_trials`` (counts of
    accepted and attempted proposals since they were last set to 0).
    """
    import openmm

    check_supported(integrator)
    _check_system(system)
    kind = type(integrator)
    if kind in (ULA, MALA) and system.constrained:
        raise ValueError(
            f"{kind.__name__} cannot run on a system with constraints: its Metropolis/overdamped "
            "update has no constrained form here. Build the system with constraints=None, or "
            "use BAOAB, OBABO or Brownian, which OpenMM constrains."
        )
    if kind is BAOAB:
        return openmm.LangevinMiddleIntegrator(system.temperature, integrator.friction, integrator.timestep)
    if kind is Brownian:
        return openmm.BrownianIntegrator(system.temperature, integrator.friction, integrator.timestep)
    if kind is OBABO:
        return splitting_integrator(SPLITTINGS[OBABO], integrator.timestep, integrator.friction,
                                    system.kT, system.constrained)
    if kind is ULA:
        return ula_integrator(integrator.step_size, system.kT)
    return mala_integrator(integrator.step_size, system.kT)


# --------------------------------------------------------------------------- underdamped
def parse_splitting(splitting: str) -> list[tuple[str, float]]:
    """``"O B A B O"`` → ``[("O", 0.5), ("B", 0.5), ("A", 1.0), ("B", 0.5), ("O", 0.5)]``.

    Each letter's fraction of the timestep is 1 / (its number of occurrences).
    """
    if not isinstance(splitting, str):
        raise TypeError(f"splitting must be a string of operator letters like 'B A O A B', got {splitting!r}")
    letters = splitting.split()
    bad = [c for c in letters if c not in OPERATORS]
    if bad or not letters:
        raise ValueError(
            f"splitting {splitting!r} must be space-separated letters from {OPERATORS} "
            "(B kick, A drift, O Ornstein-Uhlenbeck), e.g. 'B A O A B'"
        )
    for needed in ("A", "B"):
        if needed not in letters:
            raise ValueError(f"splitting {splitting!r} has no {needed!r}: it would not integrate the dynamics")
    counts = Counter(letters)
    return [(c, 1.0 / counts[c]) for c in letters]


def splitting_integrator(splitting: str, timestep: float, friction: float, kT: float, constrained: bool):
    """An ``openmm.CustomIntegrator`` for a Langevin splitting written in B/A/O letters.

    Parameters
    ----------
    splitting : str
        Operator letters applied left to right, e.g. ``"B A O A B"`` (BAOAB) or
        ``"O B A B O"`` (OBABO); see the module docstring for the operators.
    timestep : float
        h, ps.
    friction : float
        γ, 1/ps. With 0 the O operators are left out (no random numbers drawn).
    kT : float
        kJ/mol.
    constrained : bool
        Add OpenMM's position and velocity constraint steps (needed when the System has
        constraints; harmless but slower otherwise).

    Returns
    -------
    openmm.CustomIntegrator
        The kinetic energy it reports is that of the velocities at the step end.
    """
    import openmm

    ops = parse_splitting(splitting)
    ci = openmm.CustomIntegrator(float(timestep))
    ci.addGlobalVariable("kT", float(kT))
    thermostat = {}
    for op, frac in ops:
        if op == "O" and friction > 0 and frac not in thermostat:
            a = math.exp(-friction * frac * timestep)
            name = f"o{len(thermostat)}"
            ci.addGlobalVariable(f"{name}_a", a)
            ci.addGlobalVariable(f"{name}_b", math.sqrt(1.0 - a * a))
            thermostat[frac] = name
    if constrained:
        ci.addPerDofVariable("x1", 0.0)
    # Barostats and the centre-of-mass motion remover act here, as in OpenMM's own integrators.
    ci.addUpdateContextState()
    for group in _fuse_velocity_operators(ops, thermostat):
        if group[0][0] == "A":
            frac = group[0][1]
            ci.addComputePerDof("x", f"x + {frac!r}*dt*v")
            if constrained:
                ci.addComputePerDof("x1", "x")
                ci.addConstrainPositions()
                ci.addComputePerDof("v", f"v + (x - x1)/({frac!r}*dt)")
                ci.addConstrainVelocities()
            continue
        expr = "v"
        for op, frac in group:
            if op == "B":
                expr = f"{_paren(expr)} + {frac!r}*dt*f/m"
            else:
                name = thermostat[frac]
                expr = f"{name}_a*{_paren(expr)} + {name}_b*sqrt(kT/m)*gaussian"
        ci.addComputePerDof("v", expr)
        if constrained:
            ci.addConstrainVelocities()
    return ci


def _paren(expr: str) -> str:
    return expr if expr == "v" else f"({expr})"


def _fuse_velocity_operators(ops, thermostat) -> list[list[tuple[str, float]]]:
    """Group consecutive kicks and O steps (at most one O per group) into one update.

    Kicks and O steps change only v, and with the positions fixed OpenMM's velocity
    constraint is a linear projection P with P(Pu + w) = P(u + w), so one constrained update
    of the composed map equals the constrained sequence. Fusing saves per-DOF passes
    (OBABO: three instead of five). O steps with zero friction are dropped.
    """
    groups: list[list[tuple[str, float]]] = []
    for op, frac in ops:
        if op == "O" and frac not in thermostat:
            continue
        if op == "A":
            groups.append([(op, frac)])
            continue
        last = groups[-1] if groups else None
        if last is None or last[0][0] == "A" or (op == "O" and any(o == "O" for o, _ in last)):
            groups.append([(op, frac)])
        else:
            last.append((op, frac))
    return groups


# --------------------------------------------------------------------------- overdamped
#: CustomIntegrator step size for ULA and MALA, which have no physical time: the Context's
#: clock then counts steps.
OVERDAMPED_DT = 1.0


def ula_integrator(step_size: float, kT: float):
    r"""ULA, x ← x + ε F/kT + sqrt(2ε) ξ with one ε (nm²) for every coordinate.

    Parameters
    ----------
    step_size : float
        ε, nm².
    kT : float
        kJ/mol.
    """
    import openmm

    ci = openmm.CustomIntegrator(OVERDAMPED_DT)
    ci.addGlobalVariable("kT", float(kT))
    ci.addGlobalVariable("eps", float(step_size))
    ci.addComputePerDof("x", "x + eps*f/kT + sqrt(2*eps)*gaussian")
    return ci


def mala_integrator(step_size: float, kT: float):
    r"""MALA: the ULA proposal and one Metropolis–Hastings test over all coordinates.

    .. math::
        y = x + \varepsilon F(x)/kT + \sqrt{2\varepsilon}\,\xi, \qquad
        \log\alpha = -\frac{U(y) - U(x)}{kT} - \frac{|x - y - \varepsilon F(y)/kT|^2}{4\varepsilon}
                     + \frac{|\xi|^2}{2}.

    As in the torch state, the energy and forces at the current point are cached (global
    ``energy_x``, per-DOF ``f_old``): an accepted proposal takes over those computed at y, a
    rejection restores x and keeps them. So a step costs exactly one force evaluation whether
    it accepts or not; re-reading ``energy`` and ``f`` at the step start instead costs two
    (measured: OpenMM recomputes after the conditional restore). The cache is filled on the
    first step and whenever the global ``cache_valid`` is 0: **set it to 0 after changing the
    Context's positions from outside** (the OpenMM executor does).

    A non-finite energy or force at y gives a NaN log α, and ``step(NaN) = 0`` rejects it.
    Global variables ``n_accept`` and ``n_trials`` count accepted and attempted proposals.

    Parameters
    ----------
    step_size : float
        ε, nm².
    kT : float
        kJ/mol.
    """
    import openmm

    ci = openmm.CustomIntegrator(OVERDAMPED_DT)
    for name, value in (("kT", kT), ("eps", step_size), ("energy_x", 0.0), ("energy_y", 0.0),
                        ("back_sq", 0.0), ("noise_sq", 0.0), ("log_ratio", 0.0), ("accept", 0.0),
                        ("cache_valid", 0.0), ("n_accept", 0.0), ("n_trials", 0.0)):
        ci.addGlobalVariable(name, float(value))
    for name in ("x_old", "f_old", "xi"):
        ci.addPerDofVariable(name, 0.0)
    ci.beginIfBlock("cache_valid < 0.5")
    ci.addComputePerDof("f_old", "f")
    ci.addComputeGlobal("energy_x", "energy")
    ci.addComputeGlobal("cache_valid", "1")
    ci.endBlock()
    ci.addComputePerDof("x_old", "x")
    ci.addComputePerDof("xi", "gaussian")
    ci.addComputePerDof("x", "x + eps*f_old/kT + sqrt(2*eps)*xi")   # the ULA proposal y
    # log q(x|y) - log q(y|x): the reverse move uses the forces at y
    ci.addComputeSum("back_sq", "(x_old - x - eps*f/kT)^2")
    ci.addComputeGlobal("energy_y", "energy")
    ci.addComputeSum("noise_sq", "xi^2")
    ci.addComputeGlobal("log_ratio", "-(energy_y - energy_x)/kT - back_sq/(4*eps) + noise_sq/2")
    ci.addComputeGlobal("accept", "step(log_ratio - log(uniform))")
    ci.beginIfBlock("accept > 0.5")
    ci.addComputeGlobal("energy_x", "energy_y")
    ci.addComputePerDof("f_old", "f")
    ci.endBlock()
    ci.beginIfBlock("accept < 0.5")
    ci.addComputePerDof("x", "x_old")
    ci.endBlock()
    ci.addComputeGlobal("n_accept", "n_accept + accept")
    ci.addComputeGlobal("n_trials", "n_trials + 1")
    return ci


def scheme_description(integrator) -> str:
    """One line naming the OpenMM integrator a scheme compiles to (for metadata and reports)."""
    check_supported(integrator)
    kind = type(integrator)
    if kind is BAOAB:
        return "LangevinMiddleIntegrator (BAOAB positions)"
    if kind is Brownian:
        return "BrownianIntegrator"
    if kind is OBABO:
        return f"CustomIntegrator splitting {SPLITTINGS[OBABO]!r}"
    return f"CustomIntegrator {kind.__name__}"


__all__ = ["to_openmm_integrator", "splitting_integrator", "ula_integrator", "mala_integrator",
           "parse_splitting", "check_supported", "SUPPORTED"]
