"""``langevin-md validate``: check every integrator against its exact law on this machine.

Each *law* runs a scheme on a target whose discrete-time answer is known exactly
(:mod:`langevin_md.laws`, derived in ``docs/exact_results.md``), measures an observable over many independent walkers, and compares it
with the exact value by a z-score, ``z = (measured − exact) / standard error`` with the
standard error from the spread across independent chains. A law fails when ``|z| > 5``; the
command then exits with status 1. Run it after installing on a new machine, GPU or dtype::

    langevin-md validate                     # torch executor on CPU, float64, plus OpenMM
    langevin-md validate --device cuda --dtype float32
    langevin-md validate --quick             # fewer walkers (about 4x faster, less power)
    langevin-md validate --only BAOAB        # laws whose name contains "BAOAB"

Laws checked (torch executor): ULA's stationary variance σ²/(1 − ε/2σ²), MALA exactness,
BAOAB's exact ⟨x²⟩ = kT/k and step-end ⟨v²⟩ = (kT/m)(1 − h²ω²/4), OBABO's
⟨x²⟩ = (kT/k)/(1 − h²ω²/4) and ⟨v²⟩ = kT/m, Brownian free diffusion ⟨Δx²⟩ = 2Dt, and
exactness of HMC and random-walk Metropolis. With OpenMM installed, BAOAB and MALA are also
run inside OpenMM (``backend="openmm"``) on a harmonic ``openmm.System``. The exact values come
from :mod:`langevin_md.laws`, the same functions the statistical tests assert.

Registering your own integrator
-------------------------------
Every law is an entry of the module-level list :data:`LAWS`. The simplest way to add a
scheme is :func:`register`, which adds an *exactness* law: the scheme must sample the
harmonic well U = x²  (k = 2, kT = 1, so ⟨x²⟩ = 1/2) exactly, as any Metropolis-adjusted
scheme does::

    import langevin_md.validate as validate

    validate.register("MyMALA", lambda: MyMALA(step_size=0.4))
    validate.main(["--only", "MyMALA"])        # or: langevin-md validate (in the same process)

For a biased scheme with a known discrete law, build a :class:`Law` yourself (any system,
observable and exact value) and pass it: ``validate.register("MyScheme", factory, law=Law(...))``
or append it to :data:`LAWS`. Remove one with :func:`unregister`.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import dataclass, replace
from typing import Callable, Optional

import numpy as np

from . import integrators as I
from . import laws
from .executors import sample
from .systems import FreeParticle, Harmonic
from .systems.openmm_system import OpenMMSystem
from .units import kT_from_temperature

__all__ = ["Law", "Measurement", "LAWS", "register", "unregister", "run_law", "main", "Z_FAIL"]

#: A law fails when the measured value is more than this many standard errors from exact.
Z_FAIL = 5.0


@dataclass(frozen=True)
class Law:
    """One exact-law check.

    Attributes
    ----------
    name : str
        Shown in the table (and matched by ``--only``).
    integrator : callable () -> Integrator
        Builds the scheme.
    system : callable () -> System
        Builds the target.
    observable : callable (SampleResult) -> ndarray of shape (n_frames, n_chains)
        The quantity whose mean is exact; columns must be independent chains (walkers, or
        independent coordinates of one walker).
    exact : float
        Its exact expectation.
    formula : str
        The exact law in words, for the table.
    n_walkers, n_steps, record_every, burn_in : int
        Sampling settings at full size (``--quick`` divides ``n_walkers`` by 4).
    backend : {"torch", "openmm"}
    initial_positions : callable () -> array, optional
        Starting point (default: the system's own).
    """

    name: str
    integrator: Callable
    system: Callable
    observable: Callable
    exact: float
    formula: str = ""
    n_walkers: int = 2000
    n_steps: int = 400
    record_every: int = 20
    burn_in: int = 200
    backend: str = "torch"
    initial_positions: Optional[Callable] = None


@dataclass(frozen=True)
class Measurement:
    """The outcome of one law: measured mean ± standard error, exact value and z."""

    law: Law
    mean: float
    standard_error: float
    seconds: float
    skipped: str = ""

    @property
    def z(self) -> float:
        return (self.mean - self.law.exact) / self.standard_error if self.standard_error > 0 else math.inf

    @property
    def passed(self) -> bool:
        return bool(self.skipped) or abs(self.z) <= Z_FAIL


# --------------------------------------------------------------------------- observables
def _x2(result) -> np.ndarray:
    """x² of every coordinate, one column per (walker, coordinate): (n_frames, n_chains)."""
    p = np.asarray(result.positions, dtype=np.float64)
    return (p * p).reshape(p.shape[0], -1)


def _v2(mass: float):
    def v2(result) -> np.ndarray:
        # 1-d systems: K = m v²/2, so v² = 2K/m per walker.
        return 2.0 * np.asarray(result.kinetic_energies, dtype=np.float64) / mass
    return v2


def _harmonic(k: float = 1.0, kT: float = 1.0, mass: float = 1.0):
    return lambda: Harmonic(dim=1, k=k, kT=kT, masses=mass)


def _torch_laws() -> list[Law]:

    eps, h = 0.5, 1.5  # ε/σ² and hω on the unit well (k = kT = m = 1)
    # Brownian: D = kT/(mγ) per coordinate, exact at any timestep.
    kT_b, gamma_b, m_b, h_b, n_b = 2.0, 0.5, 2.0, 0.3, 50
    return [
        Law("ULA variance", lambda: I.ULA(step_size=eps), _harmonic(), _x2, laws.ula_stationary_variance(eps, 1.0),
            "Var = σ²/(1 − ε/2σ²), ε/σ² = 0.5"),
        Law("MALA exact", lambda: I.MALA(step_size=1.0), _harmonic(), _x2, 1.0,
            "⟨x²⟩ = kT/k at ε/σ² = 1 (ULA would give 2)"),
        Law("BAOAB positions", lambda: I.BAOAB(timestep=h, friction=1.0), _harmonic(), _x2,
            laws.baoab_position_variance(1.0, h, 1.0), "⟨x²⟩ = kT/k exactly, hω = 1.5"),
        Law("BAOAB velocities", lambda: I.BAOAB(timestep=h, friction=1.0), _harmonic(), _v2(1.0),
            laws.baoab_step_end_velocity_variance(1.0, 1.0, h, 1.0), "⟨v²⟩ = (kT/m)(1 − h²ω²/4) at step ends"),
        Law("OBABO positions", lambda: I.OBABO(timestep=h, friction=1.0), _harmonic(), _x2,
            laws.obabo_position_variance(1.0, h, 1.0), "⟨x²⟩ = (kT/k)/(1 − h²ω²/4)"),
        Law("OBABO velocities", lambda: I.OBABO(timestep=h, friction=1.0), _harmonic(), _v2(1.0),
            laws.obabo_velocity_variance(1.0, 1.0, h, 1.0), "⟨v²⟩ = kT/m"),
        Law("Brownian diffusion", lambda: I.Brownian(timestep=h_b, friction=gamma_b),
            lambda: FreeParticle(dim=1, kT=kT_b, masses=m_b), _x2,
            laws.brownian_mean_squared_displacement(kT_b, m_b, gamma_b, h_b * n_b),
            "⟨Δx²⟩ = 2Dt, D = kT/(mγ)", n_steps=n_b, record_every=n_b, burn_in=0,
            initial_positions=lambda: np.zeros(1)),
        Law("HMC exact", lambda: I.HMC(timestep=0.8, n_leapfrog=3), _harmonic(k=2.0), _x2, 0.5,
            "⟨x²⟩ = kT/k", n_walkers=1000),
        Law("RWM exact", lambda: I.RandomWalkMetropolis(scale=2.0), _harmonic(k=2.0), _x2, 0.5,
            "⟨x²⟩ = kT/k"),
    ]


# --------------------------------------------------------------------------- OpenMM laws
#: Harmonic OpenMM test system: particles (amu), spring (kJ/mol/nm²), temperature (K).
_OMM_PARTICLES, _OMM_MASS, _OMM_K, _OMM_T = 8, 10.0, 250.0, 300.0


def _openmm_harmonic(platform: str = "auto"):
    """An OpenMMSystem of independent particles in U = k/2 |x|² (every coordinate an
    independent oscillator with σ² = kT/k, ω² = k/m)."""
    # lazy: OpenMM is optional; only the OpenMM laws need it
    import openmm
    from openmm import app

    system = openmm.System()
    force = openmm.CustomExternalForce("0.5*k*(x^2 + y^2 + z^2)")
    force.addGlobalParameter("k", _OMM_K)
    topology = app.Topology()
    chain = topology.addChain()
    for i in range(_OMM_PARTICLES):
        system.addParticle(_OMM_MASS)
        force.addParticle(i, [])
        topology.addAtom("AR", app.element.argon, topology.addResidue("AR", chain))
    system.addForce(force)
    return OpenMMSystem(system, topology, np.zeros((_OMM_PARTICLES, 3)), temperature=_OMM_T, platform=platform)


def openmm_unavailable() -> str:
    """Why the OpenMM laws cannot run here ("" when they can)."""
    try:
        import openmm  # noqa: F401
    except ImportError:
        return "openmm is not installed"
    return ""


def _openmm_laws(platform: str) -> list[Law]:

    s2 = kT_from_temperature(_OMM_T) / _OMM_K  # nm²
    omega = math.sqrt(_OMM_K / _OMM_MASS)  # 1/ps
    h = 1.0 / omega  # hω = 1
    build = lambda: _openmm_harmonic(platform)  # noqa: E731
    return [
        Law("OpenMM BAOAB positions", lambda: I.BAOAB(timestep=h, friction=2.0), build, _x2,
            laws.baoab_position_variance(s2, h, omega),
            "⟨x²⟩ = kT/k exactly, hω = 1 (OBABO would be 4/3 of it)", n_walkers=16, n_steps=2000,
            record_every=10, burn_in=200, backend="openmm"),
        Law("OpenMM MALA exact", lambda: I.MALA(step_size=0.3 * s2), build, _x2, s2,
            "⟨x²⟩ = kT/k at ε/σ² = 0.3 (ULA would be 1.18 of it)", n_walkers=16, n_steps=2000,
            record_every=10, burn_in=200, backend="openmm"),
    ]


#: Every law ``main`` runs, built-in ones first; :func:`register` appends to it.
LAWS: list[Law] = []
_N_BUILTIN_TORCH = 0


def _ensure_builtins(platform: str = "auto") -> None:
    """Put the built-in laws at the front of LAWS (once), and the OpenMM ones for ``platform``."""
    global _N_BUILTIN_TORCH
    if not _N_BUILTIN_TORCH:
        builtin = _torch_laws()
        LAWS[:0] = builtin
        _N_BUILTIN_TORCH = len(builtin)
    # The OpenMM laws depend on the chosen platform, so they are rebuilt on every call.
    LAWS[:] = [law for law in LAWS if not law.name.startswith("OpenMM ")]
    if not openmm_unavailable():
        LAWS[_N_BUILTIN_TORCH:_N_BUILTIN_TORCH] = _openmm_laws(platform)


def register(name: str, integrator_factory: Callable, law="exact") -> Law:
    """Add a user integrator to the checks :func:`main` runs.

    Parameters
    ----------
    name : str
        Name in the table; must not clash with an existing law.
    integrator_factory : callable () -> Integrator
        Builds the scheme with its settings.
    law : "exact" or Law
        "exact": the scheme claims to sample its target exactly; it is run on the harmonic
        well U = x² (k = 2, kT = 1) and ⟨x²⟩ must equal 1/2. A :class:`Law`: checked as given
        (its ``name`` and ``integrator`` are replaced by these arguments).

    Returns
    -------
    Law
        The registered law (also appended to :data:`LAWS`).
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"name must be a non-empty string, got {name!r}")
    if not callable(integrator_factory):
        raise TypeError(f"integrator_factory must be a callable returning an integrator, got {integrator_factory!r}")
    _ensure_builtins()
    if any(existing.name == name for existing in LAWS):
        raise ValueError(f"a law named {name!r} is already registered; pick another name or unregister it")
    if isinstance(law, str) and law == "exact":
        entry = Law(name, integrator_factory, _harmonic(k=2.0), _x2, 0.5, "⟨x²⟩ = kT/k (claimed exact)")
    elif isinstance(law, Law):
        entry = replace(law, name=name, integrator=integrator_factory)
    else:
        raise ValueError(f"law must be 'exact' or a langevin_md.validate.Law, got {law!r}")
    LAWS.append(entry)
    return entry


def unregister(name: str) -> None:
    """Remove the law called ``name`` (KeyError if there is none)."""
    for i, law in enumerate(LAWS):
        if law.name == name:
            del LAWS[i]
            return
    raise KeyError(f"no law named {name!r}")


# --------------------------------------------------------------------------- running
def run_law(law: Law, device=None, dtype=None, seed: int = 0, quick: bool = False) -> Measurement:
    """Run one law and measure it.

    The standard error is the spread of the per-chain means across independent chains
    divided by sqrt(n_chains): no autocorrelation model is needed.
    """

    n_walkers = max(8, law.n_walkers // 4) if quick else law.n_walkers
    t0 = time.perf_counter()
    system = law.system()
    x0 = law.initial_positions() if law.initial_positions is not None else None
    result = sample(system, law.integrator(), n_steps=law.n_steps, n_walkers=n_walkers,
                        record_every=law.record_every, burn_in=law.burn_in, seed=seed,
                        device=None if law.backend == "openmm" else device,
                        dtype=dtype, initial_positions=x0, backend=law.backend, progress=False)
    values = np.asarray(law.observable(result), dtype=np.float64)
    per_chain = values.reshape(values.shape[0], -1).mean(0)
    se = float(per_chain.std(ddof=1) / math.sqrt(per_chain.size))
    return Measurement(law, float(per_chain.mean()), se, time.perf_counter() - t0)


def _checked_device(device, dtype) -> str:
    """``device`` as the torch executor will use it; ValueError (its own message) if unusable.

    One single-walker step through the public :func:`langevin_md.sample` is the check, so the
    rules are the executor's own and not restated here.
    """
    sample(Harmonic(), I.ULA(step_size=0.1), n_steps=1, n_walkers=1, device=device, dtype=dtype,
               progress=False)
    return "cpu" if device is None else str(device)


def _table(measurements: list[Measurement]) -> str:
    head = f"{'law':<26} {'backend':<7} {'measured':>22} {'exact':>10} {'z':>7}  {'result':<6} {'s':>5}  exact law"
    lines = [head, "-" * len(head)]
    for m in measurements:
        if m.skipped:
            lines.append(f"{m.law.name:<26} {m.law.backend:<7} {'':>22} {'':>10} {'':>7}  {'skip':<6} {'':>5}  {m.skipped}")
            continue
        measured = f"{m.mean:.5g} ± {m.standard_error:.2g}"
        verdict = "ok" if m.passed else "FAIL"
        lines.append(f"{m.law.name:<26} {m.law.backend:<7} {measured:>22} {m.law.exact:>10.5g} {m.z:>7.2f}  "
                     f"{verdict:<6} {m.seconds:>5.1f}  {m.law.formula}")
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="langevin-md validate",
        description="Check every integrator against its exact discrete-time law on this machine "
                    f"(fails when |z| > {Z_FAIL:g}).")
    p.add_argument("--device", default=None, help="torch device for the torch executor: cpu (default), cuda, cuda:N")
    p.add_argument("--dtype", default="float64", choices=("float32", "float64"), help="torch dtype (default float64)")
    p.add_argument("--platform", default="auto",
                   help="OpenMM platform for the OpenMM laws: auto (default), Reference, CPU, OpenCL, CUDA, HIP")
    p.add_argument("--quick", action="store_true", help="a quarter of the walkers: faster, less statistical power")
    p.add_argument("--only", default=None, metavar="TEXT", help="run only laws whose name contains TEXT")
    p.add_argument("--no-openmm", action="store_true", help="skip the OpenMM-executor laws")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--list", action="store_true", help="list the laws and exit")
    return p


def main(argv=None) -> int:
    """Run the laws, print a table of measured vs exact values, return the exit status.

    Parameters
    ----------
    argv : list of str, optional
        Command-line arguments (default ``sys.argv[1:]``); see ``langevin-md validate -h``.

    Returns
    -------
    int
        0 when every law passed (|z| ≤ 5), 1 when one failed, 2 for a bad device/dtype.
    """
    args = _parser().parse_args(sys.argv[1:] if argv is None else list(argv))
    _ensure_builtins(args.platform)
    laws = [law for law in LAWS if args.only is None or args.only.lower() in law.name.lower()]
    if args.list:
        for law in laws:
            print(f"{law.name:<26} {law.backend:<7} {law.formula}")
        return 0
    if not laws:
        print(f"no law matches --only {args.only!r}; use --list to see them", file=sys.stderr)
        return 2
    try:
        device = _checked_device(args.device, args.dtype)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    skip_openmm = "skipped with --no-openmm" if args.no_openmm else openmm_unavailable()
    if skip_openmm and not args.no_openmm:
        print(f"note: OpenMM-executor laws skipped: {skip_openmm}")
    print(f"validating on device {device}, dtype {args.dtype}"
          f"{', quick' if args.quick else ''} (a law fails when |z| > {Z_FAIL:g})\n")
    results = []
    for law in laws:
        if law.backend == "openmm" and skip_openmm:
            results.append(Measurement(law, float("nan"), float("nan"), 0.0, skipped=skip_openmm))
            continue
        try:
            results.append(run_law(law, device=device, dtype=args.dtype, seed=args.seed, quick=args.quick))
        except Exception as exc:  # a crash is a failure of that law, not of the command
            print(f"{law.name}: error: {type(exc).__name__}: {exc}", file=sys.stderr)
            results.append(Measurement(law, float("nan"), 0.0, 0.0))
    print(_table(results))
    failed = [m.law.name for m in results if not m.passed]
    if failed:
        print(f"\nFAILED: {', '.join(failed)}")
        return 1
    print(f"\nall {sum(1 for m in results if not m.skipped)} laws passed")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
