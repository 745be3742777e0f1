"""The result of a sampling run: recorded frames as numpy arrays plus what produced them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np


@dataclass
class SampleResult:
    """Frames recorded by :func:`langevin_md.sample` (or loaded by :func:`langevin_md.load_run`).

    Attributes
    ----------
    positions : numpy.ndarray, shape ``(n_frames, n_walkers, *event_shape)``
        Positions (nm for molecular systems).
    energies : numpy.ndarray, shape ``(n_frames, n_walkers)``
        Potential energies U (kJ/mol for molecular systems).
    steps : numpy.ndarray of int64, shape ``(n_frames,)``
        Integrator step of every frame, counted from the start of the run including burn-in.
    kT : float
        Thermal energy of the target.
    acceptance_rate : numpy.ndarray or None, shape ``(n_walkers,)``
        Fraction of accepted proposals during production (Metropolis-adjusted schemes only).
    kinetic_energies : numpy.ndarray or None, shape ``(n_frames, n_walkers)``
        Kinetic energies for schemes with velocities.
    step_sizes : numpy.ndarray or None, shape ``(n_walkers,)``
        Per-walker step sizes in production (schemes with adaptive step sizes).
    walker_indices : numpy.ndarray of int64, shape ``(n_walkers,)``
        Global indices of the walkers (their random streams).
    wall_time : float
        Seconds spent stepping (burn-in and production), compiling included.
    compile_time : float
        Seconds of ``wall_time`` spent compiling steps with ``torch.compile`` (0 for eager
        runs, and about the time to load cached kernels when the compile cache is warm).
    n_steps_run : int
        Integrator steps taken per walker, burn-in included.
    metadata : dict
        System and integrator descriptions, seed, device, dtype, backend.
    fields : dict of str to numpy.ndarray
        Per-frame, per-walker quantities the integrator asked to record
        (``Integrator.recorded_fields``), each ``(n_frames, n_walkers, ...)``; empty for most
        schemes.
    integrator_summary : dict of str to numpy.ndarray
        What the integrator reported once at the end of the run (``Integrator.summary``).
    system : object or None
        The system sampled, when the result comes straight from :func:`sample` (not saved).
    """

    positions: np.ndarray
    energies: np.ndarray
    steps: np.ndarray
    kT: float
    acceptance_rate: Optional[np.ndarray] = None
    kinetic_energies: Optional[np.ndarray] = None
    step_sizes: Optional[np.ndarray] = None
    walker_indices: Optional[np.ndarray] = None
    wall_time: float = 0.0
    compile_time: float = 0.0
    n_steps_run: int = 0
    metadata: dict = field(default_factory=dict)
    fields: dict = field(default_factory=dict)
    integrator_summary: dict = field(default_factory=dict)
    system: Any = field(default=None, repr=False, compare=False)

    @property
    def n_frames(self) -> int:
        return int(self.positions.shape[0])

    @property
    def n_walkers(self) -> int:
        return int(self.positions.shape[1])

    @property
    def event_shape(self) -> tuple:
        return tuple(self.positions.shape[2:])

    def at_temperature(self, rung: int, values=None):
        """A replica-exchange run's samples at one temperature rung, one column per ladder.

        Parameters
        ----------
        rung : int
            Temperature index: 0 is the coldest (the system's own kT), −1 the hottest.
        values : numpy.ndarray, optional
            ``(n_frames, n_walkers, ...)`` to select from (default: ``positions``).

        Returns
        -------
        numpy.ndarray, shape ``(n_frames, n_ladders, ...)``
            See :func:`langevin_md.analysis.tempering.at_temperature`.
        """
        from .analysis.tempering import at_temperature

        return at_temperature(self, rung, values)

    @property
    def walker_steps_per_second(self) -> float:
        """Throughput: walkers × steps / wall seconds."""
        return self.n_walkers * self.n_steps_run / self.wall_time if self.wall_time > 0 else float("nan")

    def to_mdtraj(self, walker: Optional[int] = None, topology=None):
        """The frames as an ``mdtraj.Trajectory`` (molecular systems only).

        Parameters
        ----------
        walker : int, optional
            One walker's chain; by default all walkers joined one after another
            (walker 0's frames, then walker 1's, ...).
        topology : mdtraj.Topology, optional
            Defaults to the system's topology.

        Returns
        -------
        mdtraj.Trajectory
            Positions in nm; ``time`` in ps, the global step × ``metadata["timestep"]`` (ps)
            for schemes with a timestep (BAOAB, OBABO, Brownian). Schemes without one (ULA,
            MALA, HMC, RWM) have no physical time: ``time`` is then the step number.
        """
        import mdtraj

        top = topology if topology is not None else getattr(self.system, "topology", None)
        if top is None:
            top = self.metadata.get("topology")
        if top is None or len(self.event_shape) != 2:
            raise ValueError("to_mdtraj needs a molecular result (event_shape (n_atoms, 3)) and a topology")
        if walker is None:
            xyz = np.swapaxes(self.positions, 0, 1).reshape((-1,) + self.event_shape)
        else:
            if not 0 <= walker < self.n_walkers:
                raise ValueError(f"walker must be in [0, {self.n_walkers}), got {walker}")
            xyz = self.positions[:, walker]
        timestep = self.metadata.get("timestep")
        time = np.asarray(self.steps, dtype=np.float64) * (float(timestep) if timestep is not None else 1.0)
        if walker is None:
            time = np.tile(time, self.n_walkers)
        return mdtraj.Trajectory(np.asarray(xyz, dtype=np.float32), top, time=time)

    def __repr__(self) -> str:
        return (f"SampleResult(n_frames={self.n_frames}, n_walkers={self.n_walkers}, "
                f"event_shape={self.event_shape}, kT={self.kT:g})")
