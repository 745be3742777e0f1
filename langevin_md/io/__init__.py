"""File formats: trajectories and checkpoints (crash-safe, pickle-free); run folders are :mod:`langevin_md.run.folder`.

Submodules are imported on use so that ``import langevin_md`` does not import h5py.
"""

__all__ = ["trajectory", "checkpoint"]
