"""The frame recorder: recorded frames on their way from the executor to the host and the sinks.

The torch executor queues frames as device tensors (:meth:`FrameRecorder.add`) and moves them
to the host in blocks, so recording costs no host synchronisation between stops; the OpenMM
executor hands over blocks that are already on the host (:meth:`FrameRecorder.add_block`).
Either way every block goes to the frame sinks first (see
:mod:`langevin_md.executors.reporting`) and, when ``keep`` is set, is kept for the result.
"""

from __future__ import annotations

from typing import Callable, Mapping, Optional, Sequence

import numpy as np
import torch

#: Name of the recorded-forces field (``fields/forces`` in trajectory.h5), stored as float32.
FORCES_FIELD = "forces"


def frame_fields(system, record_forces: bool = False) -> Optional[Callable]:
    """What the recorder adds to each frame from its positions alone, or None when nothing.

    * the system's ``recorded_energies(x)`` (e.g. ``U_ff`` and ``U_prior`` of a
      :class:`~langevin_md.systems.prior_sum.ForceFieldWithPrior`), when it declares
      ``recorded_energy_names``;
    * ``forces`` = F(x) as float32, when ``record_forces``.

    They are evaluated at recorded frames only (one extra energy evaluation per frame, not
    per step), from the frame's positions with the batch of all walkers, so a resumed run
    computes them exactly as an uninterrupted one does.

    Returns
    -------
    callable or None
        ``positions (n_walkers, *event_shape) tensor -> {name: tensor (n_walkers, ...)}``.
    """
    names = tuple(getattr(system, "recorded_energy_names", ()))
    if not names and not record_forces:
        return None

    def fields(x: torch.Tensor) -> dict:
        out = dict(system.recorded_energies(x)) if names else {}
        if record_forces:
            out[FORCES_FIELD] = system.energy_and_forces(x)[1].to(torch.float32)
        return out

    return fields


def frame_field_specs(system, record_forces: bool, dtype) -> dict:
    """``{name: (per-walker shape, numpy dtype)}`` of :func:`frame_fields`' output, for a file."""
    out = {name: ((), np.dtype(dtype)) for name in getattr(system, "recorded_energy_names", ())}
    if record_forces:
        out[FORCES_FIELD] = (tuple(system.event_shape), np.dtype(np.float32))
    return out


def _stack(items) -> np.ndarray:
    if isinstance(items[0], torch.Tensor):
        return torch.stack(items).cpu().numpy()
    return np.stack(items)


class FrameRecorder:
    """Collects frames, passes them to sinks in blocks and keeps them for the result.

    Parameters
    ----------
    block : int
        Queued frames that make a block (device memory stays bounded by it).
    with_kinetic : bool
        Whether frames carry kinetic energies.
    sinks : sequence of FrameSink
        Receive every block as it reaches the host.
    keep : bool
        Keep the frames on the host for :meth:`arrays` (False for runs written to disk only).
    extra_fields : callable, optional
        :func:`frame_fields`' function, evaluated on every frame's positions.
    """

    def __init__(self, block: int, with_kinetic: bool, sinks: Sequence = (), keep: bool = True,
                 extra_fields: Optional[Callable] = None):
        self.extra_fields = extra_fields
        self.block = block
        self.with_kinetic = with_kinetic
        self.sinks = list(sinks)
        self.keep = keep
        self._pending: list[tuple] = []
        self._blocks: list[tuple] = []
        #: Steps of the frames that reached the host, in order.
        self.steps: list[int] = []

    # ----------------------------------------------------------------- input
    def add(self, step: int, positions, energy, kinetic=None,
            fields: Optional[Mapping[str, object]] = None) -> bool:
        """Queue one frame (device tensors or host arrays); True when the block is full."""
        fields = dict(fields or {})
        if self.extra_fields is not None:
            fields.update(self.extra_fields(torch.as_tensor(positions)))
        self._pending.append((step, positions, energy, kinetic, fields))
        return len(self._pending) >= self.block

    def add_block(self, steps, positions, energies, kinetic=None,
                  fields: Optional[Mapping[str, np.ndarray]] = None) -> None:
        """Pass on a block of host frames at once (shapes as in the frame-sink protocol)."""
        self.flush()
        fields = dict(fields or {})
        if self.extra_fields is not None and len(steps):
            per_frame = [self.extra_fields(torch.as_tensor(np.asarray(p))) for p in positions]
            fields.update({name: np.stack([f[name].detach().cpu().numpy() for f in per_frame])
                           for name in per_frame[0]})
        self._emit(np.asarray(steps, dtype=np.int64), positions, energies,
                   kinetic if self.with_kinetic else None, fields)

    @property
    def last_step(self) -> Optional[int]:
        """Step of the newest frame, queued or on the host (None before the first)."""
        if self._pending:
            return self._pending[-1][0]
        return self.steps[-1] if self.steps else None

    # ----------------------------------------------------------------- output
    def flush(self) -> None:
        """Move the queued frames to the host and on to the sinks."""
        if not self._pending:
            return
        steps, pos, en, kin, fields = zip(*self._pending)
        names = list(fields[0])
        block = (np.asarray(steps, dtype=np.int64), _stack(pos), _stack(en),
                 _stack(kin) if self.with_kinetic else None,
                 {name: _stack([f[name] for f in fields]) for name in names})
        self._pending.clear()
        self._emit(*block)

    def _emit(self, steps, positions, energies, kinetic, fields) -> None:
        for sink in self.sinks:
            sink.write_frames(steps, positions, energies, kinetic, fields)
        self.steps.extend(int(s) for s in steps)
        if self.keep:
            self._blocks.append((positions, energies, kinetic, fields))

    def truncate_nonfinite(self) -> Optional[int]:
        """Drop queued frames from the first one holding a non-finite value; return its step."""
        for i, (step, pos, en, _, _) in enumerate(self._pending):
            if not (bool(torch.isfinite(torch.as_tensor(pos)).all())
                    and bool(torch.isfinite(torch.as_tensor(en)).all())):
                self._pending = self._pending[:i]
                return step
        return None

    def arrays(self, n_walkers: int, event_shape: tuple, dtype, field_names=()):
        """All kept frames: ``(positions, energies, kinetic or None, steps, fields)``.

        Shapes ``(n_frames, n_walkers, *event_shape)``, ``(n_frames, n_walkers)``, the same,
        ``(n_frames,)`` and ``{name: (n_frames, n_walkers, ...)}``.
        """
        self.flush()
        if self._blocks:
            pos = np.concatenate([b[0] for b in self._blocks])
            en = np.concatenate([b[1] for b in self._blocks])
            kin = np.concatenate([b[2] for b in self._blocks]) if self.with_kinetic else None
            fields = {name: np.concatenate([b[3][name] for b in self._blocks]) for name in self._blocks[0][3]}
        else:
            pos = np.zeros((0, n_walkers) + tuple(event_shape), dtype=dtype)
            en = np.zeros((0, n_walkers), dtype=dtype)
            kin = np.zeros((0, n_walkers), dtype=dtype) if self.with_kinetic else None
            fields = {name: np.zeros((0, n_walkers)) for name in field_names}
        steps = np.asarray(self.steps if self.keep else [], dtype=np.int64)
        return pos, en, kin, steps, fields


__all__ = ["FrameRecorder", "frame_fields", "frame_field_specs", "FORCES_FIELD"]
