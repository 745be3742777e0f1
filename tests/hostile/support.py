"""Shared pieces of the hostile-input suite: small real runs, checksums, the console script."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

from langevin_md.run.config import load_config
from langevin_md.run.folder import create_run
from langevin_md.run.session import execute_run

from tests.io.helpers import run_cli, write_config  # noqa: F401 - re-exported for the tests


def checksum(path: Path) -> str:
    """SHA-256 of a file, or of every file under a folder (names and contents)."""
    path = Path(path)
    h = hashlib.sha256()
    if path.is_dir():
        for p in sorted(path.rglob("*")):
            h.update(str(p.relative_to(path)).encode())
            if p.is_file() and not p.is_symlink():
                h.update(p.read_bytes())
    else:
        h.update(path.read_bytes())
    return h.hexdigest()


def outside_files(folder: Path) -> dict[str, str]:
    """Files a test places outside any run folder, with their checksums."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {"precious.txt": b"the user's own data\n" * 100, "precious.h5": os.urandom(4096)}
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return {name: checksum(folder / name) for name in files}


def unchanged(folder: Path, sums: dict[str, str]) -> bool:
    return all((folder / n).is_file() and checksum(folder / n) == s for n, s in sums.items()) and \
        sorted(p.name for p in folder.iterdir()) == sorted(sums)


def finished_run(tmp_path: Path, name: str = "run", **config) -> Path:
    """A small completed Müller-Brown run folder (MALA, 8 walkers, 2 checkpoints)."""
    settings = dict(n_steps=400, n_walkers=4, record_every=10, checkpoint_every=200)
    settings.update(config)
    cfg = load_config(write_config(tmp_path, name=f"{name}.toml", **settings))
    run_dir = create_run(cfg, tmp_path / name)
    execute_run(run_dir, progress=False, handle_signals=False)
    return run_dir


def copy_run(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, symlinks=True)
    return dst
