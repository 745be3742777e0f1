"""Our molecular paths against OpenMM at its best, per core and on all cores, in one process.

The honest harness of issue 21: for each case and walker count N, walker-steps per second of

* **default**: ``lmd.sample`` as the README shows it (``alanine_dipeptide(...)`` with its
  default engine, float64, ``backend="auto"``, ``compile="auto"``, ``record_every=10``); on the
  torch executor its force field evaluates the standard terms with the fused numba kernels
  (``kernels="auto"``, :mod:`langevin_md.forcefield.fused`) and BAOAB runs on their lanes
  (:mod:`langevin_md.integrators.lanes_langevin`); a row that ``backend="auto"`` sends to the
  OpenMM executor says so;
* **torch**: the default with ``kernels="torch"`` (the batched torch terms: the default path
  before the fused kernels);
* **mixed**: the same with ``precision="mixed"`` (float32 terms, float64 state), eager steps
  around the fused kernels (the lanes BAOAB runs double precision only);
* **float32**: ``dtype="float32"``, eager;
* **compiled**: mixed precision with ``compile=True`` (the cold compile is timed apart and
  not counted; only with ``--variants ...,compiled``: it takes minutes under load);

against one OpenMM ``LangevinMiddleIntegrator`` Context (the same BAOAB scheme, timestep,
friction and ``openmm.System``) on each of Reference, CPU with ``Threads=1`` and CPU with all
threads, the fastest kept and named. Ratios are our walker-steps/s over OpenMM's steps/s.

Two tables: **per core** (torch on one thread; OpenMM's best of Reference and CPU Threads=1)
and **all cores** (torch and OpenMM CPU on every core; OpenMM's best of the three).

Cases (alanine dipeptide, Amber ff14SB, BAOAB, γ = 1/ps, 300 K):

* ``vacuum``: no constraints, 1 fs;
* ``obc2``: OBC2 implicit solvent, 1 fs;
* ``hbonds``: vacuum, bonds to hydrogen constrained, 2 fs;
* ``hbonds-hmr``: as ``hbonds`` with hydrogen masses of 4 amu, 4 fs;
* ``protein``: a 100–600-atom protein in OBC2, 1 fs, from ``--pdb PATH`` (a PDB with
  hydrogens, Amber ff14SB + OBC2). The repository ships no chignolin or villin input, so
  this case runs only when a file is given;
* ``peptide-obc2``: the villin-size stand-in that ships, ``polyalanine(57, fold="bundle",
  solvent="implicit")`` (582 atoms, three helices, radius of gyration 1.0 nm like villin
  headpiece), OBC2, all pairs (``NoCutoff``), 1 fs;
* ``peptide-obc2-cutoff``: the same with ``CutoffNonPeriodic`` at ``PEPTIDE_CUTOFF`` nm on
  both sides (OpenMM gets the same System), where our nonbonded and GB terms run on
  neighbour lists with a skin (``langevin_md.forcefield.neighbours``).

Method: every measurement is a window of about ``--seconds`` (the number of steps of a
``sample`` call is calibrated once per cell, so compiled graphs are not rebuilt); contenders
are alternated within each repeat (A/B/A/B…), the best of ``--repeats`` (≥ 3) is kept, and the
load average is printed at start and end. The machine should be quiet; only ratios from one
run mean much.

Run ``python benchmarks/bench_vs_openmm.py`` (all cases, N ∈ {1, 16, 64, 1024, 8192}); ``--quick``
for vacuum and hbonds at N ∈ {64, 1024}, 1 s windows, 3 repeats, per-core table only.
``--cases``, ``--walkers``, ``--variants``, ``--tables per-core,all-cores``, ``--json PATH``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import dataclass
from typing import Optional

FRICTION = 1.0          # 1/ps
TEMPERATURE = 300.0     # K
RECORD_EVERY = 10       # as the README's examples
SECONDS_PER_DAY = 86400.0

ALL_CASES = ("vacuum", "obc2", "hbonds", "hbonds-hmr", "protein", "peptide-obc2", "peptide-obc2-cutoff")
PEPTIDE_CUTOFF = 1.0    # nm
ALL_WALKERS = (1, 16, 64, 1024, 8192)
ALL_VARIANTS = ("default", "torch", "mixed", "float32", "compiled")
TABLES = ("per-core", "all-cores")
OPENMM_CONFIGS = ("Reference", "CPU-1", "CPU-all")


@dataclass
class Case:
    """One benchmark case: the OpenMM bridge and our builders for it."""

    name: str
    timestep: float                  # ps
    bridge: object                   # OpenMMSystem (its openmm.System is OpenMM's side)
    default: object                  # what ``lmd.systems.alanine_dipeptide(...)`` returns by default
    mixed: object                    # the torch force field with precision="mixed"


def load_average() -> str:
    """The 1, 5 and 15 minute load averages, as text (``n/a`` where the OS has none)."""
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "n/a"


def build_case(name: str, pdb: Optional[str]) -> Case:
    import langevin_md as lmd
    from langevin_md.systems import OpenMMSystem

    if name == "protein":
        bridge = OpenMMSystem.from_pdb(pdb, forcefield=("amber14-all.xml", "implicit/obc2.xml"),
                                       temperature=TEMPERATURE)
        return Case(name, 0.001, bridge, bridge.to_torch(), bridge.to_torch(precision="mixed"))
    if name.startswith("peptide-obc2"):
        options = dict(n_residues=57, fold="bundle", solvent="implicit", temperature=TEMPERATURE,
                       nonbonded_cutoff=PEPTIDE_CUTOFF if name.endswith("cutoff") else None)
        bridge = lmd.systems.polyalanine(engine="openmm", **options)
        return Case(name, 0.001, bridge, lmd.systems.polyalanine(**options),
                    lmd.systems.polyalanine(engine="torch", precision="mixed", **options))
    options = {"vacuum": dict(solvent="vacuum"), "obc2": dict(solvent="implicit"),
               "hbonds": dict(constraints="HBonds"), "hbonds-hmr": dict(constraints="HBonds", hydrogen_mass=4.0)}[name]
    timestep = {"vacuum": 0.001, "obc2": 0.001, "hbonds": 0.002, "hbonds-hmr": 0.004}[name]
    bridge = lmd.systems.alanine_dipeptide(temperature=TEMPERATURE, engine="openmm", **options)
    default = lmd.systems.alanine_dipeptide(temperature=TEMPERATURE, **options)
    mixed = lmd.systems.alanine_dipeptide(temperature=TEMPERATURE, engine="torch", precision="mixed", **options)
    return Case(name, timestep, bridge, default, mixed)


# --------------------------------------------------------------------------- OpenMM side
class OpenMMContender:
    """One LangevinMiddleIntegrator Context on one platform configuration."""

    def __init__(self, case: Case, config: str):
        import openmm
        from openmm import unit

        self.config = config
        integrator = openmm.LangevinMiddleIntegrator(TEMPERATURE * unit.kelvin, FRICTION / unit.picosecond,
                                                     case.timestep * unit.picosecond)
        if config == "Reference":
            platform, properties = openmm.Platform.getPlatformByName("Reference"), {}
        else:
            threads = 1 if config == "CPU-1" else os.cpu_count()
            platform, properties = openmm.Platform.getPlatformByName("CPU"), {"Threads": str(threads)}
        self.context = openmm.Context(case.bridge.openmm_system, integrator, platform, properties)
        self.context.setPositions(case.bridge.positions)
        self.context.applyConstraints(1e-6)
        self.context.setVelocitiesToTemperature(TEMPERATURE * unit.kelvin, 1)
        self.integrator = integrator
        integrator.step(20)
        self.chunk = 10

    def steps_per_second(self, seconds: float) -> float:
        k, t0 = 0, time.perf_counter()
        while True:
            self.integrator.step(self.chunk)
            k += self.chunk
            elapsed = time.perf_counter() - t0
            if elapsed >= seconds:
                break
            if elapsed < 0.05 * seconds:
                self.chunk *= 2
        return k / elapsed


# --------------------------------------------------------------------------- our side
class TorchContender:
    """``lmd.sample`` calls of one (case, variant, N, threads), with a calibrated step count."""

    def __init__(self, case: Case, variant: str, n_walkers: int, threads: int, seconds: float):
        import langevin_md as lmd

        self.n_walkers, self.threads, self.variant = n_walkers, threads, variant
        self.integrator = lmd.integrators.BAOAB(timestep=case.timestep, friction=FRICTION)
        self.system = case.mixed if variant in ("mixed", "compiled") else case.default
        if variant == "torch":
            self.system = case.default.with_kernels("torch")
        self.options = {"default": {}, "torch": {}, "mixed": {"compile": False},
                        "float32": {"dtype": "float32", "compile": False},
                        "compiled": {"compile": True}}[variant]
        # calibrate: a short call (compiles, for the compiled variant), then the window's length
        t0 = time.perf_counter()
        self._call(RECORD_EVERY)
        self.first_call_seconds = time.perf_counter() - t0
        per_step = self._time(RECORD_EVERY) / RECORD_EVERY
        self.n_steps = max(RECORD_EVERY, int(seconds / per_step) // RECORD_EVERY * RECORD_EVERY)
        # a compiled graph for this length, if the length matters to it; and which executor ran
        self.backend = self._call(self.n_steps).metadata["backend"]

    def _call(self, n_steps: int):
        import langevin_md as lmd

        # The default variant is lmd.sample as the README shows it (no threads=, so backend="auto"
        # may route to OpenMM); the process's torch thread count and OPENMM_CPU_THREADS (set by
        # measure) hold it to the table's threads. The other variants pin the torch executor.
        threads = {} if self.variant == "default" else {"threads": self.threads}
        return lmd.sample(self.system, self.integrator, n_steps=n_steps, n_walkers=self.n_walkers,
                          record_every=RECORD_EVERY, seed=0, progress=False, **threads, **self.options)

    def _time(self, n_steps: int) -> float:
        t0 = time.perf_counter()
        self._call(n_steps)
        return time.perf_counter() - t0

    def walker_steps_per_second(self) -> float:
        return self.n_walkers * self.n_steps / self._time(self.n_steps)


# --------------------------------------------------------------------------- the run
def measure(case: Case, walkers, variants, table: str, seconds: float, repeats: int) -> dict:
    """Best rates of every contender of one case: ``{("openmm", config) | (variant, N): rate}``."""
    import torch

    threads = 1 if table == "per-core" else os.cpu_count()
    torch.set_num_threads(threads)
    os.environ["OPENMM_CPU_THREADS"] = str(threads)  # Contexts the auto route builds without Threads
    configs = ("Reference", "CPU-1") if table == "per-core" else OPENMM_CONFIGS
    openmm_side = {c: OpenMMContender(case, c) for c in configs}
    ours, first_call = {}, {}
    for n in walkers:
        for v in variants:
            ours[v, n] = TorchContender(case, v, n, threads, seconds)
            first_call[v, n] = ours[v, n].first_call_seconds
    best: dict = {}
    for _ in range(repeats):  # alternate every contender within each repeat
        for c, contender in openmm_side.items():
            best["openmm", c] = max(best.get(("openmm", c), 0.0), contender.steps_per_second(seconds))
        for key, contender in ours.items():
            best[key] = max(best.get(key, 0.0), contender.walker_steps_per_second())
    best["first_call_seconds"] = first_call
    best["backends"] = {key: contender.backend for key, contender in ours.items()}
    return best


def ns_per_day(timestep_ps: float, steps_per_second: float) -> float:
    return timestep_ps * 1e-3 * steps_per_second * SECONDS_PER_DAY


def markdown_table(table: str, cases: dict, results: dict, walkers, variants) -> str:
    lines = [f"### {table} (torch threads: {1 if table == 'per-core' else os.cpu_count()})", "",
             "| case | OpenMM best (steps/s, config) | N | " + " | ".join(f"{v} (×, ns/day)" for v in variants) + " |",
             "|---|---|---|" + "---|" * len(variants)]
    for name, case in cases.items():
        best = results[table, name]
        omm = {k[1]: r for k, r in best.items() if isinstance(k, tuple) and k[0] == "openmm"}
        config = max(omm, key=omm.get)
        for n in walkers:
            cells = []
            for v in variants:
                rate = best[v, n]
                ran = "" if best["backends"][v, n] == "torch" else f", {best['backends'][v, n]} executor"
                cells.append(f"{rate / omm[config]:.2f}× ({ns_per_day(case.timestep, rate):.0f}{ran})")
            lines.append(f"| {name} ({1e3 * case.timestep:g} fs) | {omm[config]:.0f} ({config}) | {n} | "
                         + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", default=None, help=f"comma-separated, of {ALL_CASES}")
    parser.add_argument("--walkers", default=None, help="comma-separated walker counts")
    parser.add_argument("--variants", default="default,mixed,float32", help=f"comma-separated, of {ALL_VARIANTS}")
    parser.add_argument("--tables", default="per-core,all-cores", help=f"comma-separated, of {TABLES}")
    parser.add_argument("--seconds", type=float, default=2.0, help="timing window per measurement")
    parser.add_argument("--repeats", type=int, default=3, help="alternated repeats, best kept (at least 3)")
    parser.add_argument("--pdb", default=None, help="PDB (with hydrogens) of a 100-600-atom protein for 'protein'")
    parser.add_argument("--quick", action="store_true", help="vacuum and hbonds, N = 64 and 1024, 1 s, per core")
    parser.add_argument("--json", default=None, help="also write the rates here")
    args = parser.parse_args(argv)

    def pick(text, allowed, default, kind):
        chosen = default if text is None else tuple(s.strip() for s in text.split(","))
        for item in chosen:
            if item not in allowed:
                parser.error(f"--{kind}: {item!r} is not one of {allowed}")
        return chosen

    cases = pick(args.cases, ALL_CASES, ("vacuum", "obc2", "hbonds", "hbonds-hmr") + (("protein",) if args.pdb else ()),
                 "cases")
    variants = pick(args.variants, ALL_VARIANTS, None, "variants")
    tables = pick(args.tables, TABLES, None, "tables")
    try:
        walkers = ALL_WALKERS if args.walkers is None else tuple(int(s) for s in args.walkers.split(","))
    except ValueError:
        parser.error(f"--walkers must be comma-separated integers, got {args.walkers!r}")
    if any(n < 1 for n in walkers):
        parser.error(f"--walkers must be positive, got {walkers}")
    if args.quick:
        if args.cases is None:
            cases = ("vacuum", "hbonds")
        if args.walkers is None:
            walkers = (64, 1024)
        if args.tables == parser.get_default("tables"):
            tables = ("per-core",)
        args.seconds = min(args.seconds, 1.0)
    if args.repeats < 3:
        parser.error(f"--repeats must be at least 3 (best of ≥ 3), got {args.repeats}")
    if "protein" in cases and not args.pdb:
        parser.error("case 'protein' needs --pdb PATH (the repository ships no chignolin or villin input)")

    start = time.perf_counter()
    print(f"load average at start: {load_average()}  ({time.strftime('%Y-%m-%d %H:%M:%S %Z')}, "
          f"{os.cpu_count()} CPUs)")
    built = {name: build_case(name, args.pdb) for name in cases}
    results = {}
    for table in tables:
        for name, case in built.items():
            results[table, name] = measure(case, walkers, variants, table, args.seconds, args.repeats)
            print(f"  measured {table} / {name} ({time.perf_counter() - start:.0f} s so far)", flush=True)
    print()
    for table in tables:
        print(markdown_table(table, built, results, walkers, variants))
        print()
    print(f"load average at end: {load_average()}; wall time {time.perf_counter() - start:.0f} s")
    if args.json:
        rows = [{"table": t, "case": c, "contender": list(k) if isinstance(k, tuple) else k,
                 "rate": r if not isinstance(r, dict) else {f"{a}@{b}": s for (a, b), s in r.items()}}
                for (t, c), best in results.items() for k, r in best.items()]
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
