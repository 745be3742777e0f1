"""Learned energy and score models and their file format, below both the runs and the training.

* :mod:`.models`: :class:`~langevin_md.learned.models.EnergyMLP`,
  :class:`~langevin_md.learned.models.ScoreMLP` and :func:`~langevin_md.learned.models.build_model`;
* :mod:`.io`: :func:`~langevin_md.learned.io.save_model` / :func:`~langevin_md.learned.io.load_model`,
  weights without pickle;
* :mod:`.arch_check`: the architecture record a saved model carries, checked on load.

A run that uses a trained prior (:mod:`langevin_md.run.prior`) and the training that makes one
(:mod:`langevin_md.training`, which also reads run folders) both import this package, and it
imports neither. ``lmd.training`` re-exports these names.
"""

from __future__ import annotations

from langevin_md.learned.io import load_model, save_model
from langevin_md.learned.models import EnergyMLP, ScoreMLP, build_model

__all__ = ["EnergyMLP", "ScoreMLP", "build_model", "load_model", "save_model"]
