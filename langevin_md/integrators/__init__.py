"""Langevin integrators and Metropolis baselines, as ``init``/``step`` pairs on batched walkers.

Every integrator is a frozen dataclass of settings; see :mod:`langevin_md.integrators.base`.
"""

from .base import Integrator, State, StepInfo, UnderdampedState, thermal_energy, with_temperature
from .annealed import AnnealedLangevin, AnnealedState, PredictorCorrector
from .hmc import HMC
from .metropolis import MALA, AdaptiveState, RandomWalkMetropolis
from .metric import Metric, PreconditionedState, estimate_metric
from .sgld import SGLD, SGLDState
from .overdamped import ULA, Brownian
from .underdamped import BAOAB, OBABO
from .tempering import (ReplicaAdaptiveState, ReplicaPreconditionedState, ReplicaExchange, ReplicaState, ReplicaUnderdampedState,
                        geometric_ladder)

__all__ = [
    "Integrator", "State", "StepInfo", "UnderdampedState",
    "ULA", "Brownian", "MALA", "RandomWalkMetropolis", "HMC", "BAOAB", "OBABO",
    "AnnealedLangevin", "PredictorCorrector", "SGLD",
    "AdaptiveState", "AnnealedState", "SGLDState", "PreconditionedState", "Metric", "estimate_metric",
    "thermal_energy", "with_temperature",
    "ReplicaExchange", "geometric_ladder", "ReplicaState", "ReplicaUnderdampedState", "ReplicaAdaptiveState", "ReplicaPreconditionedState",
]
