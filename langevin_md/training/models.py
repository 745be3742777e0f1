"""The learned models, now in :mod:`langevin_md.learned.models`; this name stays for pickles.

A model pickled by an earlier version (``torch.save(model)``, loaded with
``load_model(..., trust_pickle=True)``) names its class by this module's path.
"""

from __future__ import annotations

from langevin_md.learned.models import EnergyMLP, ScoreMLP, build_model

__all__ = ["EnergyMLP", "ScoreMLP", "build_model"]
