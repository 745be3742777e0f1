"""``langevin-md compare`` configs: one system, several samplers, one budget (TOML)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from ..errors import ConfigError
from ..run.choices import call_choice, system_choices
from ..run.config import checked_settings, parameters, read_toml, resolve_table
from .core import build_samplers, compare

__all__ = ["CompareConfig", "load_compare_config"]

@dataclass
class CompareConfig:
    """A ``langevin-md compare`` config: one system, several samplers, one budget.

    ::

        [system]                 # as in a run config
        name = "gaussian_mixture"

        [compare]                # langevin_md.compare.compare's settings
        n_force_evals = 20000    # per walker, burn-in included
        n_walkers = 64
        seed = 0
        burn_in_fraction = 0.2

        [samplers.MALA]          # one table per sampler: type = an integrator class
        type = "MALA"
        step_size = 0.3

        [samplers.HMC]
        type = "HMC"
        step_size = 0.2
        n_leapfrog = 10

    Attributes
    ----------
    system : dict
        ``name`` plus the system constructor's keyword arguments.
    compare : dict
        ``n_force_evals``, ``n_walkers``, ``seed``, ``burn_in_fraction``, ``device``, ``dtype``.
    samplers : dict
        ``{name: {"type": class name, ...fields}}`` for
        :func:`langevin_md.compare.build_samplers`.
    """

    system: dict
    compare: dict
    samplers: dict
    source: Optional[str] = field(default=None, compare=False)

    def build_system(self):
        """The system ``[system]`` describes (as in a run config)."""
        choice = system_choices()[self.system["name"]]
        return call_choice("[system]", choice, {k: v for k, v in self.system.items() if k != "name"})

    def build_samplers(self) -> dict:
        """``{name: Integrator}`` from the ``[samplers.NAME]`` tables."""
        try:
            return build_samplers(self.samplers)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"[samplers]: {exc}") from None


_COMPARE_SECTIONS = ("system", "compare", "samplers")


def load_compare_config(path) -> CompareConfig:
    """Read and validate a ``langevin-md compare`` config (see :class:`CompareConfig`).

    Raises
    ------
    ConfigError
        Naming the section and key, and what is allowed.
    FileNotFoundError
    """
    path = Path(path)
    data = read_toml(path)
    try:
        for key in data:
            if key not in _COMPARE_SECTIONS:
                raise ConfigError(f"unknown section [{key}]; a compare config has "
                                  f"{', '.join(f'[{s}]' for s in _COMPARE_SECTIONS)}")
        for key in ("system", "samplers"):
            if not isinstance(data.get(key), dict) or not data[key]:
                raise ConfigError(f"missing section [{key}]" + (
                    " (one [samplers.NAME] table per sampler, with type = \"MALA\" etc.)" if key == "samplers" else ""))
        system = resolve_table("[system]", data["system"], system_choices(), "system", path.resolve().parent)
        params = {k: p for k, p in parameters(compare).items()
                  if k not in ("system", "samplers", "initial_positions", "observable")}
        table = data.get("compare", {})
        settings = checked_settings("[compare]", table, params,
                                     " (force evaluations per walker, the budget every sampler gets)")
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    cfg = CompareConfig(system, settings, dict(data["samplers"]), str(path))
    cfg.build_samplers()  # every [samplers.NAME] table checked before anything runs
    return cfg
