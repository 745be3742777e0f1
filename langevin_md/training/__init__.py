"""Fitting learned energy and score priors to samples by denoising score matching.

* :func:`fit` trains an :class:`EnergyMLP` or :class:`ScoreMLP` (or any ``model(x, σ)``)
  over a geometric noise schedule (:func:`geometric_sigmas`), with a validation loss,
  early stopping and checkpoints.
* :func:`save_model` / :func:`load_model` write and read weights without pickle.
* :func:`fit_forces` fits an energy to (mapped) forces by force matching; :class:`CGMap`
  maps atoms to beads with the mapped-force rule of Noid et al. (2008).
* :func:`boltzmann_inversion` fits the prior terms of a CG model
  (:class:`langevin_md.systems.CGModel`) to a mapped trajectory.
* :class:`ProgressLog` / :func:`plot_loss_curve`: progress lines and loss-curve PNGs.
* :func:`main` is ``langevin-md train CONFIG.toml``.
"""

from .cg_map import CGMap
from .cg_priors import boltzmann_inversion
from .config import main
from .force_matching import fit_forces, force_matching_loss
from .progress import ProgressLog, plot_loss_curve
from .dsm import TrainResult, dsm_loss, fit, geometric_sigmas, model_score
from langevin_md.learned.io import load_model, save_model
from langevin_md.learned.models import EnergyMLP, ScoreMLP, build_model

__all__ = ["fit", "dsm_loss", "model_score", "geometric_sigmas", "TrainResult", "EnergyMLP", "ScoreMLP",
           "build_model", "save_model", "load_model", "main", "CGMap", "fit_forces", "force_matching_loss",
           "ProgressLog", "plot_loss_curve", "boltzmann_inversion"]
