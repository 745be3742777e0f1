"""Ensembles of walkers on a Dask cluster, merged into one ordinary run folder.

The walkers of a run are cut into contiguous shards. Each shard is a complete run folder of
its own (``RUN_DIR/shards/shard_NNN``) that runs walkers ``first_walker`` to
``first_walker + n_walkers − 1`` of the whole run, with checkpoints, exactly as
``langevin-md run`` would run them. Because every walker draws from its own counter-based
random stream (:mod:`langevin_md.random`), a walker's chain does not depend on which shard,
worker or machine runs it, and the merged result is bitwise equal to a local run of the same
config.

With ``backend = "openmm"`` each shard holds exactly one walker. OpenMM's Reference platform
draws every Context's random numbers from one process-wide generator, so walkers that share a
process interleave their draws; alone in its shard, walker ``w``'s chain depends only on the
run seed, ``w`` and the checkpoint schedule, and is the chain a local run of that walker alone
(``first_walker = w``, ``n_walkers = 1``) produces (see :mod:`langevin_md.executors.openmm`).

Fault tolerance comes from two facts:

* a shard task is idempotent: it resumes its shard folder from the newest checkpoint, and
  returns at once when the shard is already complete, so work that was finished is neither
  recomputed nor lost when Dask re-runs a task;
* Dask reschedules the tasks of a worker that dies (up to ``distributed.scheduler.
  allowed-failures`` times), and ``retries`` re-submits a task that raised.

Every attempt appends a line to ``shard_NNN/attempts.jsonl`` (worker, pid, starting step),
and the merged ``summary.json`` lists the shards that needed more than one attempt.

The only thing that changes between a laptop and a cluster is the scheduler address: a
``LocalCluster`` in the tests, ``dask-jobqueue`` on SLURM/PBS, or a Dask Kubernetes operator
(see README).
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import time
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from .. import checks, integrators
from ..executors.results import acceptance_rate
from ..io.checkpoint import checkpoint_path, latest_checkpoint, save_checkpoint
from ..io.trajectory import TrajectoryWriter, read_trajectory, topology_from_json
from .build import build_integrator, build_system, resolve_backend
from ..errors import ConfigError
from .config import RunConfig, load_config
from .folder import (CHECKPOINTS, CONFIG, LOG, TRAJECTORY, RunFolderError, append_text, check_run_folder,
                     create_run, is_run_folder, read_integrator_summary, read_summary, versions,
                     write_integrator_summary, write_summary)
from ..safe_paths import atomic_write, make_dirs
from .session import execute_run

SHARDS = "shards"
ATTEMPTS = "attempts.jsonl"
#: The shard layout of a distributed run, in its parent folder: shard count, walker ranges and
#: each shard config's fingerprint. A continuation must use the same layout.
LAYOUT = "shards.json"


def shard_ranges(n_walkers: int, n_shards: int, block: int = 1) -> list[tuple[int, int]]:
    """Cut ``n_walkers`` into ``n_shards`` contiguous ``(first_walker, n_walkers)`` ranges.

    Walkers are dealt in whole blocks of ``block`` (a replica-exchange ladder must stay in one
    shard, since its swaps couple its walkers); the first shards get one block more than the
    others when the blocks do not divide evenly.
    """
    n_shards = checks.positive_int("n_shards", n_shards)
    block = checks.positive_int("block", block)
    if n_walkers % block:
        raise ValueError(f"n_walkers ({n_walkers}) must be a multiple of {block}, the walkers that "
                         "must share a shard (one replica-exchange ladder)")
    n_blocks = n_walkers // block
    if n_shards > n_blocks:
        what = "walker" if block == 1 else f"ladder of {block} walkers"
        raise ValueError(f"n_shards ({n_shards}) cannot exceed the {n_blocks} groups of walkers: "
                         f"every shard needs at least one {what}")
    base, extra = divmod(n_blocks, n_shards)
    out, first = [], 0
    for i in range(n_shards):
        n = (base + (1 if i < extra else 0)) * block
        out.append((first, n))
        first += n
    return out


def walker_block(cfg) -> int:
    """How many consecutive walkers the configured integrator couples (1 unless replica exchange)."""
    return int(getattr(build_integrator(cfg), "walker_block", 1))


def _shard_config(cfg, first: int, n: int):
    sampler = dict(cfg.sampler, first_walker=first, n_walkers=n)
    return dataclasses.replace(cfg, sampler=sampler)


def shard_layout(cfg, ranges: list[tuple[int, int]]) -> dict:
    """The layout record of a distributed run: shard count, walker ranges, config fingerprints.

    Parameters
    ----------
    cfg : RunConfig
        The whole run's config.
    ranges : list of (int, int)
        ``(first_walker, n_walkers)`` per shard, from :func:`shard_ranges`.
    """
    return {"n_shards": len(ranges), "n_walkers": int(cfg.sampler["n_walkers"]), "config": cfg.fingerprint(),
            "shards": [{"name": f"shard_{i:03d}", "first_walker": first, "n_walkers": n,
                        "config": _shard_config(cfg, first, n).fingerprint()}
                       for i, (first, n) in enumerate(ranges)]}


def _ranges_text(layout: dict) -> str:
    return ", ".join(f"{s['first_walker']}-{s['first_walker'] + s['n_walkers'] - 1}" for s in layout["shards"])


def check_layout(run_dir: Path, cfg, layout: dict) -> None:
    """Refuse to continue ``run_dir`` with another shard layout or an edited shard config.

    Merging shards of two layouts would join some walkers twice (2 shards, then 4: 24 walkers
    for 16), and a shard whose config was edited ran another chain than the merged config says.

    Parameters
    ----------
    run_dir : pathlib.Path
    cfg : RunConfig
        The whole run's config.
    layout : dict
        From :func:`shard_layout`: the layout this call would use.

    Raises
    ------
    RunFolderError
        Naming the difference (shard count and walker ranges, or the shard and the config keys
        that differ) and the way out (the same shard count, or ``--force`` to start over).
    """
    way_out = (f"pass --force to start over (deleting {run_dir / SHARDS})")
    path = run_dir / LAYOUT
    try:
        recorded = json.loads(path.read_text(encoding="utf-8")) if path.is_file() and not path.is_symlink() else None
    except (OSError, ValueError) as exc:
        raise RunFolderError(f"cannot read {path} ({exc}): the shard layout of this distributed run is "
                             f"unknown; {way_out}") from None
    if recorded is None:
        # A folder from before layouts were recorded: its shard folders say what they hold.
        recorded = {"n_shards": sum(1 for d in (run_dir / SHARDS).iterdir() if d.name.startswith("shard_")),
                    "shards": []}
        for d in sorted((run_dir / SHARDS).iterdir()):
            if is_run_folder(d):
                sampler = load_config(d / CONFIG).sampler
                recorded["shards"].append({"name": d.name, "first_walker": int(sampler.get("first_walker", 0)),
                                           "n_walkers": int(sampler["n_walkers"])})
    if (recorded.get("n_shards") != layout["n_shards"]
            or [(s["first_walker"], s["n_walkers"]) for s in recorded.get("shards", [])]
            != [(s["first_walker"], s["n_walkers"]) for s in layout["shards"]]):
        raise RunFolderError(
            f"{run_dir} was started with {recorded.get('n_shards')} shards (walkers {_ranges_text(recorded)}); "
            f"this run asks for {layout['n_shards']} shards (walkers {_ranges_text(layout)}). Merging shards "
            f"of two layouts would count walkers twice. Continue with n_shards = {recorded.get('n_shards')} "
            f"(--shards {recorded.get('n_shards')}), or {way_out}")
    for shard in layout["shards"]:
        d = run_dir / SHARDS / shard["name"]
        if not is_run_folder(d):
            continue  # not created yet: it is created from the config below
        check_run_folder(d)
        found = load_config(d / CONFIG)
        expected = _shard_config(cfg, shard["first_walker"], shard["n_walkers"])
        if found.fingerprint() != expected.fingerprint():
            raise RunFolderError(
                f"{d / CONFIG} was edited: {_config_difference(found, expected)}; a shard must run the "
                f"walkers the run's config describes. Restore it, or {way_out}")


def _config_difference(found, expected) -> str:
    """The keys where a shard's config differs from the one the run's config gives it."""
    diffs = []
    a, b = found.to_dict(), expected.to_dict()
    for section in sorted(set(a) | set(b)):
        sa, sb = a.get(section) or {}, b.get(section) or {}
        for key in sorted(set(sa) | set(sb)):
            if key in ("n_steps", "checkpoint_every"):
                continue
            if sa.get(key) != sb.get(key):
                diffs.append(f"[{section}] {key} = {sa.get(key)!r} there, {sb.get(key)!r} in the run's config")
    return "; ".join(diffs) or f"its fingerprint is {found.fingerprint()}, the run expects {expected.fingerprint()}"


def run_shard(shard_dir: str) -> dict:
    """Run or resume one shard folder to its end (the task a Dask worker executes).

    Returns the shard's summary. Limits torch to one thread: a worker is one core's worth of
    a cluster's process slots, and oversubscribed threads slow every shard down.
    """
    shard = Path(shard_dir)
    torch.set_num_threads(1)
    summary = read_summary(shard)
    found = latest_checkpoint(shard / CHECKPOINTS)
    record = {"worker_pid": os.getpid(), "host": socket.gethostname(), "time": time.time(),
              "from_step": int(found[1]["step"]) if found else 0,
              "already_complete": summary.get("status") == "completed"}
    append_text(shard / ATTEMPTS, json.dumps(record) + "\n")  # never through a symlink
    if record["already_complete"]:
        return summary
    return execute_run(shard, progress=False, handle_signals=False)


def _attempts(shard: Path) -> list[dict]:
    path = shard / ATTEMPTS
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _backend_chosen_before(cfg, run_dir: Path, force: bool) -> bool:
    """Take ``backend = "auto"``'s choice from an earlier call on ``run_dir``, if it ran this config.

    A continuation must run on the executor its shards started on; deciding again (a timed
    probe, or the short-run rule once n_steps grew) could pick the other one, and the resolved
    config would then no longer match the folder's, which refused the continuation. Sets
    ``cfg``'s backend and returns True when the folder's config is ``cfg`` with a resolved
    backend; False (nothing changed) otherwise.
    """
    if force or not is_run_folder(run_dir) or not (run_dir / SHARDS).is_dir():
        return False
    try:
        stored = load_config(run_dir / CONFIG)
    except (ConfigError, OSError):
        return False  # the checks below report a damaged folder
    backend = stored.sampler.get("backend", "torch")
    if dataclasses.replace(cfg, sampler=dict(cfg.sampler, backend=backend)).fingerprint() != stored.fingerprint():
        return False
    cfg.sampler["backend"] = backend
    cfg.backend_reason = f"as chosen when the distributed run in {run_dir} started"
    return True


def run_distributed(config, run_dir, scheduler, n_shards: Optional[int] = None,
                    force: bool = False, retries: int = 2, progress: Optional[bool] = None) -> dict:
    """Run a config's walkers in shards on a Dask cluster and merge them into ``run_dir``.

    Parameters
    ----------
    config : str, PathLike or RunConfig
        A TOML config (as for ``langevin-md run``).
    run_dir : str or PathLike
        The run folder to create; it ends up with the same layout as a local run (config,
        log, trajectory, checkpoints, summary) plus ``shards/``. An existing folder made by an
        earlier distributed run of the same config is continued (finished shards are kept).
    scheduler : str or distributed.Client
        Scheduler address (``tcp://host:8786``) or a connected client.
    n_shards : int, optional
        Number of shards (default: the number of workers, at most ``n_walkers``).
    force : bool
        Replace an existing run folder.
    retries : int
        Extra attempts for a shard task that raised (a dead worker is handled by Dask's
        rescheduling, not counted here).
    progress : bool, optional
        Progress bar over shards (default: only on a terminal).

    Returns
    -------
    dict
        The merged summary (also written to ``summary.json``).
    """
    # lazy: Dask and tqdm are optional and heavy; only a distributed run needs them
    from distributed import Client, as_completed
    from tqdm.auto import tqdm

    cfg = config if isinstance(config, RunConfig) else load_config(config)
    run_dir = Path(run_dir)
    n_walkers = int(cfg.sampler["n_walkers"])
    if not force and is_run_folder(run_dir):
        check_run_folder(run_dir)  # no link among its entries (shards/ included) before reading them
    if cfg.sampler.get("backend") == "auto" and not _backend_chosen_before(cfg, run_dir, force):
        # Decided once here, not per shard: every shard must run on the same executor.
        system = build_system(cfg)
        resolve_backend(cfg, system, build_integrator(cfg, system))
    one_per_shard = cfg.sampler.get("backend", "torch") == "openmm"
    if one_per_shard and n_shards not in (None, n_walkers):
        raise ValueError(f"backend = 'openmm' runs one walker per shard (for reproducible chains on "
                         f"OpenMM's shared random generator): n_shards must be {n_walkers} "
                         f"(n_walkers) or unset, got {n_shards!r}")
    continuing = (not force and is_run_folder(run_dir) and (run_dir / SHARDS).is_dir()
                  and load_config(run_dir / CONFIG).fingerprint() == cfg.fingerprint())
    if continuing:
        # The fingerprint leaves out n_steps, but shards are never extended: their configs keep
        # the old length and a completed shard returns at once, so a longer config would be
        # merged at the old end step and reported "completed".
        before = load_config(run_dir / CONFIG)
        if before.end_step != cfg.end_step:
            raise RunFolderError(
                f"{run_dir} is a distributed run to step {before.end_step} (burn_in + n_steps = "
                f"{before.sampler['burn_in']} + {before.sampler['n_steps']}); this config asks for step "
                f"{cfg.end_step}, and a distributed run's shards cannot be extended. Continue it with "
                f"n_steps = {before.sampler['n_steps']}, extend the merged folder locally with `langevin-md "
                f"resume {run_dir}` after raising n_steps in {run_dir / CONFIG}, or pass --force to start over")
    else:
        create_run(cfg, run_dir, force=force)
    own_client = not isinstance(scheduler, Client)
    client = Client(scheduler) if own_client else scheduler
    t0 = time.perf_counter()
    try:
        if one_per_shard:
            n_shards = n_walkers
        block = 1 if one_per_shard else walker_block(cfg)
        if n_shards is None:
            n_shards = max(1, min(n_walkers // block, len(client.scheduler_info()["workers"])))
        layout = shard_layout(cfg, shard_ranges(n_walkers, n_shards, block))
        if continuing:
            check_layout(run_dir, cfg, layout)
        else:
            make_dirs(run_dir / SHARDS, inside=run_dir)
            atomic_write(run_dir / LAYOUT, (json.dumps(layout, indent=1) + "\n").encode())
        shard_dirs = []
        for i, shard in enumerate(layout["shards"]):
            d = run_dir / SHARDS / shard["name"]
            if not is_run_folder(d):
                make_dirs(d, inside=run_dir)  # a real folder: a link at shards/shard_NNN is refused
                create_run(_shard_config(cfg, shard["first_walker"], shard["n_walkers"]), d)
            shard_dirs.append(d)
        futures = [client.submit(run_shard, str(d), key=f"langevin-md-{d.name}-{cfg.fingerprint()}",
                                 pure=False, retries=retries) for d in shard_dirs]
        with tqdm(total=len(futures), desc="shards", disable=None if progress is None else not progress) as bar:
            for fut in as_completed(futures):
                fut.result()  # re-raises a shard's final error here, naming it
                bar.update(1)
    finally:
        if own_client:
            client.close()
    return merge_shards(run_dir, shard_dirs, cfg, time.perf_counter() - t0)


def merge_shards(run_dir: Path, shard_dirs: list[Path], cfg, wall_time: float) -> dict:
    """Join finished shard folders into ``run_dir``'s trajectory, checkpoint and summary."""
    parts = [read_trajectory(d / TRAJECTORY) for d in shard_dirs]
    steps = parts[0]["steps"]
    for d, p in zip(shard_dirs, parts):
        if not np.array_equal(p["steps"], steps):
            raise RuntimeError(f"shard {d} recorded different steps from {shard_dirs[0]}; "
                               "the shards are not from the same run")
    cat = lambda key: None if parts[0][key] is None else np.concatenate([p[key] for p in parts], axis=1)  # noqa: E731
    positions = cat("positions")
    topology = topology_from_json(parts[0]["topology_json"]) if parts[0]["topology_json"] else None
    writer = TrajectoryWriter.create(
        run_dir / TRAJECTORY, positions.shape[1], parts[0]["event_shape"], positions.dtype,
        parts[0]["kinetic_energies"] is not None,
        np.concatenate([p["walker_indices"] for p in parts]), parts[0]["kT"], parts[0]["units"], topology,
        fields={name: (a.shape[2:], a.dtype) for name, a in parts[0]["fields"].items()})
    try:
        fields = {name: np.concatenate([p["fields"][name] for p in parts], axis=1) for name in parts[0]["fields"]}
        if len(steps):
            writer.write_frames(steps, positions, cat("energies"), cat("kinetic_energies"), fields)
        committed = writer.commit()
    finally:
        writer.close()

    # One checkpoint for the whole run, so `langevin-md resume` can extend it (more n_steps).
    found = [latest_checkpoint(d / CHECKPOINTS) for d in shard_dirs]
    sds = [f[1] for f in found]
    end_step = sds[0]["step"]
    # Fields a state keeps for its whole ensemble (an adapted metric) are not per walker: each
    # shard estimated its own, so they join only where every shard holds the same value.
    ensemble_fields = getattr(getattr(integrators, sds[0]["state_class"], None), "sampler_fields", ())
    state, per_shard = {}, []
    for key, value in sds[0]["state"].items():
        if key in ensemble_fields:
            if not all(np.array_equal(sd["state"][key], value) for sd in sds[1:]):
                per_shard.append(key)
            state[key] = value
        elif isinstance(value, np.ndarray) and value.ndim >= 1:
            state[key] = np.concatenate([sd["state"][key] for sd in sds])
        else:
            state[key] = value
    merged = dict(sds[0], state=state, accepted=np.concatenate([sd["accepted"] for sd in sds]),
                  rng=dict(sds[0]["rng"], walker_indices=np.concatenate(
                      [sd["rng"]["walker_indices"] for sd in sds])))
    extra = dict(found[0][2], config=cfg.fingerprint(), **committed)
    if per_shard:
        # One checkpoint for all walkers would have to pick one shard's metric for everyone,
        # which is not the chain the shards ran; the shards' own checkpoints continue the run.
        ck = None
    else:
        ck = save_checkpoint(checkpoint_path(run_dir / CHECKPOINTS, end_step), merged, extra)
    _merge_integrator_summaries(run_dir, shard_dirs)

    shard_info, retried = [], []
    for i, d in enumerate(shard_dirs):
        s = read_summary(d)
        attempts = _attempts(d)
        runs = [a for a in attempts if not a["already_complete"]]
        info = {"shard": d.name, "first_walker": int(_shard_walkers(d)[0]),
                "n_walkers": int(len(_shard_walkers(d))), "attempts": len(attempts),
                "resumed_from_steps": [a["from_step"] for a in runs[1:]],
                "status": s.get("status"), "wall_time": s.get("wall_time")}
        if len(runs) > 1:
            retried.append(d.name)
        shard_info.append(info)
    n_walkers = positions.shape[1]
    shard_meta = read_summary(shard_dirs[0]).get("metadata", {})
    summary = {
        "status": "completed", "step": end_step, "end_step": cfg.end_step, "n_frames": len(steps),
        "committed_step": end_step, "last_checkpoint": str(ck.relative_to(run_dir)) if ck is not None else None,
        "per_shard_fields": per_shard,
        "wall_time": wall_time, "walker_steps_per_second": n_walkers * end_step / wall_time if wall_time > 0 else None,
        "metadata": dict(shard_meta, backend=f"{shard_meta.get('backend', 'torch')} (dask shards)"),
        "distributed": {"n_shards": len(shard_dirs), "shards": shard_info, "retried_shards": retried},
        "versions": versions(), "error": None,
    }
    acc = acceptance_rate(merged["accepted"], merged["production_steps"], bool(extra.get("metropolis_adjusted")))
    if acc is not None:
        summary["acceptance_rate_mean"] = float(acc.mean())
    write_summary(run_dir, summary)

    append_text(run_dir / LOG, f"{time.strftime('%Y-%m-%dT%H:%M:%S%z')} distributed run merged: "
                f"{len(shard_dirs)} shards, {n_walkers} walkers, {len(steps)} frames, step {end_step}; "
                f"retried shards: {', '.join(retried) or 'none'}\n")
    return summary


def _merge_integrator_summaries(run_dir: Path, shard_dirs: list[Path]) -> None:
    """Join the shards' end-of-run integrator summaries (one row per ladder or walker each)."""

    parts = [read_integrator_summary(d) for d in shard_dirs]
    if not parts[0]:
        return
    write_integrator_summary(run_dir, {name: np.concatenate([np.atleast_1d(p[name]) for p in parts])
                                       for name in parts[0]})


def _shard_walkers(shard: Path) -> np.ndarray:
    return read_trajectory(shard / TRAJECTORY, frames=False)["walker_indices"]
