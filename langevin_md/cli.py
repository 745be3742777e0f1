"""The ``langevin-md`` command line.

Subcommands: ``run``, ``resume``, ``systems``, ``export``, ``compare``, and ``demo``, ``analyze``,
``validate``, ``train`` (which delegate to their modules). Every handler imports what it
needs when it runs, so ``langevin-md --help`` is fast.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path
from typing import Optional, Sequence

# Every other import is inside the command that needs it: `langevin-md --help` and
# `langevin-md systems` must not import torch, OpenMM or the system registry (tests/test_system_table.py).

EXIT_OK = 0
EXIT_ERROR = 1        # run folder, storage or other runtime errors
EXIT_USAGE = 2        # bad command line or config file
EXIT_NONFINITE = 3    # the state went NaN/inf

_EPILOG = """\
exit status: 0 done; 1 error (run folder, disk, ...); 2 bad command line or config;
3 the state went non-finite; 128+N stopped by signal N (130 for Ctrl-C, 143 for SIGTERM)
after writing a checkpoint (continue with `langevin-md resume RUN_DIR`).
"""


def _die(message: str, code: int) -> int:
    print(f"langevin-md: error: {message}", file=sys.stderr)
    return code


# --------------------------------------------------------------------------- run / resume
def _run_folder_command(run_dir: Path, progress: Optional[bool]) -> int:
    """Run or resume ``run_dir`` and turn its outcome into an exit status and a message."""
    from langevin_md.errors import ConfigError
    from langevin_md.io.checkpoint import CheckpointError, RunInterrupted
    from langevin_md.run.folder import RunFailed, RunFolderError
    from langevin_md.run.session import execute_run
    from langevin_md.io.trajectory import TrajectoryError

    try:
        summary = execute_run(run_dir, progress=progress, echo=True)
    except RunInterrupted as exc:
        name = signal.Signals(exc.signum).name
        print(f"langevin-md: stopped by {name} at step {exc.step}; checkpoint written to "
              f"{exc.checkpoint}.\nTo continue: langevin-md resume {run_dir}", file=sys.stderr)
        return 128 + exc.signum
    except RunFailed as exc:
        return _die(str(exc), EXIT_NONFINITE)
    except ConfigError as exc:
        return _die(str(exc), EXIT_USAGE)
    except (RunFolderError, TrajectoryError, CheckpointError, OSError) as exc:
        return _die(str(exc), EXIT_ERROR)
    print(f"langevin-md: {summary['status']}: {summary['n_frames']} frames up to step {summary['step']} "
          f"in {run_dir}", file=sys.stderr)
    return EXIT_OK


def cmd_run(args) -> int:
    from langevin_md.errors import ConfigError
    from langevin_md.run.build import check_config
    from langevin_md.run.config import load_config
    from langevin_md.run.folder import RunFolderError, create_run

    config_path = Path(args.config)
    try:
        cfg = load_config(config_path)
        # Everything is checked before a folder exists: keys, paths and files, the system, the
        # integrator, the executor's settings (seed, device, dtype) and the memory the run needs.
        check_config(cfg)
    except (FileNotFoundError, IsADirectoryError, PermissionError) as exc:
        return _die(str(exc), EXIT_USAGE)
    except ConfigError as exc:
        return _die(str(exc), EXIT_USAGE)
    run_dir = Path(args.output) if args.output else Path("runs") / config_path.stem
    if args.scheduler is not None:
        return _run_distributed(cfg, run_dir, args)
    if args.shards is not None:
        return _die("--shards needs --scheduler ADDRESS", EXIT_USAGE)
    try:
        create_run(cfg, run_dir, force=args.force)
    except RunFolderError as exc:
        return _die(str(exc), EXIT_ERROR)
    print(f"langevin-md: run folder {run_dir}", file=sys.stderr)
    return _run_folder_command(run_dir, args.progress)


def _run_distributed(cfg, run_dir: Path, args) -> int:
    try:
        from langevin_md.run.distributed import run_distributed
        import distributed  # noqa: F401
    except ImportError:
        return _die("--scheduler needs Dask: pip install 'langevin_md[distributed]'", EXIT_USAGE)
    from langevin_md.run.folder import RunFolderError
    from langevin_md.safe_paths import UnsafePathError

    print(f"langevin-md: run folder {run_dir}, walkers sharded on {args.scheduler}", file=sys.stderr)
    try:
        summary = run_distributed(cfg, run_dir, args.scheduler, n_shards=args.shards, force=args.force,
                                  progress=args.progress)
    except (RunFolderError, ValueError, UnsafePathError) as exc:
        return _die(str(exc), EXIT_ERROR)
    except OSError as exc:
        return _die(f"cannot reach the Dask scheduler at {args.scheduler}: {exc}", EXIT_ERROR)
    retried = summary["distributed"]["retried_shards"]
    print(f"langevin-md: completed: {summary['n_frames']} frames from {summary['distributed']['n_shards']} "
          f"shards in {run_dir}; retried shards: {', '.join(retried) or 'none'}", file=sys.stderr)
    return EXIT_OK


def cmd_resume(args) -> int:
    from langevin_md.run.folder import RunFolderError, check_run_folder, is_run_folder

    run_dir = Path(args.run_dir)
    if not is_run_folder(run_dir):
        try:
            check_run_folder(run_dir)  # raises, with the reason (e.g. a folder from an older version)
        except (RunFolderError, OSError) as exc:
            return _die(f"{exc} (make one with `langevin-md run CONFIG.toml`)", EXIT_USAGE)
    return _run_folder_command(run_dir, args.progress)


# --------------------------------------------------------------------------- systems
def cmd_systems(args) -> int:
    # A static table, not config.system_choices(): listing must not import torch or OpenMM
    # (tests/test_system_table.py keeps the two in agreement).
    from langevin_md.system_table import REQUIRED, SYSTEMS

    for kind in ("analytic", "molecular"):
        rows = sorted((name, e) for name, e in SYSTEMS.items() if e.kind == kind)
        if not rows:
            continue
        print(f"{kind} systems:")
        for name, entry in rows:
            print(f"  {name:28s} {entry.description}")
            if args.verbose:
                for arg, default in entry.arguments:
                    shown = "(required)" if default is REQUIRED else f"= {default!r}"
                    print(f"      {arg} {shown}")
        print()
    print("Use one as [system] name = \"...\" in a config file; its other keys are the constructor's "
          "arguments (`langevin-md systems -v` lists them with their defaults).")
    return EXIT_OK


# --------------------------------------------------------------------------- export
def cmd_export(args) -> int:
    run_dir = Path(args.run_dir)
    result = _load_frames(run_dir, "export")
    if isinstance(result, int):
        return result
    if not 0 <= args.walker < result.n_walkers:
        return _die(f"--walker must be in [0, {result.n_walkers}), got {args.walker}", EXIT_USAGE)
    out = Path(args.output) if args.output else run_dir / f"walker_{args.walker}.{args.format}"
    try:
        written = export(result, args.walker, args.format, out)
    except ValueError as exc:
        return _die(str(exc), EXIT_USAGE)
    except OSError as exc:
        return _die(f"writing {out} failed: {exc}", EXIT_ERROR)
    print("\n".join(str(p) for p in written))
    return EXIT_OK


def export(result, walker: int, fmt: str, out: Path) -> list[Path]:
    """Write one walker's frames as ``xtc``, ``dcd``, ``h5`` (mdtraj HDF5) or ``extxyz``.

    Frames carry their time (ps: step × timestep; the step for schemes without a timestep),
    which XTC and HDF5 store. Returns the files written (XTC and DCD files get a PDB of the
    first frame beside them, as they hold no topology).
    """
    from langevin_md.safe_paths import check_target, write_via_temp  # every file through a fresh temporary file

    out = Path(out)
    if fmt == "extxyz":
        from langevin_md.ase_interop import write_extxyz

        write_via_temp(out, lambda tmp: write_extxyz(result, walker, tmp))
        return [out]
    if result.metadata.get("topology") is None and getattr(result.system, "topology", None) is None:
        raise ValueError(f"--format {fmt} needs a molecular run (with a topology); "
                         "use --format extxyz for this system")
    traj = result.to_mdtraj(walker=walker)
    if fmt == "h5":
        write_via_temp(out, lambda tmp: traj.save_hdf5(tmp, force_overwrite=True))
        return [out]
    if fmt in ("dcd", "xtc"):
        # mdtraj converts its nm positions to each format's unit (ångström in DCD, nm in XTC).
        pdb = out.with_suffix(".pdb")
        check_target(pdb)  # both refused before either is written
        write_via_temp(out, lambda tmp: (traj.save_dcd if fmt == "dcd" else traj.save_xtc)(tmp, force_overwrite=True))
        write_via_temp(pdb, lambda tmp: traj[0].save_pdb(tmp, force_overwrite=True))
        return [out, pdb]
    raise ValueError(f"--format must be xtc, dcd, h5 or extxyz, got {fmt!r}")


# --------------------------------------------------------------------------- compare
def cmd_compare(args) -> int:
    from langevin_md.compare.config import load_compare_config
    from langevin_md.errors import ConfigError

    config_path = Path(args.config)
    try:
        cfg = load_compare_config(config_path)
        system = cfg.build_system()
        samplers = cfg.build_samplers()
    except (FileNotFoundError, IsADirectoryError, PermissionError, ConfigError) as exc:
        return _die(str(exc), EXIT_USAGE)
    if args.sampler is not None and args.sampler not in samplers:
        return _die(f"--sampler {args.sampler!r} is not in [samplers]; there: {', '.join(samplers)}", EXIT_USAGE)
    out_dir = Path(args.output) if args.output else Path(f"compare_{config_path.stem}")
    from langevin_md.compare import compare, plot_step_size_sweep, step_size_sweep

    c = cfg.compare
    common = dict(n_force_evals=c["n_force_evals"], n_walkers=c["n_walkers"], seed=c["seed"],
                  burn_in_fraction=c["burn_in_fraction"], device=c["device"], dtype=c["dtype"])
    from langevin_md.safe_paths import make_dirs

    try:
        make_dirs(out_dir)
        if args.step_sizes:
            name = args.sampler or next(iter(samplers))
            table = step_size_sweep(system, samplers[name], args.step_sizes, **common)
            stem = "sweep"
        else:
            table = compare(system, samplers, **common)
            stem = "comparison"
        print(table.table())
        written = [table.save(out_dir / f"{stem}.csv"), table.save(out_dir / f"{stem}.txt")]
        if args.step_sizes:
            written.append(plot_step_size_sweep(table, out_dir / "sweep.png", system))
    except (TypeError, ValueError) as exc:
        return _die(str(exc), EXIT_USAGE)
    except OSError as exc:
        return _die(f"writing to {out_dir} failed: {exc}", EXIT_ERROR)
    print("\n".join(f"wrote {p}" for p in written), file=sys.stderr)
    return EXIT_OK


# --------------------------------------------------------------------------- delegates
class _Unavailable(Exception):
    pass


def _module(name: str, command: str):
    """Import a module a subcommand delegates to; a clear error if it is not installed."""
    import importlib

    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name and (name == exc.name or name.startswith(exc.name + ".")):
            raise _Unavailable(f"`langevin-md {command}` is not available: module {name} is missing "
                               "from this installation") from None
        raise


def cmd_demo(args) -> int:
    return _module("langevin_md.demo", "demo").main(args.output) or EXIT_OK


def _load_frames(run_dir: Path, what: str):
    """A run folder's result, or the exit code after saying why it cannot be used.

    Read first, so a folder that is not a run, a damaged trajectory or a run with no frames is
    reported as such rather than from deep inside the export or analysis.
    """
    from langevin_md.run.folder import RunFolderError, load_run
    from langevin_md.io.trajectory import TrajectoryError

    try:
        result = load_run(run_dir)
    except RunFolderError as exc:
        return _die(str(exc), EXIT_USAGE)
    except (TrajectoryError, OSError) as exc:
        return _die(str(exc), EXIT_ERROR)
    if result.n_frames == 0:
        return _die(f"{run_dir} holds no recorded frames (status {result.metadata.get('status')!r}); "
                    f"there is nothing to {what}", EXIT_ERROR)
    return result


def cmd_analyze(args) -> int:
    run_dir = Path(args.run_dir)
    result = _load_frames(run_dir, "analyse")
    if isinstance(result, int):
        return result
    reference = None
    if args.reference is not None:
        reference = _load_frames(Path(args.reference), "compare with")
        if isinstance(reference, int):
            return reference
    try:
        analyze = _module("langevin_md.run.analyze", "analyze")
        code = analyze.analyze_run(args.run_dir) or EXIT_OK
        if reference is not None:
            analyze.compare_runs(run_dir, Path(args.reference), result, reference)
        topology = result.metadata.get("topology")
        if code == EXIT_OK and topology is not None:
            protein = _module("langevin_md.analysis.protein", "analyze")
            # Peptides and proteins (two or more residues with phi and psi) also get backbone
            # Ramachandran plots, RMSD, radius of gyration and DSSP; alanine dipeptide's single
            # phi/psi pair is already in the main report.
            if protein.n_phi_psi_residues(topology) >= 2:
                from langevin_md.safe_paths import make_dirs

                make_dirs(run_dir / "report" / "protein", inside=run_dir)  # no link below the run folder
                report = protein.protein_report(result, run_dir / "report" / "protein", topology=topology)
                print(f"protein report: {run_dir / 'report' / 'protein'} ({len(report.files)} files)")
        return code
    except (ValueError, FloatingPointError) as exc:
        return _die(f"cannot analyse {run_dir}: {exc}", EXIT_ERROR)
    except OSError as exc:  # a read-only folder, a full disk, a link where the report goes
        return _die(f"cannot write the report into {run_dir / 'report'}: {_os_error_words(exc)}", EXIT_ERROR)


def _os_error_words(exc: OSError) -> str:
    """An OSError as a sentence with what to do (no errno tuple, no traceback)."""
    import errno

    hints = {errno.EACCES: "permission denied: make the folder writable, or copy the run folder somewhere "
                           "you can write and analyse the copy",
             errno.EPERM: "operation not permitted: make the folder writable",
             errno.EROFS: "the file system is read-only: copy the run folder to a writable place",
             errno.ENOSPC: "the disk is full: free space"}
    where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
    if exc.errno in hints:
        return hints[exc.errno] + where
    return str(exc)


def cmd_validate(args) -> int:
    return _module("langevin_md.validate", "validate").main(args.args) or EXIT_OK


def cmd_train(args) -> int:
    from langevin_md.training.config import check_config_path

    try:
        check_config_path(args.config)
        return _module("langevin_md.training", "train").main(args.config) or EXIT_OK
    except (ValueError, TypeError, FileNotFoundError, IsADirectoryError, PermissionError) as exc:
        return _die(str(exc), EXIT_USAGE)
    except OSError as exc:  # a link or FIFO where the model goes, a full disk
        return _die(_os_error_words(exc), EXIT_ERROR)


def _train_config_format() -> str:
    """The training config format, from langevin_md/training/config.py's docstring.

    Read from the source file rather than by importing the module, which would import torch
    for every `langevin-md --help`.
    """
    import ast

    path = Path(__file__).parent / "training" / "config.py"
    try:
        doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
    except (OSError, SyntaxError):
        return ""
    body = doc.split("\n", 1)[1].strip() if "\n" in doc else ""
    return "config format:\n" + body.replace("``", "").replace("file)::", "file):")


# --------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    from langevin_md import __version__

    p = argparse.ArgumentParser(
        prog="langevin-md",
        description="Sample Boltzmann distributions with Langevin dynamics.",
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"langevin-md {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def progress_flag(sp):
        g = sp.add_mutually_exclusive_group()
        g.add_argument("--progress", dest="progress", action="store_true", default=None,
                       help="show a progress bar (default: only on a terminal)")
        g.add_argument("--no-progress", dest="progress", action="store_false", help="never show one")

    sp = sub.add_parser(
        "run", help="run a config file into a new run folder",
        description="Run CONFIG.toml into a new run folder holding the resolved config, run.log, "
                    "trajectory.h5, checkpoints/ and summary.json. Ctrl-C or SIGTERM finish the "
                    "current chunk, write a checkpoint and exit; continue with `langevin-md resume`.",
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    sp.add_argument("config", metavar="CONFIG.toml", help="TOML config with [system], [integrator], [sampler]")
    sp.add_argument("--output", "-o", metavar="RUN_DIR", help="run folder (default: runs/<config name>)")
    sp.add_argument("--force", action="store_true", help="replace RUN_DIR if it is an existing run folder")
    sp.add_argument("--scheduler", metavar="ADDRESS", default=None,
                    help="run the walkers in shards on the Dask cluster at ADDRESS (tcp://host:8786); "
                         "the result is bitwise equal to a local run")
    sp.add_argument("--shards", type=int, default=None, metavar="N",
                    help="number of shards with --scheduler (default: one per worker)")
    progress_flag(sp)
    sp.set_defaults(handler=cmd_run)

    sp = sub.add_parser(
        "resume", help="continue a stopped or crashed run from its newest checkpoint",
        description="Continue RUN_DIR from its newest checkpoint. Frames written after that "
                    "checkpoint are dropped and computed again, so no frame is duplicated or missing; "
                    "under the torch executor the trajectory equals that of an uninterrupted run bit "
                    "for bit (the OpenMM executor continues in law). You may raise [sampler] n_steps in "
                    "RUN_DIR/config.toml first to extend a finished run.",
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    sp.add_argument("run_dir", metavar="RUN_DIR")
    progress_flag(sp)
    sp.set_defaults(handler=cmd_resume)

    sp = sub.add_parser("systems", help="list the built-in systems (analytic and molecular)",
                        description="List the built-in systems usable as [system] name = ... in a config.")
    sp.add_argument("--verbose", "-v", action="store_true", help="also list each system's keys and defaults")
    sp.set_defaults(handler=cmd_systems)

    sp = sub.add_parser(
        "export", help="write one walker's trajectory as XTC, DCD, mdtraj HDF5 or extended XYZ",
        description="Write walker I of RUN_DIR for other tools: xtc or dcd (plus a PDB topology) and "
                    "h5 (mdtraj's HDF5) for molecular runs, read by mdtraj, VMD, PyMOL; extxyz, read by "
                    "ASE (molecular runs in Å and eV, others in their reduced units). Frame times are "
                    "in ps (step × the integrator's timestep; for schemes without a timestep, such as "
                    "MALA or HMC, the time is the step number).")
    sp.add_argument("run_dir", metavar="RUN_DIR")
    sp.add_argument("--walker", "-w", type=int, default=0, metavar="I", help="walker index (default 0)")
    sp.add_argument("--format", "-f", choices=("xtc", "dcd", "h5", "extxyz"), default="h5")
    sp.add_argument("--output", "-o", metavar="PATH", help="file to write (default RUN_DIR/walker_I.FORMAT)")
    sp.set_defaults(handler=cmd_export)

    sp = sub.add_parser(
        "compare", help="several samplers on one system with one budget, side by side",
        description="Run every sampler of CONFIG.toml on its system with the same number of force "
                    "evaluations per walker and print a table: bias z-scores against exact answers, "
                    "acceptance, tau, ESS per 1000 force evaluations, R-hat and a verdict. With "
                    "--step-sizes, sweep one sampler's step size instead and also draw sweep.png.",
        epilog="config format:\n"
               "  [system]            # as in a run config: name = \"gaussian_mixture\", ...\n"
               "  [compare]           # n_force_evals (required), n_walkers, seed, burn_in_fraction\n"
               "  n_force_evals = 20000\n"
               "  [samplers.MALA]     # one table per sampler; type = an integrator class\n"
               "  type = \"MALA\"\n"
               "  step_size = 0.3\n",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    sp.add_argument("config", metavar="CONFIG.toml")
    sp.add_argument("--step-sizes", type=float, nargs="+", metavar="H",
                    help="sweep these step sizes (the sampler's step_size, timestep or scale)")
    sp.add_argument("--sampler", metavar="NAME", help="which [samplers.NAME] to sweep (default: the first)")
    sp.add_argument("--output", "-o", metavar="DIR",
                    help="where the table (.csv, .txt) and plot go (default: compare_<config name>)")
    sp.set_defaults(handler=cmd_compare)

    sp = sub.add_parser("demo", help="a short tour: sample, analyse and plot a built-in system",
                        description="Run the demo (langevin_md.demo) and write its outputs to DIR.")
    sp.add_argument("--output", "-o", default="demo_output", metavar="DIR", help="default: demo_output")
    sp.set_defaults(handler=cmd_demo)

    sp = sub.add_parser("analyze", help="sampling-quality report of a run folder",
                        description="Write an analysis report (autocorrelation, ESS, R-hat) to RUN_DIR/report; "
                                    "for peptides and proteins (two or more residues with phi and psi) also "
                                    "RUN_DIR/report/protein (Ramachandran plots, RMSD, radius of gyration, DSSP).")
    sp.add_argument("run_dir", metavar="RUN_DIR")
    sp.add_argument("--reference", metavar="RUN2", default=None,
                    help="also compare RUN_DIR's backbone φ/ψ law with run folder RUN2's (e.g. a prior or CG "
                         "model against all-atom): free-energy surfaces side by side and their difference "
                         "(report/comparison.png), Jensen-Shannon divergence with its error, state "
                         "populations and a plain-language verdict (report/verdict.txt)")
    sp.set_defaults(handler=cmd_analyze)

    sp = sub.add_parser("validate", help="check the samplers against exact answers",
                        description="Run langevin_md.validate; arguments after `validate` are passed on.")
    sp.add_argument("args", nargs=argparse.REMAINDER, help="arguments for langevin_md.validate")
    sp.set_defaults(handler=cmd_validate)

    sp = sub.add_parser("train", help="fit a learned energy/score prior from a config",
                        description="Train a learned prior by denoising score matching (the default; "
                                    "langevin_md.training.fit) or by force matching on a run folder's recorded "
                                    "forces ([force_matching], optionally onto [cg] beads) as described by "
                                    "CONFIG.toml; prints the losses per epoch, the best epoch and where the model "
                                    "was saved.",
                        epilog=_train_config_format(), formatter_class=argparse.RawDescriptionHelpFormatter)
    sp.add_argument("config", metavar="CONFIG.toml")
    sp.set_defaults(handler=cmd_train)
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the ``langevin-md`` console script; returns the exit status."""
    parser = build_parser()
    # `validate` forwards everything after it (its own --options too) to langevin_md.validate;
    # argparse's REMAINDER does not capture a leading "--option", so split it off here.
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["validate"]:
        args = parser.parse_args(["validate"])
        args.args = argv[1:]
    else:
        args = parser.parse_args(argv)
    try:
        code = args.handler(args)
    except _Unavailable as exc:
        return _die(str(exc), EXIT_ERROR)
    except KeyboardInterrupt:
        print("langevin-md: interrupted", file=sys.stderr)
        return 130
    except MemoryError:
        return _die("out of memory; use fewer walkers or record less often", EXIT_ERROR)
    except Exception as exc:  # noqa: BLE001 - the last line of defence: no traceback for users
        if os.environ.get("LANGEVIN_MD_DEBUG"):
            raise
        return _die(f"{type(exc).__name__}: {exc} (this is unexpected; set LANGEVIN_MD_DEBUG=1 for the "
                    "traceback and report it)", EXIT_ERROR)
    # Delegated commands may return None or a value (e.g. an output path): that is success.
    return code if isinstance(code, int) and not isinstance(code, bool) else EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
