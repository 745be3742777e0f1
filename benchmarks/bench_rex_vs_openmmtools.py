"""Replica exchange per swap round: our default path against openmmtools, on one core each.

The aim of issue 21: "replica exchange with one ladder of 8: ≥ 1× openmmtools per swap round".
The same system on both sides: alanine dipeptide, Amber ff14SB, in vacuum and in OBC2
(``lmd.systems.alanine_dipeptide(solvent=...)``), a geometric ladder of 8 temperatures from
300 K to 600 K, BAOAB / ``LangevinMiddleIntegrator`` at ``--timestep`` fs (default 1) with
γ = 1/ps, and ``--steps-between`` K MD steps (default 50) per swap round.

* **ours**: ``lmd.sample`` as the README shows it (default system, default ``backend="auto"``
  — replica exchange runs on the torch executor — float64, ``compile="auto"``) with
  ``ReplicaExchange(BAOAB(...), ladder=geometric_ladder(8, 2.0), swap_every=K)``, 8 walkers
  (one ladder), ``n_steps = R·K`` (exactly R swap rounds: steps 0, K, …, (R − 1)K) and
  ``record_every = K`` (one frame per round). The time of the whole call is divided by R, so
  our figure *includes* each call's setup (building the executor, initial energies); that
  setup is also estimated apart from a one-round call and printed. A second row runs 8 ladders
  batched (64 walkers) and reports the time per ladder-round (call time / (R · 8)).
* **openmmtools**: ``multistate.ReplicaExchangeSampler`` with
  ``mcmc.LangevinDynamicsMove(timestep, collision_rate=1/ps, n_steps=K)`` (OpenMM's
  ``LangevinMiddleIntegrator``), one ``ThermodynamicState`` per temperature, its default
  ``replica_mixing_scheme="swap-all"`` (numba; ``--mixing`` to change), online analysis off,
  a ``MultiStateReporter`` to a temporary netCDF file with a checkpoint interval larger than
  the run (energies are still written every iteration, as in any real run), and context
  caches on one platform: Reference, and CPU with ``Threads=1``; the faster is reported. After
  ``create`` and a warm-up ``run`` (contexts built), each measurement is ``extend(R)``,
  divided by R. An openmmtools iteration is: mix replicas, propagate each of the 8 replicas K
  steps, then evaluate the reduced-potential matrix of every replica at every state (here 8
  energy evaluations, the states differing only in temperature) and report — that energy
  matrix is part of its swap-round cost, as our swap test's energies are part of ours (we
  reuse the energies the integrator already computed). For scale, the bare OpenMM work of a
  round (8·K steps and 8 energy evaluations on one ``LangevinMiddleIntegrator`` Context, no
  openmmtools) is timed too and printed under the table.

Method as ``bench_vs_openmm.py``: torch and OpenMM on one thread each (``OMP_NUM_THREADS=1``,
``torch.set_num_threads(1)``, CPU platform ``Threads=1``), contenders alternated within each
repeat, best of ``--repeats`` (≥ 3), load average printed at start and end. The ratio is
openmmtools' time per round over ours (> 1: we are faster).

Run ``python benchmarks/bench_rex_vs_openmmtools.py [--rounds 20] [--steps-between 50]
[--timestep 1] [--cases vacuum,obc2] [--ladders 8] [--repeats 3]``; ``--quick`` for R = 5 and
vacuum only. openmmtools is a benchmark baseline only, not a dependency of the project: when it
cannot be imported the script says so and exits 0.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import shutil
import tempfile
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")        # before torch is imported: one thread per side
os.environ.setdefault("OPENMM_CPU_THREADS", "1")

T_COLD, T_HOT = 300.0, 600.0    # K
N_TEMPERATURES = 8
FRICTION = 1.0                  # 1/ps
ALL_CASES = ("vacuum", "obc2")
OPENMM_PLATFORMS = ("Reference", "CPU-1")


def load_average() -> str:
    """The 1, 5 and 15 minute load averages, as text (``n/a`` where the OS has none)."""
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "n/a"


def solvent_of(case: str) -> str:
    return {"vacuum": "vacuum", "obc2": "implicit"}[case]


# --------------------------------------------------------------------------- our side
class OursContender:
    """``lmd.sample`` calls of ``n_ladders`` ladders of 8 walkers for R swap rounds."""

    def __init__(self, case: str, n_ladders: int, timestep_ps: float, steps_between: int, rounds: int):
        import langevin_md as lmd
        from langevin_md.integrators import BAOAB, ReplicaExchange, geometric_ladder

        self.system = lmd.systems.alanine_dipeptide(solvent=solvent_of(case), temperature=T_COLD)
        self.integrator = ReplicaExchange(inner=BAOAB(timestep_ps, FRICTION),
                                          ladder=geometric_ladder(N_TEMPERATURES, T_HOT / T_COLD),
                                          swap_every=steps_between)
        self.n_ladders, self.k, self.rounds = n_ladders, steps_between, rounds
        self.backend = self._call(2)["backend"]           # warm up (imports, kernels, caches)
        self.setup_seconds = float("inf")

    def _call(self, n_rounds: int) -> dict:
        import langevin_md as lmd

        res = lmd.sample(self.system, self.integrator, n_steps=n_rounds * self.k,
                         n_walkers=N_TEMPERATURES * self.n_ladders, record_every=self.k,
                         seed=0, progress=False)
        return res.metadata

    def _time(self, n_rounds: int) -> float:
        t0 = time.perf_counter()
        self._call(n_rounds)
        return time.perf_counter() - t0

    def seconds_per_round(self) -> float:
        """Whole ``lmd.sample`` call over R rounds; also updates the per-call setup estimate."""
        t_full = self._time(self.rounds)
        t_one = self._time(1)
        per_round = t_full / self.rounds
        if self.rounds > 1:  # setup ≈ one-round call minus one round's marginal cost
            marginal = (t_full - t_one) / (self.rounds - 1)
            self.setup_seconds = min(self.setup_seconds, max(0.0, t_one - marginal))
        return per_round


# --------------------------------------------------------------------------- openmmtools side
class OpenMMToolsContender:
    """A ``ReplicaExchangeSampler`` on one platform, created and warmed up, timed by ``extend``."""

    def __init__(self, case: str, platform_name: str, timestep_ps: float, steps_between: int,
                 rounds: int, mixing: str, warmup: int, folder: str):
        import openmm
        from openmm import unit
        from openmmtools import cache, mcmc, multistate, states

        import langevin_md as lmd
        from langevin_md.integrators import geometric_ladder

        bridge = lmd.systems.alanine_dipeptide(solvent=solvent_of(case), temperature=T_COLD, engine="openmm")
        temperatures = [T_COLD * r for r in geometric_ladder(N_TEMPERATURES, T_HOT / T_COLD)]
        thermo = [states.ThermodynamicState(system=bridge.openmm_system, temperature=t * unit.kelvin)
                  for t in temperatures]
        move = mcmc.LangevinDynamicsMove(timestep=timestep_ps * unit.picosecond,
                                         collision_rate=FRICTION / unit.picosecond, n_steps=steps_between,
                                         reassign_velocities=False)
        self.sampler = multistate.ReplicaExchangeSampler(mcmc_moves=move, number_of_iterations=warmup,
                                                         online_analysis_interval=None,
                                                         replica_mixing_scheme=mixing)
        path = os.path.join(folder, f"{case}-{platform_name}.nc")
        # checkpoint_interval larger than any run here: positions are written once, energies every iteration
        self.reporter = multistate.MultiStateReporter(path, checkpoint_interval=10**6)
        with contextlib.redirect_stdout(io.StringIO()):  # its citation banner, once per sampler
            self.sampler.create(thermodynamic_states=thermo, sampler_states=states.SamplerState(bridge.positions),
                                storage=self.reporter)
        if platform_name == "Reference":
            platform, properties = openmm.Platform.getPlatformByName("Reference"), None
        else:
            platform, properties = openmm.Platform.getPlatformByName("CPU"), {"Threads": "1"}
        for attribute in ("energy_context_cache", "sampler_context_cache"):
            setattr(self.sampler, attribute, cache.ContextCache(capacity=None, time_to_live=None,
                                                                platform=platform, platform_properties=properties))
        self.platform, self.rounds = platform_name, rounds
        self.sampler.run()                                # warm-up: contexts built, first energies

    def seconds_per_round(self) -> float:
        t0 = time.perf_counter()
        self.sampler.extend(self.rounds)
        return (time.perf_counter() - t0) / self.rounds

    def close(self) -> None:
        self.reporter.close()


class OpenMMFloor:
    """The bare OpenMM work of one round, for reference: 8·K steps and 8 energies on one Context.

    One ``LangevinMiddleIntegrator`` Context at 300 K stepping K steps and evaluating the energy,
    8 times per round: what openmmtools' iteration costs without its Python bookkeeping
    (context cache, state changes, positions in and out, mixing, netCDF).
    """

    def __init__(self, case: str, platform_name: str, timestep_ps: float, steps_between: int, rounds: int):
        import openmm
        from openmm import unit

        import langevin_md as lmd

        bridge = lmd.systems.alanine_dipeptide(solvent=solvent_of(case), temperature=T_COLD, engine="openmm")
        self.integrator = openmm.LangevinMiddleIntegrator(T_COLD * unit.kelvin, FRICTION / unit.picosecond,
                                                          timestep_ps * unit.picosecond)
        if platform_name == "Reference":
            platform, properties = openmm.Platform.getPlatformByName("Reference"), {}
        else:
            platform, properties = openmm.Platform.getPlatformByName("CPU"), {"Threads": "1"}
        self.context = openmm.Context(bridge.openmm_system, self.integrator, platform, properties)
        self.context.setPositions(bridge.positions)
        self.context.setVelocitiesToTemperature(T_COLD * unit.kelvin, 1)
        self.k, self.rounds = steps_between, rounds
        self.integrator.step(steps_between)

    def seconds_per_round(self) -> float:
        t0 = time.perf_counter()
        for _ in range(self.rounds * N_TEMPERATURES):
            self.integrator.step(self.k)
            self.context.getState(getEnergy=True)
        return (time.perf_counter() - t0) / self.rounds


# --------------------------------------------------------------------------- the run
def measure(case: str, args, folder: str) -> dict:
    """Best seconds per round of every contender of one case."""
    ours = {1: OursContender(case, 1, args.timestep * 1e-3, args.steps_between, args.rounds)}
    if args.ladders > 1:
        ours[args.ladders] = OursContender(case, args.ladders, args.timestep * 1e-3, args.steps_between, args.rounds)
    tools = {p: OpenMMToolsContender(case, p, args.timestep * 1e-3, args.steps_between, args.rounds,
                                     args.mixing, args.warmup, folder) for p in args.platforms}
    floors = {p: OpenMMFloor(case, p, args.timestep * 1e-3, args.steps_between, args.rounds) for p in args.platforms}
    best: dict = {}
    for _ in range(args.repeats):  # alternate every contender within each repeat (A/B/A/B…)
        for p, contender in tools.items():
            best["openmmtools", p] = min(best.get(("openmmtools", p), float("inf")), contender.seconds_per_round())
        for p, floor in floors.items():
            best["floor", p] = min(best.get(("floor", p), float("inf")), floor.seconds_per_round())
        for n, contender in ours.items():
            best["ours", n] = min(best.get(("ours", n), float("inf")), contender.seconds_per_round())
    for contender in tools.values():
        contender.close()
    best["setup"] = {n: c.setup_seconds for n, c in ours.items()}
    best["backend"] = {n: c.backend for n, c in ours.items()}
    return best


def markdown_table(results: dict, args) -> str:
    k = args.steps_between
    lines = ["| system | ladders (walkers) | ours s/round | openmmtools s/round (platform) | ratio (openmmtools / ours) "
             "| ours walker-steps/s |",
             "|---|---|---|---|---|---|"]
    for case, best in results.items():
        tools = {p: best["openmmtools", p] for p in args.platforms}
        platform = min(tools, key=tools.get)
        others = ", ".join(f"{p} {t:.4f}" for p, t in tools.items() if p != platform)
        ladders = [1] + ([args.ladders] if args.ladders > 1 else [])
        for n in ladders:
            per_call_round = best["ours", n]
            per_ladder_round = per_call_round / n
            walker_steps = N_TEMPERATURES * n * k / per_call_round
            label = f"{n} ({N_TEMPERATURES * n})" + ("" if n == 1 else ", per ladder-round")
            lines.append(f"| alanine dipeptide {case} | {label} | {per_ladder_round:.4f} | "
                         f"{tools[platform]:.4f} ({platform}{'; ' + others if others else ''}) | "
                         f"{tools[platform] / per_ladder_round:.2f}× | {walker_steps:.0f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", default=None, help=f"comma-separated, of {ALL_CASES} (default: all)")
    parser.add_argument("--rounds", type=int, default=20, help="swap rounds R per measurement")
    parser.add_argument("--steps-between", type=int, default=50, help="MD steps K between swap attempts")
    parser.add_argument("--timestep", type=float, default=1.0, help="fs (1 or 2)")
    parser.add_argument("--ladders", type=int, default=8, help="ladders in the batched row of ours (1: no such row)")
    parser.add_argument("--platforms", default=",".join(OPENMM_PLATFORMS), help=f"comma-separated, of {OPENMM_PLATFORMS}")
    parser.add_argument("--mixing", default="swap-all", choices=("swap-all", "swap-neighbors"),
                        help="openmmtools' replica_mixing_scheme (its default: swap-all)")
    parser.add_argument("--warmup", type=int, default=2, help="openmmtools warm-up iterations")
    parser.add_argument("--repeats", type=int, default=3, help="alternated repeats, best kept (at least 3)")
    parser.add_argument("--quick", action="store_true", help="R = 5, vacuum only")
    args = parser.parse_args(argv)

    cases = ALL_CASES if args.cases is None else tuple(s.strip() for s in args.cases.split(","))
    for c in cases:
        if c not in ALL_CASES:
            parser.error(f"--cases: {c!r} is not one of {ALL_CASES}")
    args.platforms = tuple(s.strip() for s in args.platforms.split(","))
    for p in args.platforms:
        if p not in OPENMM_PLATFORMS:
            parser.error(f"--platforms: {p!r} is not one of {OPENMM_PLATFORMS}")
    for name in ("rounds", "steps_between", "ladders", "warmup"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be a positive integer, got {getattr(args, name)}")
    if not 0.0 < args.timestep <= 4.0:
        parser.error(f"--timestep must be in (0, 4] fs, got {args.timestep}")
    if args.repeats < 3:
        parser.error(f"--repeats must be at least 3 (best of ≥ 3), got {args.repeats}")
    if args.quick:
        args.rounds = min(args.rounds, 5)
        if args.cases is None:
            cases = ("vacuum",)

    try:
        import openmmtools  # noqa: F401  (a benchmark baseline only, not a project dependency)
    except ImportError as error:
        print(f"skipped: openmmtools is not importable ({error}); it is the baseline of this benchmark only, "
              f"not a dependency of langevin_md. Install it (e.g. `pip install openmmtools`) to run it.")
        return 0
    import logging

    import torch

    logging.getLogger("openmmtools").setLevel(logging.ERROR)  # its 'experimental API' warning per sampler
    torch.set_num_threads(1)

    start = time.perf_counter()
    print(f"load average at start: {load_average()}  ({time.strftime('%Y-%m-%d %H:%M:%S %Z')}, "
          f"{os.cpu_count()} CPUs; torch threads {torch.get_num_threads()}, OpenMM CPU Threads=1; "
          f"openmmtools {openmmtools.__version__})")
    print(f"ladder: {N_TEMPERATURES} geometric rungs {T_COLD:g}-{T_HOT:g} K; BAOAB/LangevinMiddle "
          f"{args.timestep:g} fs, gamma {FRICTION:g}/ps; K = {args.steps_between} steps per round; "
          f"R = {args.rounds} rounds per measurement; best of {args.repeats}; openmmtools mixing {args.mixing}")
    folder = tempfile.mkdtemp(prefix="bench_rex_")
    results = {}
    try:
        for case in cases:
            results[case] = measure(case, args, folder)
            print(f"  measured {case} ({time.perf_counter() - start:.0f} s so far)", flush=True)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print()
    print(markdown_table(results, args))
    print()
    for case, best in results.items():
        setup = ", ".join(f"{n} ladder(s): {s:.3f} s" for n, s in best["setup"].items())
        print(f"{case}: our executor {best['backend']}; per-call setup of lmd.sample (included in ours "
              f"s/round, spread over R = {args.rounds}): {setup}")
        floor = ", ".join(f"{p} {best['floor', p]:.4f}" for p in args.platforms)
        print(f"{case}: bare OpenMM work of one round (8 x {args.steps_between} steps + 8 energies on one "
              f"LangevinMiddle Context, no openmmtools), s/round: {floor}")
    print(f"load average at end: {load_average()}; wall time {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
