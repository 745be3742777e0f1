"""One builder for :class:`~langevin_md.result.SampleResult`, its metadata and acceptance rates.

Both executors, the run-folder runner and :func:`~langevin_md.run.folder.load_run` build
results and summaries here, so the metadata keys and the acceptance arithmetic exist once.
"""

from __future__ import annotations

from typing import Mapping, Optional

import numpy as np

from ..result import SampleResult


def acceptance_rate(accepted, production_steps: int, metropolis_adjusted: bool) -> Optional[np.ndarray]:
    """Per-walker fraction of accepted proposals in production, or None.

    Parameters
    ----------
    accepted : array-like, shape ``(n_walkers,)``
        Accepted proposals counted over production steps.
    production_steps : int
        Production steps taken (one proposal each).
    metropolis_adjusted : bool
        Only Metropolis-adjusted schemes have an acceptance rate.
    """
    if not metropolis_adjusted or production_steps <= 0:
        return None
    acc = accepted.detach().cpu().numpy() if hasattr(accepted, "detach") else np.asarray(accepted)
    return acc.astype(np.float64) / float(production_steps)


def integrator_timestep(integrator) -> Optional[float]:
    """The physical time one step advances (ps for molecules), or None for schemes without one.

    Wrappers such as replica exchange report their inner scheme's timestep. HMC's leapfrog
    ``timestep`` is not the time one step advances (a step is a proposal built from
    ``n_leapfrog`` leapfrog steps with fresh momenta), so Metropolis-adjusted schemes have none.
    """
    while integrator is not None:
        timestep = getattr(integrator, "timestep", None)
        if timestep is not None:
            return None if integrator.metropolis_adjusted else float(timestep)
        integrator = getattr(integrator, "inner", None)
    return None


def metadata(system, integrator, seed: int, device: str, dtype: str, backend: str,
             extra: Optional[Mapping] = None) -> dict:
    """The metadata every result and run summary carries (``timestep`` is None without one)."""
    out = {"system": repr(system), "integrator": repr(integrator), "seed": int(seed),
           "device": str(device), "dtype": str(dtype), "backend": backend,
           "timestep": integrator_timestep(integrator)}
    out.update(extra or {})
    return out


def build_result(recorder, sampler, wall_time: float, acceptance: Optional[np.ndarray],
                 step_sizes: Optional[np.ndarray], meta: dict,
                 summary: Optional[Mapping[str, np.ndarray]] = None) -> SampleResult:
    """A :class:`SampleResult` from a recorder's frames and the executor's settings.

    ``sampler`` provides ``system``, ``n_walkers``, ``walker_indices``, ``step`` and
    ``numpy_dtype``.
    """
    system = sampler.system
    pos, en, kin, steps, fields = recorder.arrays(sampler.n_walkers, system.event_shape, sampler.numpy_dtype)
    return SampleResult(
        positions=pos, energies=en, steps=steps, kT=float(system.kT), acceptance_rate=acceptance,
        kinetic_energies=kin, step_sizes=step_sizes,
        walker_indices=np.asarray(sampler.walker_indices, dtype=np.int64).copy(), wall_time=wall_time,
        n_steps_run=sampler.step, metadata=meta, system=system, fields=fields,
        integrator_summary=dict(summary or {}),
    )


__all__ = ["acceptance_rate", "integrator_timestep", "metadata", "build_result"]
