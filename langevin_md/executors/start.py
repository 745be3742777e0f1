"""Starting positions for any executor: the system's own, exact draws, one shared point, or
one per walker.

The system's own start (``initial_positions=None``) is a documented point that never encodes
the answer (a minimum, the modes in turn, a reference structure). Exact draws from the target
are a start only when asked for by name, ``initial_positions="exact"``: a run that begins at
exact samples reproduces the target even when its sampler never moves, which hides a stuck
sampler, so they are for tests of stationary laws.
"""

from __future__ import annotations

import numpy as np
import torch


def start_positions(system, initial_positions, n_walkers: int, rng) -> torch.Tensor:
    """Starting positions ``(n_walkers, *event_shape)`` as a float64 CPU tensor.

    Parameters
    ----------
    system : System
    initial_positions : None, "exact" or array-like
        None: the system's documented start (``system.initial_positions``). ``"exact"``:
        independent exact draws from the target (``system.exact_samples``), which systems
        without an exact sampler refuse. Otherwise an array-like of shape
        ``(n_walkers, *event_shape)``, or ``event_shape`` for one point shared by all walkers
        (torch tensors, numpy arrays and ``openmm.unit`` Quantities in nm are accepted).
    n_walkers : int
    rng : langevin_md.random.WalkerRNG or None
        The walkers' streams, for starts that draw (None where the system's start does not).

    Raises
    ------
    ValueError
        For another string, a wrong shape, ångström coordinates of a molecular system, or
        ``"exact"`` on a system without exact draws.
    """
    shape = tuple(system.event_shape)
    if initial_positions is None:
        return torch.as_tensor(system.initial_positions(n_walkers, rng))
    if isinstance(initial_positions, str):
        if initial_positions != "exact":
            raise ValueError(f"initial_positions={initial_positions!r} is not a known start; use "
                             "\"exact\" (exact draws from the target), None (the system's own start) "
                             "or an array of positions")
        if rng is None:
            # Only the OpenMM executor passes no generator, and its systems have no exact draws.
            from ..systems.base import no_exact_samples_message

            raise ValueError(no_exact_samples_message(system))
        return torch.as_tensor(system.exact_samples(n_walkers, rng))
    if hasattr(initial_positions, "value_in_unit"):  # an openmm.unit Quantity
        from openmm import unit

        initial_positions = initial_positions.value_in_unit(unit.nanometer)
    if isinstance(initial_positions, torch.Tensor):
        x0 = initial_positions.detach().cpu()
    else:
        x0 = torch.as_tensor(np.asarray(initial_positions, dtype=np.float64))
    if tuple(x0.shape) == shape:
        x0 = x0.expand((n_walkers,) + shape)
    if tuple(x0.shape) != (n_walkers,) + shape:
        raise ValueError(
            f"initial_positions have shape {tuple(x0.shape)}; expected ({n_walkers}, "
            f"{', '.join(map(str, shape))}) for {n_walkers} walkers, or {shape} for one "
            "point shared by all walkers"
        )
    topology = getattr(system, "topology", None)
    if topology is not None and len(shape) == 2:
        from ..units import bond_pairs, check_not_angstrom

        # The same guard OpenMMSystem applies to its own structure: a user's positions in
        # ångström would otherwise start every bond ten times too long and blow up at step 1.
        check_not_angstrom(x0.numpy(), bond_pairs(topology), "initial_positions")
    return x0


__all__ = ["start_positions"]
