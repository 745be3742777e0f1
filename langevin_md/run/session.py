"""One session of a run: start (or resume), record, checkpoint, stop on signals, finish.

:func:`execute_run` takes a folder made by :func:`langevin_md.run.folder.create_run` to its
last step. The folder format (files, marker, lock, summaries) is :mod:`langevin_md.run.folder`;
what is built from the config is :mod:`langevin_md.run.build`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from pathlib import Path
from typing import Optional

import numpy as np

from ..errors import NonFiniteStateError
from ..executors.recorder import frame_field_specs
from ..executors.results import acceptance_rate, integrator_timestep, metadata
from ..io.checkpoint import CheckpointReporter, RunInterrupted, atomic_write_bytes, latest_checkpoint
from ..io.trajectory import TrajectoryError, TrajectoryWriter, system_units
from .build import build_integrator, build_sampler, build_system, minimized_start
from .config import load_config
from .folder import (CHECKPOINTS, CONFIG, LOG, STATE, TRAJECTORY, RunFailed, RunFolderError, check_run_folder,
                     locked, now, open_nofollow, read_summary, storage_error, versions, write_integrator_summary,
                     write_config, write_summary)
from .progress import DEFAULT_PROGRESS_EVERY_S, ProgressReporter
from .state_reporter import StateReporter

__all__ = ["execute_run"]


#: ``extra`` of a progress line's log record: stderr shows it only when no progress bar does.
PROGRESS_RECORD = {"progress_line": True}


def _bar_shown(progress: Optional[bool]) -> bool:
    """Whether tqdm draws a bar (``progress=None``: only when stderr is a terminal)."""
    if progress is not None:
        return bool(progress)
    try:
        return os.isatty(2)
    except OSError:
        return False


@contextlib.contextmanager
def _run_logger(run_dir: Path, echo: bool, progress: Optional[bool] = None):
    logger = logging.getLogger(f"langevin_md.run.{id(run_dir)}.{time.monotonic_ns()}")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%d %H:%M:%S")
    # never through a link, never blocking on a FIFO planted at run.log
    log_file = os.fdopen(open_nofollow(run_dir / LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT), "a",
                         encoding="utf-8")
    handlers = [logging.StreamHandler(log_file)]
    if echo:
        stream = logging.StreamHandler()
        stream.addFilter(lambda record: record.levelno < logging.ERROR)  # the caller reports errors
        if _bar_shown(progress):  # the bar already shows progress on the terminal
            stream.addFilter(lambda record: not getattr(record, "progress_line", False))
        handlers.append(stream)
    for h in handlers:
        h.setFormatter(fmt)
        logger.addHandler(h)
    try:
        yield logger
    finally:
        for h in handlers:
            logger.removeHandler(h)
            h.close()
        log_file.close()


@contextlib.contextmanager
def _stop_on_signals(reporter: CheckpointReporter, logger, enabled: bool):
    """SIGINT/SIGTERM ask the reporter to checkpoint and stop; a second one stops at once."""
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {}

    def handler(signum, frame):
        if reporter.stop_signal is not None:
            # Second signal: give up on the graceful stop (the last checkpoint is still good).
            signal.signal(signum, previous.get(signum, signal.SIG_DFL))
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            os.kill(os.getpid(), signum)
            return
        reporter.request_stop(signum)

    for sig in (signal.SIGINT, signal.SIGTERM):
        previous[sig] = signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, h in previous.items():
            signal.signal(sig, h)



def execute_run(run_dir, progress: Optional[bool] = None, handle_signals: bool = True,
                echo: bool = False) -> dict:
    """Run (or continue) the run in ``run_dir`` to its last step.

    Starts from the newest checkpoint when there is one (dropping frames written after it),
    otherwise from step 0. Checkpoints every ``checkpoint_every`` steps and at the end.

    Parameters
    ----------
    run_dir : str or PathLike
        A folder made by :func:`create_run`.
    progress : bool, optional
        Progress bar (default: only on a terminal).
    handle_signals : bool
        SIGINT/SIGTERM finish the current chunk, checkpoint and raise :class:`RunInterrupted`.
    echo : bool
        Also log to stderr.

    Returns
    -------
    dict
        The summary (also in ``summary.json``).

    Raises
    ------
    RunInterrupted, RunFailed, RunStorageError, RunFolderError, ConfigError
    """
    run_dir = check_run_folder(run_dir)
    if not (run_dir / CONFIG).is_file():
        raise RunFolderError(f"{run_dir / CONFIG} is missing; the run folder was damaged. Start a new run "
                             "with `langevin-md run CONFIG.toml --force --output RUN_DIR`")
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(locked(run_dir))
            log = stack.enter_context(_run_logger(run_dir, echo, progress))
        except OSError as exc:
            raise storage_error(exc, f"opening run folder {run_dir}", "Nothing was run.") from None
        cfg = load_config(run_dir / CONFIG)
        return _run_and_record(run_dir, cfg, log, progress, handle_signals)


def _run_and_record(run_dir: Path, cfg, log, progress, handle_signals) -> dict:
    """One session: start or resume, record to the end, write the summary whatever happens."""
    prev = read_summary(run_dir)
    system, integrator, sampler, found = _start(run_dir, cfg, log)
    writer, ck_path = _open_trajectory(run_dir, cfg, system, integrator, sampler, found, log)
    start_step = sampler.step
    summary = _session_summary(run_dir, cfg, system, integrator, sampler, writer, found, ck_path, prev)
    write_summary(run_dir, summary, log)
    reporter = _checkpoint_reporter(run_dir, cfg, sampler, writer, ck_path, log, summary)
    reporters = [reporter, _progress_reporter(run_dir, cfg, sampler, integrator, writer, reporter, summary, log)]
    state_file = _state_file(run_dir, cfg, sampler, writer, found)
    if state_file is not None:
        output = cfg.output
        reporters.append(StateReporter(state_file, output["state_every"], terminal=bool(output["state_terminal"]),
                                       total_steps=cfg.end_step))
    t0 = time.perf_counter()
    error: Optional[BaseException] = None
    try:
        error = _record(run_dir, cfg, sampler, writer, reporter, reporters, summary, log, progress,
                        handle_signals)
    finally:
        session = time.perf_counter() - t0
        if state_file is not None:
            state_file.close()
        try:
            writer.close()
        except OSError as exc:
            log.error("closing %s failed: %s", TRAJECTORY, exc)
        _finish_summary(run_dir, summary, sampler, integrator, writer, reporter, error, start_step, session)
        write_summary(run_dir, summary, log)
    if error is not None:
        raise error
    return summary


def _start(run_dir: Path, cfg, log):
    """System, integrator (each built once) and the executor at its first step of this session.

    Returns ``(system, integrator, sampler, found)``; ``found`` is the newest readable
    checkpoint ``(path, state_dict, extra)`` or None for a fresh start (then minimised when
    the config has ``[minimize]``).
    """
    ckdir = run_dir / CHECKPOINTS
    for stale in ckdir.glob(".*.tmp-*"):  # left by a writer killed mid-checkpoint
        stale.unlink()
    system = build_system(cfg)
    integrator = build_integrator(cfg, system)
    skipped: list = []
    found = latest_checkpoint(ckdir, skipped)
    start = None
    if found is None and cfg.minimize is not None:
        # Only a fresh start is minimised: a checkpoint already holds the minimised walkers' state.
        t_min = time.perf_counter()
        minimized = minimized_start(cfg, system, int(cfg.sampler["n_walkers"]))
        unit = "kJ/mol" if system.units == "molecular" else "(reduced energy units)"
        log.info("%s in %.3g s", minimized.summary(unit), time.perf_counter() - t_min)
        start = minimized.positions
    unresolved = cfg.sampler.get("backend") == "auto"  # a folder made without check_config
    sampler = build_sampler(cfg, system, integrator, initial_positions=start)
    if unresolved and found is None:
        write_config(run_dir, cfg)  # record the executor chosen, so a resume keeps it
    for path, reason in skipped:
        log.warning("skipping unreadable checkpoint %s: %s", path.name, reason)
    if found is None and skipped:
        log.warning("no checkpoint of %s is readable (%d unreadable); restarting the run from step 0 "
                    "and rewriting %s", run_dir, len(skipped), TRAJECTORY)
    return system, integrator, sampler, found


def _open_trajectory(run_dir: Path, cfg, system, integrator, sampler, found, log):
    """The trajectory writer: reopened at the checkpoint (the sampler's state loaded from it)
    or created at step 0. Returns ``(writer, checkpoint path or None)``."""
    traj = run_dir / TRAJECTORY
    end = cfg.end_step
    if found is not None:
        ck_path, sd, extra = found
        if extra.get("config") != cfg.fingerprint():
            raise RunFolderError(
                f"{run_dir / CONFIG} was changed after the run started (only n_steps and "
                "checkpoint_every may change between sessions); restore it or start a new run")
        sampler.load_state_dict(sd)
        if sampler.step > end:
            raise RunFolderError(f"the newest checkpoint is at step {sampler.step}, past the run's end "
                                 f"(step {end} = burn_in + n_steps); n_steps cannot shrink")
        try:
            writer = TrajectoryWriter.reopen(traj, sampler.step, int(extra["n_frames"]))
        except TrajectoryError as exc:
            raise RunFolderError(f"cannot resume {run_dir}: {exc}. The checkpoint {ck_path.name} needs "
                                 f"its first {int(extra['n_frames'])} frames. To recover: copy the intact "
                                 f"frames out with `langevin-md export` if you need them, then delete "
                                 f"{TRAJECTORY} and {CHECKPOINTS}/ and run `langevin-md resume {run_dir}`, "
                                 "which recomputes the run from step 0") from None
        except OSError as exc:
            raise storage_error(exc, f"rewriting {traj} up to step {sampler.step}",
                                f"The checkpoint {ck_path} is intact.") from None
        log.info("resuming from %s: step %d, %d frames kept", ck_path.name, sampler.step, writer.n_frames)
        return writer, ck_path
    sampler.burn_in_end = sampler.step + int(cfg.sampler["burn_in"])  # as Sampler.run does
    try:
        fields = {k: (v.shape[1:], v.dtype) for k, v in sampler.recorded_fields().items()}
        fields.update(frame_field_specs(system, _record_forces(cfg), sampler.numpy_dtype))
        writer = TrajectoryWriter.create(
            traj, sampler.n_walkers, system.event_shape, np.dtype(sampler.numpy_dtype),
            integrator.has_velocities, sampler.walker_indices, system.kT, system_units(system),
            system.topology, fields=fields)
    except OSError as exc:
        raise storage_error(exc, f"creating {traj}", "Nothing was run.") from None
    log.info("starting %s with %s on %d walkers (backend %s, seed %d, %s, %s), steps 0 -> %d",
             cfg.system["name"], cfg.integrator["name"], sampler.n_walkers, cfg.sampler["backend"],
             sampler.seed, sampler.device, sampler.dtype, end)
    if cfg.tempering is not None:
        log.info("replica exchange: %d temperatures, kT ratios %s, swap every %d steps (%s)",
                 len(integrator.ladder), ", ".join(f"{r:.4g}" for r in integrator.ladder),
                 integrator.swap_every, integrator.scheme)
    return writer, None


def _record_forces(cfg) -> bool:
    """``[output] forces``: record every frame's forces (float32) in ``fields/forces``."""
    return bool((cfg.output or {}).get("forces"))


def _session_summary(run_dir: Path, cfg, system, integrator, sampler, writer, found, ck_path, prev: dict) -> dict:
    """``summary.json`` at the start of a session (status ``running``)."""
    meta = metadata(system, integrator, sampler.seed, sampler.device, sampler.dtype, cfg.sampler["backend"])
    return {
        "status": "running", "step": sampler.step, "end_step": cfg.end_step, "n_frames": writer.n_frames,
        "committed_step": sampler.step if found else 0,
        "last_checkpoint": str(ck_path.relative_to(run_dir)) if ck_path else None,
        "wall_time": float(prev.get("wall_time", 0.0)), "metadata": meta,
        "sessions": prev.get("sessions", []) + [{"started": now(), "from_step": sampler.step}],
        "versions": versions(), "error": None,
    }


def _checkpoint_reporter(run_dir: Path, cfg, sampler, writer, ck_path, log, summary: dict) -> CheckpointReporter:
    """Checkpoints every ``checkpoint_every`` steps and at the end, committing the frames;
    ``summary.json`` is rewritten after each."""

    def on_checkpoint(path, step):
        log.info("checkpoint %s (step %d, %d frames)", path.name, step, writer.n_frames)
        summary.update(step=int(step), n_frames=writer.n_frames, last_checkpoint=str(path.relative_to(run_dir)),
                       committed_step=max(int(summary["committed_step"]), int(step)), updated=now())
        write_summary(run_dir, summary, log)

    reporter = CheckpointReporter(run_dir / CHECKPOINTS, every=cfg.sampler["checkpoint_every"], end=cfg.end_step,
                                  commit=writer.commit, extra={"config": cfg.fingerprint()},
                                  on_checkpoint=on_checkpoint)
    reporter.last_step = sampler.step
    reporter.last_path = ck_path
    return reporter


def _progress_reporter(run_dir: Path, cfg, sampler, integrator, writer, checkpoints, summary: dict,
                       log) -> ProgressReporter:
    """A progress line in ``run.log`` every ``[output] progress_every`` seconds and
    ``summary.json`` rewritten at least every minute while the run goes on."""

    def status(info: dict) -> None:
        summary.update(step=info["step"], n_frames=writer.n_frames, updated=now(),
                       progress={k: info[k] for k in ("steps_per_second", "walker_steps_per_second",
                                                      "ns_per_day", "eta_s")})
        if checkpoints.last_path is not None:
            summary["last_checkpoint"] = str(checkpoints.last_path.relative_to(run_dir))
        write_summary(run_dir, summary, log)

    every = (cfg.output or {}).get("progress_every") or DEFAULT_PROGRESS_EVERY_S
    timestep = integrator_timestep(integrator) if sampler.system.units == "molecular" else None
    # Pausing the OpenMM executor would change its walkers' random numbers (progress.py).
    return ProgressReporter(cfg.end_step, lambda line: log.info("%s", line, extra=PROGRESS_RECORD), every=every,
                            status=status, timestep_ps=timestep,
                            may_pause=cfg.sampler.get("backend", "torch") != "openmm")


def _state_file(run_dir: Path, cfg, sampler, writer, found):
    """``state.csv`` opened for this session when ``[output] state_every`` is set, else None."""
    if not (cfg.output or {}).get("state_every"):
        return None
    try:
        return _open_state_csv(run_dir / STATE, sampler.step if found else None)
    except (OSError, RunFolderError) as exc:
        writer.close()
        if isinstance(exc, RunFolderError):
            raise
        raise storage_error(exc, f"opening {run_dir / STATE}", "Nothing was run in this session.") from None


def _record(run_dir: Path, cfg, sampler, writer, reporter, reporters, summary: dict, log, progress,
            handle_signals) -> Optional[BaseException]:
    """Run to the end step; returns the error to raise after the summary is written (None when
    the run completed). Sets ``summary["status"]`` (and ``"error"``)."""
    s = cfg.sampler
    try:
        with _stop_on_signals(reporter, log, handle_signals):
            sampler.run_to(cfg.end_step, record_every=s["record_every"], reporters=reporters, progress=progress,
                           frame_sinks=[writer], keep_frames=False, record_forces=_record_forces(cfg))
        summary["status"] = "completed"
        write_integrator_summary(run_dir, sampler.integrator_summary())
        log.info("completed: step %d, %d frames", sampler.step, writer.n_frames)
        return None
    except RunInterrupted as exc:
        summary["status"] = "interrupted"
        log.info("stopped by signal %d at step %d; checkpoint %s", exc.signum, exc.step, exc.checkpoint.name)
        return exc
    except NonFiniteStateError as exc:
        summary["status"] = "failed"
        error = _nonfinite(exc, run_dir, reporter, writer, log)
        summary["error"] = str(error)
        return error
    except OSError as exc:
        summary["status"] = "failed"
        last = reporter.last_path
        safe = (f"Frames up to step {reporter.last_step} are safe, with checkpoint {last}; then run "
                f"`langevin-md resume {run_dir}`." if last is not None else
                f"No checkpoint had been written; run `langevin-md resume {run_dir}` to start again.")
        error = storage_error(exc, f"writing to {run_dir} at step {sampler.step}", safe)
        summary["error"] = str(error)
        log.error("%s", error)
        return error
    except BaseException as exc:  # KeyboardInterrupt on a second Ctrl-C, bugs
        summary["status"] = "failed"
        summary["error"] = f"{type(exc).__name__}: {exc}"
        log.error("stopped: %s", summary["error"])
        raise


def _finish_summary(run_dir: Path, summary: dict, sampler, integrator, writer, reporter, error, start_step: int,
                    session: float) -> None:
    """Fill in the summary's end-of-session fields (steps, frames, wall time, acceptance)."""
    summary["wall_time"] += session
    summary["step"] = sampler.step
    summary["n_frames"] = writer.n_frames
    summary["committed_step"] = max(summary["committed_step"], reporter.last_step or 0)
    if isinstance(error, RunFailed):
        summary["committed_step"] = max(summary["committed_step"], error.committed_step)
    summary["last_checkpoint"] = (str(reporter.last_path.relative_to(run_dir))
                                  if reporter.last_path else None)
    steps_done = sampler.step - start_step
    summary["sessions"][-1].update(ended=now(), to_step=sampler.step, status=summary["status"],
                                   wall_time=session)
    summary["walker_steps_per_second"] = (sampler.n_walkers * steps_done / session
                                          if session > 0 and steps_done else None)
    acc = acceptance_rate(sampler.accepted, sampler.production_steps, integrator.metropolis_adjusted)
    if acc is not None:
        summary["acceptance_rate_mean"] = float(acc.mean())
    summary["finished"] = now() if summary["status"] == "completed" else None
    if summary["status"] == "completed" and isinstance(summary.get("progress"), dict):
        summary["progress"]["eta_s"] = 0.0


class _RowsAfterHeader:
    """A text file that drops the first line written to it.

    A resumed run's :class:`~langevin_md.run.state_reporter.StateReporter` starts with the CSV
    header, which ``state.csv`` already has: the rows are appended below the old ones.
    """

    def __init__(self, fh):
        self._fh = fh
        self._skipping = True

    def write(self, text: str) -> int:
        if self._skipping:
            _, newline, text = text.partition("\n")
            self._skipping = not newline
        return self._fh.write(text) if text else 0

    def flush(self) -> None:
        self._fh.flush()

    def close(self) -> None:
        self._fh.close()


def _open_state_csv(path: Path, resume_step: Optional[int]):
    """``state.csv`` for this session: new at step 0; on resume, rows after ``resume_step`` are
    dropped (they are computed again) and the new ones appended (the executors report after
    steps, never at the step a session starts from)."""
    if resume_step is None or not path.is_file():
        return os.fdopen(open_nofollow(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), "w", encoding="utf-8",
                         newline="")
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    kept = lines[:1] + [line for line in lines[1:]
                        if line.split(",", 1)[0].isdigit() and int(line.split(",", 1)[0]) <= resume_step]
    atomic_write_bytes(path, "".join(kept).encode("utf-8"))
    fh = os.fdopen(open_nofollow(path, os.O_WRONLY | os.O_APPEND), "w", encoding="utf-8", newline="")
    return _RowsAfterHeader(fh) if kept else fh



def _nonfinite(exc, run_dir: Path, reporter: CheckpointReporter, writer: TrajectoryWriter, log) -> RunFailed:
    committed = 0
    try:
        writer.commit()  # the finite frames recorded before it are worth keeping
        committed = exc.steps[0]
        kept = f"the {writer.n_frames} finite frames recorded before it are in {run_dir / TRAJECTORY}"
    except OSError as err:
        kept = f"the frames after the last checkpoint could not be saved ({err})"
    if reporter.last_path is not None:
        where = f"The last good checkpoint is {reporter.last_path} (step {reporter.last_step})"
    else:
        where = "No checkpoint had been written yet"
    msg = (f"{exc}\nNothing non-finite was checkpointed. {where}; {kept}. The run is "
           "deterministic, so resuming it would reach the same state again: start a new run "
           "with a smaller step size or a better starting point.")
    log.error("%s", msg)
    return RunFailed(msg, exc.steps, exc.walkers, reporter.last_path, committed)
