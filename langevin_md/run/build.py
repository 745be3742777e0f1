"""Objects built from a :class:`~langevin_md.run.config.RunConfig`, each exactly once.

``config -> build_system -> build_integrator(config, system) -> minimized_start ->
build_sampler(config, system, integrator, initial_positions)``: every step takes what the
previous one built, so nothing is built twice. :func:`check_config` builds them all (and
probes ``[minimize]`` on one walker) before a run folder is created.
"""

from __future__ import annotations

import logging
import math

from ..errors import ConfigError
from ..executors import Sampler, executor_class
from ..executors.backend_choice import BackendChoice, choose_backend, openmm_equivalent
from ..executors.start import start_positions
from ..integrators.tempering import ReplicaExchange, geometric_ladder
from ..minimize import minimize
from ..random import WalkerRNG
from ..units import kT_from_temperature, temperature_from_kT
from .choices import call_choice, integrator_choices, system_choices
from .config import MINIMIZE_STREAM_OFFSET, RunConfig, parameters, toml_value
from .memory import available_memory, gib, memory_estimate
from .prior import build_prior

__all__ = ["build_system", "build_integrator", "minimized_start", "build_sampler", "check_config",
           "resolve_backend", "temperature_ladder"]

log = logging.getLogger(__name__)


def build_system(config: RunConfig):
    """The :class:`~langevin_md.systems.base.System` that ``[system]`` (and ``[prior]``) describe.

    With a ``[prior]`` table the system is the force field plus λ·prior, a
    :class:`~langevin_md.systems.prior_sum.ForceFieldWithPrior` (see :mod:`.prior`).

    ``backend = "openmm"`` runs inside OpenMM, so a molecule whose ``engine`` is not pinned
    (``"auto"``, the resolved default of the catalogue's molecules) is built with
    ``engine = "openmm"``; ``engine = "torch"`` with that backend is refused by name.
    """
    choice = system_choices()[config.system["name"]]
    kwargs = {k: v for k, v in config.system.items() if k != "name"}
    if config.sampler.get("backend", "torch") == "openmm" and "engine" in kwargs:
        if kwargs["engine"] == "torch":
            raise ConfigError('[system] engine = "torch" cannot run with [sampler] backend = "openmm", which '
                              'steps the OpenMM System itself; set engine = "openmm" (or leave it out), or '
                              'backend = "torch"')
        kwargs["engine"] = "openmm"
    system = call_choice("[system]", choice, kwargs)
    if config.prior is not None:
        system = build_prior(config.prior, system)
    return system


def build_integrator(config: RunConfig, system=None):
    """The ``[integrator]``, wrapped in a ReplicaExchange when there is a ``[tempering]`` table.

    ``system`` (built if not given, only with ``[tempering]``) sets the ladder's base
    temperature.
    """
    choice = integrator_choices()[config.integrator["name"]]
    kwargs = {k: v for k, v in config.integrator.items() if k != "name"}
    inner = call_choice("[integrator]", choice, kwargs)
    if config.tempering is None:
        return inner
    system = build_system(config) if system is None else system
    t = config.tempering
    try:
        return ReplicaExchange(inner, ladder=temperature_ladder(t, system), swap_every=t["swap_every"],
                               scheme=t["scheme"], adapt_ladder=t["adapt_ladder"])
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"[tempering]: {exc}") from None


def minimized_start(config: RunConfig, system, n_walkers: int, walker_indices=None):
    """Starting positions minimised as ``[minimize]`` says (None without that table).

    The walkers start as ``[sampler] initial_positions`` says (the system's own start, or
    ``"exact"`` draws), drawn from the run seed's streams at a counter far past anything a
    run consumes, so the starting points never reuse the random numbers of the dynamics.

    Returns
    -------
    Minimization or None
        ``.positions`` has shape ``(n_walkers, *event_shape)``.
    """
    if config.minimize is None:
        return None
    if walker_indices is None:  # a shard's walkers start at [sampler] first_walker
        first = int(config.sampler.get("first_walker") or 0)
        walker_indices = range(first, first + n_walkers)
    rng = WalkerRNG(int(config.sampler["seed"]), walker_indices, counter=MINIMIZE_STREAM_OFFSET)
    try:
        x0 = start_positions(system, config.sampler.get("initial_positions"), len(walker_indices), rng)
    except ValueError as exc:
        raise ConfigError(f"[sampler] {exc}") from None
    try:
        return minimize(system, x0, **config.minimize)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"[minimize]: {exc}") from None


def probe_minimize(config: RunConfig, system) -> None:
    """One iteration on one walker: finds every ``[minimize]`` error (a score-only system, the
    L-BFGS on a constrained system, ``method = "openmm"`` without OpenMM) before a run folder
    exists. Nothing without a ``[minimize]`` table."""
    if config.minimize is None:
        return
    probe = RunConfig(config.system, config.integrator, dict(config.sampler, first_walker=0), None,
                      minimize=dict(config.minimize, max_iterations=1))
    minimized_start(probe, system, 1)


def build_sampler(config: RunConfig, system=None, integrator=None, initial_positions=None):
    """The ``[sampler] backend``'s executor at step 0.

    Parameters
    ----------
    config : RunConfig
    system : System, optional
        Built from ``[system]`` when not given.
    integrator : Integrator, optional
        Used as given (never rebuilt); built from ``[integrator]`` when not given.
    initial_positions : array, optional
        ``(n_walkers, *event_shape)``, e.g. :func:`minimized_start`'s; replace the system's own.

    Returns
    -------
    Sampler or OpenMMSampler
    """
    system = build_system(config) if system is None else system
    integrator = build_integrator(config, system) if integrator is None else integrator
    if config.sampler.get("backend") == "auto":
        resolve_backend(config, system, integrator)  # a folder made without check_config
    backend = config.sampler.get("backend", "torch")
    try:
        cls = executor_class(backend)
    except ValueError as exc:
        raise ConfigError(f"[sampler] {exc}") from None
    if backend == "openmm":
        equivalent = openmm_equivalent(system)  # a TorchForceField runs as its source openmm.System
        if isinstance(equivalent, str):
            raise ConfigError(f"[sampler] backend = \"openmm\": {equivalent}")
        system = equivalent
    defaults = parameters(Sampler.__init__)
    kwargs = {}
    for key, value in config.sampler.items():
        if key not in Sampler.OPTIONS:  # run length, checkpoints, backend: not the executor's
            continue
        if key in cls.OPTIONS:
            kwargs[key] = value
        elif value != defaults[key].default:
            raise ConfigError(f"[sampler] {key} = {toml_value(value)} applies to backend = "
                              f"\"torch\" only, not backend = {backend!r}; remove it")
    if initial_positions is not None:
        kwargs["initial_positions"] = initial_positions
    try:
        return cls(system, integrator, **kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"[sampler]: {exc}") from None


def resolve_backend(config: RunConfig, system, integrator) -> None:
    """Replace ``[sampler] backend = "auto"`` by the executor it picks, in place.

    :func:`~langevin_md.executors.backend_choice.choose_backend` decides (for the run's
    walkers and its burn-in plus production steps; ``device``, ``threads`` and
    ``compile = true`` keep it on torch); ``config.backend_reason`` keeps why. The resolved
    config of a run folder thus records the executor actually used, and a resume never
    decides again. Nothing happens for an explicit backend.
    """
    if config.sampler.get("backend") != "auto":
        return
    s = config.sampler
    torch_options = [f"{key} = {toml_value(s[key])}" for key in ("device", "threads") if s.get(key) is not None]
    if s.get("compile") is True:
        torch_options.append("compile = true")
    if config.tempering is not None:
        choice = BackendChoice("torch", "[tempering]: replica exchange runs on the torch executor only")
    elif config.prior is not None:
        choice = BackendChoice("torch", "[prior]: the force field plus a torch prior runs on the torch executor only")
    else:
        choice = choose_backend(system, integrator, int(s["n_walkers"]), int(s.get("burn_in", 0)) + int(s["n_steps"]),
                                torch_options, int(s.get("seed", 0)), s.get("dtype"), int(s.get("record_every", 1)))
    config.sampler["backend"] = choice.backend
    config.backend_reason = choice.reason
    log.info("[sampler] backend = \"auto\" chose %s: %s", choice.backend, choice.reason)


def check_config(config: RunConfig) -> None:
    """Check everything a run needs before a run folder is created.

    Builds the integrator and the system (every key's value, every file, trust of
    force-field files), probes ``[minimize]`` on one walker, resolves ``backend = "auto"``
    in place (:func:`resolve_backend`), checks the executor's settings by building it, and
    compares the memory the run needs with the memory available.

    Raises
    ------
    ConfigError
        Naming the key, the value and what is allowed, or the memory figures.
    """
    # The bare integrator first: its errors are cheaper to find than the system's.
    choice = integrator_choices()[config.integrator["name"]]
    call_choice("[integrator]", choice, {k: v for k, v in config.integrator.items() if k != "name"})
    try:
        system = build_system(config)
    except FileNotFoundError as exc:
        raise ConfigError(f"[system] name = {config.system['name']!r}: {exc}") from None
    integrator = build_integrator(config, system)
    probe_minimize(config, system)
    n_coordinates = int(math.prod(system.event_shape))
    need = memory_estimate(config.sampler, n_coordinates)
    device = config.sampler.get("device") or "cpu"
    have = available_memory(device)
    if have is not None and need["total"] > have:
        raise ConfigError(
            f"[sampler] n_walkers = {config.sampler['n_walkers']} needs about {gib(need['total'])} "
            f"({gib(need['walkers'])} walker state, {gib(need['recording'])} frames between "
            f"checkpoints, {gib(need['checkpoints'])} checkpoint copies; {n_coordinates} coordinates "
            f"per walker) but only {gib(have)} is available on {device}; "
            "use fewer walkers, record less often or checkpoint more often")
    resolve_backend(config, system, integrator)
    build_sampler(config, system, integrator)


def temperature_ladder(tempering: dict, system) -> tuple:
    """Ladder of temperature ratios T_k / T_0 for ``system`` from a resolved [tempering] table.

    Temperatures are kelvin for molecular systems (``system.units == "molecular"``) and kT
    for reduced ones; the ratios are taken to the system's own kT.

    Raises
    ------
    ConfigError
        When explicit ``temperatures`` do not start at the system's temperature.
    """
    molecular = system.units == "molecular"
    unit = "K" if molecular else "kT"

    def kT(value: float) -> float:
        return kT_from_temperature(value) if molecular else float(value)

    base = float(system.kT)
    own = temperature_from_kT(base) if molecular else base
    if "temperatures" in tempering:
        temps = [float(t) for t in tempering["temperatures"]]
        if not math.isclose(kT(temps[0]), base, rel_tol=1e-6):
            raise ConfigError(f"[tempering] temperatures[0] = {temps[0]:g} {unit} must be the system's own "
                              f"temperature, {own:g} {unit} (the coldest rung is the one sampled)")
        return tuple([1.0] + [kT(t) / base for t in temps[1:]])
    ratio = kT(tempering["max_temperature"]) / base
    if not ratio > 1.0:
        raise ConfigError(f"[tempering] max_temperature = {tempering['max_temperature']:g} {unit} must be above "
                          f"the system's temperature, {own:g} {unit}")
    try:
        return tuple(geometric_ladder(int(tempering["n_temperatures"]), ratio))
    except ValueError as exc:
        raise ConfigError(f"[tempering]: {exc}") from None
