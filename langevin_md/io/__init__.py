"""Trajectory files, checkpoints and run folders (crash-safe, pickle-free).

Submodules are imported on use so that ``import langevin_md`` does not import h5py.
"""

__all__ = ["trajectory", "checkpoint", "run_folder"]
