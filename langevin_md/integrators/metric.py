r"""Preconditioners (metrics) for ULA, MALA and HMC, and their estimation from the walkers.

A metric M is a constant symmetric positive-definite matrix on the flattened coordinates,
stored either as its diagonal, shape ``(dim,)``, or in full, shape ``(dim, dim)``, with
``dim = prod(event_shape)``. Together with M the state keeps a square root L with
M = L Lᵀ: ``sqrt(M)`` for a diagonal metric, the lower Cholesky factor for a dense one.
The preconditioned schemes use M in three ways, all on per-walker rows of shape
``(n_walkers, dim)``:

* ``M v`` (the drift ε M ∇log p),
* ``L ξ`` (noise with covariance M),
* ``L⁻ᵀ ξ`` and ``vᵀ M⁻¹ v = |L⁻¹ v|²`` (HMC momenta, the MALA proposal density).

**Adaptation from the ensemble.** Every walker of a run (or of a Dask shard) samples the same
target, so the pooled positions of all walkers over a window of burn-in steps estimate the
target's covariance Σ directly, which is the ideal constant metric for ULA/MALA and the ideal
inverse mass for HMC (Roberts & Stramer 2002, Methodol. Comput. Appl. Probab. 4, 337;
Girolami & Calderhead 2011, J. R. Stat. Soc. B 73, 123, for the constant-metric case). The
windows double in length, ``window, 2·window, 4·window, …`` adaptation steps, so each new
estimate discards the transient the previous one still saw; a window still open when burn-in
ends is discarded and M is frozen at the last completed estimate (so production is one fixed,
exact kernel). Until the first window closes M = I, so the initial step size must be stable
without a metric (for ULA, which has no step-size adaptation, ε then stays fixed in the units
of the final M). Each new M restarts MALA's/HMC's step-size dual averaging; burn-in should
leave it a tail after the last window: with ``metric_window = 50`` the windows close at 50,
150, 350, 750, 1550 adaptation steps, so a burn-in of 1000 uses the M from steps 350–750 and
tunes the step size for 250 more steps.

**Shards and replicas.** The estimate pools the walkers of one sampler. A Dask run
(:mod:`langevin_md.run.distributed`) therefore adapts one M **per shard**, from that shard's own
walkers: shards stay independent (no communication during burn-in) and each shard is bitwise
reproducible from its seed and walker indices; a shared M would need an all-reduce of the
window sums at every window end. The price: with an adapted metric a walker's chain depends
on the other walkers of its shard, so results depend on the shard layout (a fixed array/file
metric keeps walker chains independent of it). Under replica exchange, walkers at all
temperatures are pooled; each rung's step size adapts separately and absorbs the scale.

**Regularisation** (the documented choice). With n pooled samples (walkers × steps of the
window) and the sample covariance S, the weight λ = 5/(n + 5) (Stan's weights) shrinks

* a diagonal metric towards the scaled identity: ``M = (1 − λ) diag(S) + λ mean(diag S) I``;
* a dense metric towards its own diagonal: ``M = (1 − λ) S + λ diag(S)``.

Unlike Stan's absolute 10⁻³ I, both targets scale with the data, so molecular coordinates
(variances ~10⁻⁴ nm²) are regularised as much as dimensionless ones. A dense estimate from
fewer samples than dimensions is thereby still positive definite. A window whose variances
are not all finite and positive (e.g. a coordinate no walker moved) leaves M unchanged.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, replace
from typing import ClassVar, Optional, Union

import numpy as np
import torch

from .base import State

#: Preconditioner values that adapt M during burn-in.
ADAPTIVE_KINDS = ("diagonal", "dense")

#: Stan's shrinkage prior weight: λ = SHRINKAGE / (n + SHRINKAGE).
SHRINKAGE = 5.0


# --------------------------------------------------------------------------- validation
def metric_factor(matrix: torch.Tensor) -> torch.Tensor:
    """L with M = L Lᵀ: ``sqrt(M)`` for a diagonal ``(dim,)``, lower Cholesky for ``(dim, dim)``.

    Raises
    ------
    ValueError
        If M is not finite, symmetric and positive definite.
    """
    if matrix.ndim == 1:
        if not bool(torch.isfinite(matrix).all()) or not bool((matrix > 0).all()):
            raise ValueError(f"a diagonal metric must be finite and positive, got {matrix.tolist()}")
        return torch.sqrt(matrix)
    if not bool(torch.isfinite(matrix).all()):
        raise ValueError("a dense metric must be finite")
    scale = float(matrix.abs().max())
    if not bool(torch.allclose(matrix, matrix.T, rtol=0.0, atol=1e-10 * max(scale, 1e-300))):
        raise ValueError("a dense metric must be symmetric")
    factor, info = torch.linalg.cholesky_ex(matrix)
    if int(info) != 0:
        raise ValueError("a dense metric must be positive definite (its Cholesky factorisation failed)")
    return factor


def as_metric_matrix(value, dim: int) -> np.ndarray:
    """A user's metric (array-like or a ``.npy``/text file) as float64 ``(dim,)`` or ``(dim, dim)``.

    Parameters
    ----------
    value : array-like, torch.Tensor or str/os.PathLike
        The matrix, or a file holding it (``.npy`` via :func:`numpy.load`, anything else via
        :func:`numpy.loadtxt`).
    dim : int
        Number of flattened coordinates, ``prod(event_shape)``.

    Raises
    ------
    ValueError
        Wrong shape, or not positive definite.
    """
    if isinstance(value, (str, os.PathLike)):
        path = os.fspath(value)
        if not os.path.isfile(path):
            raise ValueError(f"preconditioner {path!r} is neither 'none', 'diagonal', 'dense' nor an "
                             "existing file holding a (dim,) or (dim, dim) matrix")
        arr = read_matrix_file(path)
    elif isinstance(value, torch.Tensor):
        arr = value.detach().cpu().numpy()
    else:
        arr = value
    arr = np.asarray(arr, dtype=np.float64)
    if arr.shape not in ((dim,), (dim, dim)):
        raise ValueError(f"the preconditioner must have shape ({dim},) (diagonal) or ({dim}, {dim}) "
                         f"(dense) for this system's {dim} coordinates, got shape {arr.shape}")
    metric_factor(torch.as_tensor(arr))
    return arr


def read_matrix_file(path: str) -> np.ndarray:
    """The float64 array in a ``.npy`` file (no pickle) or a whitespace-separated text file.

    Raises
    ------
    ValueError
        Naming the file and what was expected; never quoting its content (it may be any file
        a config names, such as ``/etc/passwd``).
    """
    try:
        if path.endswith(".npy"):
            arr = np.load(path, allow_pickle=False)
        else:
            arr = np.loadtxt(path, ndmin=1)
        return np.asarray(arr, dtype=np.float64)
    except (ValueError, TypeError, OSError, EOFError) as exc:
        why = "cannot be read" if isinstance(exc, OSError) else "does not hold numbers only"
        raise ValueError(f"preconditioner file {path!r} {why}: expected a .npy file or a text file of "
                         "numbers (whitespace-separated, one matrix row a line) holding a (dim,) or "
                         f"(dim, dim) float array ({type(exc).__name__})") from None


def check_preconditioner(value) -> Union[None, str, tuple]:
    """Normalise an integrator's ``preconditioner`` setting (the system is not known yet).

    Returns None (no preconditioning), ``"diagonal"``/``"dense"`` (adapted), a path string,
    or the matrix as nested tuples (hashable, so the integrator stays a frozen value).
    """
    if value is None:
        return None
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if isinstance(value, str):
        low = value.strip().lower()
        if low == "none":
            return None
        if low in ADAPTIVE_KINDS:
            return low
        if not os.path.isfile(value):
            raise ValueError(f"preconditioner = {value!r}: expected 'none', 'diagonal', 'dense', a "
                             "(dim,) or (dim, dim) array, or an existing .npy/text file holding one")
        arr = read_matrix_file(value)  # read now: a bad file is the integrator's error, not the run's
        if arr.ndim not in (1, 2) or (arr.ndim == 2 and arr.shape[0] != arr.shape[1]):
            raise ValueError(f"preconditioner = {value!r} holds an array of shape {arr.shape}; expected "
                             "(dim,) (diagonal) or (dim, dim) (dense)")
        return value
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"preconditioner must be None, 'none', 'diagonal', 'dense', a file name or an "
                        f"array, got {type(value).__name__}") from None
    if arr.ndim not in (1, 2) or (arr.ndim == 2 and arr.shape[0] != arr.shape[1]):
        raise ValueError(f"a preconditioner array must have shape (dim,) or (dim, dim), got {arr.shape}")
    metric_factor(torch.as_tensor(arr))
    return tuple(map(tuple, arr)) if arr.ndim == 2 else tuple(arr.tolist())


# --------------------------------------------------------------------------- the metric
@dataclass(frozen=True)
class Metric:
    """A constant metric M = L Lᵀ acting on walker rows.

    Attributes
    ----------
    matrix : torch.Tensor, shape ``(dim,)`` or ``(dim, dim)``
        M (its diagonal, or in full).
    factor : torch.Tensor, same shape
        L: ``sqrt(M)`` (diagonal) or the lower Cholesky factor (dense).

    All methods take ``v`` of shape ``(n_walkers, *event_shape)`` and return the same shape
    (or ``(n_walkers,)`` for the quadratic forms).
    """

    matrix: torch.Tensor
    factor: torch.Tensor

    @classmethod
    def from_matrix(cls, matrix: torch.Tensor) -> "Metric":
        return cls(matrix, metric_factor(matrix))

    @property
    def dense(self) -> bool:
        return self.matrix.ndim == 2

    def apply(self, v: torch.Tensor) -> torch.Tensor:
        """M v."""
        rows = v.reshape(v.shape[0], -1)
        # M is symmetric, so the row form of M v is vᵀ M.
        out = rows @ self.matrix if self.dense else rows * self.matrix
        return out.reshape(v.shape)

    def apply_sqrt(self, v: torch.Tensor) -> torch.Tensor:
        """L v: maps N(0, I) to N(0, M)."""
        rows = v.reshape(v.shape[0], -1)
        out = rows @ self.factor.T if self.dense else rows * self.factor
        return out.reshape(v.shape)

    def solve_sqrt(self, v: torch.Tensor) -> torch.Tensor:
        """L⁻¹ v (whitening: maps N(0, M) to N(0, I))."""
        rows = v.reshape(v.shape[0], -1)
        if self.dense:
            # Rows: (L⁻¹ v)ᵀ = vᵀ L⁻ᵀ, i.e. X Lᵀ = V.
            out = torch.linalg.solve_triangular(self.factor.T, rows, upper=True, left=False)
        else:
            out = rows / self.factor
        return out.reshape(v.shape)

    def solve_sqrt_transpose(self, v: torch.Tensor) -> torch.Tensor:
        """L⁻ᵀ v: maps N(0, I) to N(0, M⁻¹)."""
        rows = v.reshape(v.shape[0], -1)
        if self.dense:
            # Rows: (L⁻ᵀ v)ᵀ = vᵀ L⁻¹, i.e. X L = V.
            out = torch.linalg.solve_triangular(self.factor, rows, upper=False, left=False)
        else:
            out = rows / self.factor
        return out.reshape(v.shape)

    def quadratic(self, v: torch.Tensor) -> torch.Tensor:
        """vᵀ M v per walker, shape ``(n_walkers,)``."""
        rows = v.reshape(v.shape[0], -1)
        return (rows * self.apply(v).reshape(rows.shape)).sum(-1)

    def inverse_quadratic(self, v: torch.Tensor) -> torch.Tensor:
        """vᵀ M⁻¹ v = |L⁻¹ v|² per walker, shape ``(n_walkers,)``."""
        w = self.solve_sqrt(v).reshape(v.shape[0], -1)
        return (w * w).sum(-1)

    def to_dense(self) -> np.ndarray:
        """M as a float64 ``(dim, dim)`` numpy array."""
        m = self.matrix.detach().cpu().double().numpy()
        return m if self.dense else np.diag(m)


# --------------------------------------------------------------------------- estimation
def regularised_covariance(total: torch.Tensor, outer: torch.Tensor, n: int) -> Optional[torch.Tensor]:
    """The regularised covariance from pooled sums (see the module docstring).

    Parameters
    ----------
    total : torch.Tensor, shape ``(dim,)``
        Σ x over the n samples.
    outer : torch.Tensor, shape ``(dim,)`` or ``(dim, dim)``
        Σ x² (diagonal) or Σ x xᵀ (dense).
    n : int
        Number of samples, at least 2.

    Returns
    -------
    torch.Tensor or None
        M in the dtype of the sums; None if the variances are not all finite and positive.
    """
    if n < 2:
        return None
    mean = total / n
    if outer.ndim == 1:
        cov = (outer - n * mean * mean) / (n - 1)
        var = cov
    else:
        cov = (outer - n * torch.outer(mean, mean)) / (n - 1)
        cov = 0.5 * (cov + cov.T)  # exact symmetry for the Cholesky factorisation
        var = torch.diagonal(cov)
    if not bool(torch.isfinite(cov).all()) or not bool((var > 0).all()):
        return None
    lam = SHRINKAGE / (n + SHRINKAGE)
    if outer.ndim == 1:
        return (1.0 - lam) * var + lam * var.mean()
    return (1.0 - lam) * cov + lam * torch.diag(var)


def estimate_metric(samples: torch.Tensor, kind: str) -> torch.Tensor:
    """Regularised ensemble covariance of ``samples`` ``(n, *event_shape)``, as a metric.

    Parameters
    ----------
    samples : torch.Tensor, shape ``(n, *event_shape)``
        Pooled walker positions (n ≥ 2).
    kind : {'diagonal', 'dense'}

    Returns
    -------
    torch.Tensor, shape ``(dim,)`` or ``(dim, dim)``, float64
    """
    if kind not in ADAPTIVE_KINDS:
        raise ValueError(f"kind must be 'diagonal' or 'dense', got {kind!r}")
    rows = samples.reshape(samples.shape[0], -1).double()
    outer = (rows * rows).sum(0) if kind == "diagonal" else rows.T @ rows
    m = regularised_covariance(rows.sum(0), outer, rows.shape[0])
    if m is None:
        raise ValueError("the samples' variances are not all finite and positive: no metric can be estimated")
    return m


# --------------------------------------------------------------------------- state
@dataclass(frozen=True)
class PreconditionedState(State):
    """A state carrying a constant metric and, during burn-in, its estimator's window sums.

    Attributes
    ----------
    metric : torch.Tensor or None, shape ``(dim,)`` or ``(dim, dim)``
        M, in the positions' dtype; None means no preconditioning (M = I).
    metric_factor : torch.Tensor or None, same shape
        L with M = L Lᵀ (see :func:`metric_factor`).
    metric_sum : torch.Tensor or None, shape ``(dim,)``, float64
        Σ x over the walkers and steps of the open window (adaptive metrics, burn-in only).
    metric_outer : torch.Tensor or None, shape ``(dim,)`` or ``(dim, dim)``, float64
        Σ x² or Σ x xᵀ over the same samples.
    metric_window_steps : int
        Steps taken in the open window.
    metric_windows : int
        Windows completed (each completed window replaced M).
    """

    #: Fields that belong to the whole sampler (one Dask shard), not to a walker: they must
    #: not be split or concatenated along the walker axis.
    sampler_fields: ClassVar[tuple] = ("metric", "metric_factor", "metric_sum", "metric_outer")

    metric: Optional[torch.Tensor] = None
    metric_factor: Optional[torch.Tensor] = None
    metric_sum: Optional[torch.Tensor] = None
    metric_outer: Optional[torch.Tensor] = None
    metric_window_steps: int = 0
    metric_windows: int = 0


def state_metric(state) -> Optional[Metric]:
    """The :class:`Metric` a state carries, or None (M = I)."""
    if getattr(state, "metric", None) is None:
        return None
    return Metric(state.metric, state.metric_factor)


def initial_metric_fields(preconditioner, positions: torch.Tensor) -> dict:
    """State fields for a normalised ``preconditioner`` (see :func:`check_preconditioner`).

    A fixed matrix is loaded and factorised once here; an adaptive kind starts from M = I
    with empty window sums (float64, so long windows lose no precision).
    """
    if preconditioner is None:
        return {}
    dim = math.prod(positions.shape[1:])
    dtype, device = positions.dtype, positions.device
    if preconditioner in ADAPTIVE_KINDS:
        dense = preconditioner == "dense"
        m = torch.eye(dim, dtype=dtype, device=device) if dense else torch.ones(dim, dtype=dtype, device=device)
        z = torch.zeros(dim, dtype=torch.float64, device=device)
        outer = torch.zeros((dim, dim) if dense else (dim,), dtype=torch.float64, device=device)
        return dict(metric=m, metric_factor=m.clone(), metric_sum=z, metric_outer=outer,
                    metric_window_steps=0, metric_windows=0)
    m = torch.as_tensor(as_metric_matrix(preconditioner, dim)).to(dtype=dtype, device=device)
    return dict(metric=m, metric_factor=metric_factor(m))


def accumulate_metric(state, window: int):
    """Add the walkers' positions to the open window; at its end, replace M (burn-in only).

    Parameters
    ----------
    state : PreconditionedState or a subclass
    window : int
        Length of the first window in steps; window k lasts ``window · 2^k`` steps.

    Returns
    -------
    state, bool
        The new state and whether M changed at this step (callers restart step-size
        adaptation then, since the old step size was tuned for the old metric).
    """
    if state.metric_sum is None:
        return state, False
    rows = state.positions.reshape(state.positions.shape[0], -1).double()
    total = state.metric_sum + rows.sum(0)
    outer = state.metric_outer + ((rows * rows).sum(0) if state.metric_outer.ndim == 1 else rows.T @ rows)
    steps = state.metric_window_steps + 1
    if steps < window * 2 ** state.metric_windows:
        return replace(state, metric_sum=total, metric_outer=outer, metric_window_steps=steps), False
    m = regularised_covariance(total, outer, steps * rows.shape[0])
    fields = dict(metric_sum=torch.zeros_like(total), metric_outer=torch.zeros_like(outer),
                  metric_window_steps=0, metric_windows=state.metric_windows + 1)
    if m is None:
        return replace(state, **fields), False
    m = m.to(state.positions.dtype)
    return replace(state, metric=m, metric_factor=metric_factor(m), **fields), True


def freeze_metric(state):
    """Drop the window sums at the end of burn-in: M is final from here on."""
    if getattr(state, "metric_sum", None) is None:
        return state
    return replace(state, metric_sum=None, metric_outer=None, metric_window_steps=0)


def check_window(window) -> int:
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        raise ValueError(f"metric_window must be a positive integer (steps), got {window!r}")
    return window
