"""OpenMM's tabulated functions as torch modules, for use inside custom-force expressions.

Supported: ``Continuous1DFunction`` (natural or periodic cubic spline, zero outside its range,
as OpenMM's ``SplineFitter`` builds it), ``Continuous2DFunction`` (bicubic spline, likewise)
and ``Discrete1DFunction`` / ``Discrete2DFunction`` / ``Discrete3DFunction`` (the table entry
at the argument rounded to the nearest integer, clamped to the table, with zero derivative). ``Continuous3DFunction`` is refused with a ValueError.

Each function is a ``torch.nn.Module`` whose tables are buffers; :meth:`spec` and the buffers
rebuild it without OpenMM (:func:`function_from_spec`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

__all__ = [
    "Continuous1D",
    "Continuous2D",
    "Discrete",
    "function_from_openmm",
    "function_from_spec",
]


def _cyclic_tridiagonal_solve(lower: np.ndarray, diag: np.ndarray, upper: np.ndarray,
                              rhs: np.ndarray) -> np.ndarray:
    """Solve a cyclic tridiagonal system in O(m) (Sherman-Morrison around a banded solve).

    Row ``i`` reads ``lower[i] d[i-1] + diag[i] d[i] + upper[i] d[i+1] = rhs[i]`` with indices
    modulo ``m``; ``rhs`` is ``(m,)`` or ``(m, k)`` (k systems with the same matrix).
    """
    from scipy.linalg import solve_banded

    m = len(diag)
    if m < 3:  # the corners coincide with the band: tiny, solve densely
        a = np.zeros((m, m))
        for i in range(m):
            a[i, i] += diag[i]
            a[i, (i - 1) % m] += lower[i]
            a[i, (i + 1) % m] += upper[i]
        return np.linalg.solve(a, rhs)
    alpha, beta = lower[0], upper[m - 1]  # corners a[0, m-1] and a[m-1, 0]
    gamma = -diag[0]
    band = np.zeros((3, m))
    band[0, 1:] = upper[:-1]
    band[1] = diag
    band[2, :-1] = lower[1:]
    band[1, 0] = diag[0] - gamma
    band[1, m - 1] = diag[m - 1] - alpha * beta / gamma
    u = np.zeros(m)
    u[0], u[m - 1] = gamma, beta
    both = solve_banded((1, 1), band, np.column_stack([rhs.reshape(m, -1), u]))
    y, z = both[:, :-1], both[:, -1]
    v_y = y[0] + (alpha / gamma) * y[m - 1]
    v_z = z[0] + (alpha / gamma) * z[m - 1]
    out = y - np.outer(z, v_y / (1.0 + v_z))
    return out.reshape(rhs.shape)


def _natural_spline_second_derivatives(x: np.ndarray, y: np.ndarray, periodic: bool) -> np.ndarray:
    """Second derivatives at the knots of the cubic spline through ``(x, y)``.

    Natural: zero second derivative at both ends. Periodic: first and second derivatives match
    across the ends (``y[0] == y[-1]``). The tridiagonal (natural) or cyclic tridiagonal
    (periodic) system is solved in O(n) time and memory.

    Parameters
    ----------
    x : numpy.ndarray, shape ``(n,)``
        Knots, increasing.
    y : numpy.ndarray, shape ``(n,)`` or ``(n, k)``
        Values at the knots; ``k`` columns are ``k`` splines on the same knots.

    Returns
    -------
    numpy.ndarray, same shape as ``y``
    """
    from scipy.linalg import solve_banded

    n = len(x)
    h = np.diff(x)  # (n-1,)
    col = (slice(None),) + (None,) * (y.ndim - 1)  # broadcast knot spacings over columns
    slope = (y[1:] - y[:-1]) / h[col]  # (n-1, ...)
    if periodic:
        m = n - 1  # unknowns d[0..m-1]; d[m] = d[0]
        prev_h = np.concatenate([[x[n - 1] - x[n - 2]], h[: m - 1]])
        next_h = h[:m]
        # knot 0 looks back across the end at y[n-2] (as OpenMM: y[0] stands for y[n-1])
        wrap = (y[:1] - y[n - 2 : n - 1]) / (x[n - 1] - x[n - 2])
        prev_slope = np.concatenate([wrap, slope[: m - 1]])
        rhs = 6.0 * (slope[:m] - prev_slope)
        d = _cyclic_tridiagonal_solve(prev_h, 2.0 * (prev_h + next_h), next_h, rhs)
        return np.concatenate([d, d[:1]])
    if n == 2:
        return np.zeros_like(y)
    band = np.zeros((3, n))
    band[1, 0] = band[1, n - 1] = 1.0
    band[0, 2:] = h[1:]  # a[i, i+1] = x[i+1] - x[i], rows 1..n-2
    band[1, 1:-1] = 2.0 * (x[2:] - x[:-2])
    band[2, :-2] = h[:-1]  # a[i, i-1] = x[i] - x[i-1], rows 1..n-2
    rhs = np.zeros(y.shape)
    rhs[1:-1] = 6.0 * (slope[1:] - slope[:-1])
    return solve_banded((1, 1), band, rhs)


class Continuous1D(torch.nn.Module):
    """A cubic spline through equally spaced values on ``[min, max]``; zero outside.

    Parameters
    ----------
    values : array_like, shape ``(n,)``
        Function values at ``min + i*(max-min)/(n-1)``.
    min, max : float
        The tabulated range.
    periodic : bool
        Periodic spline; arguments are wrapped into ``[min, max)`` first.
    second_derivatives : array_like, shape ``(n,)``, optional
        The spline's second derivatives at the knots (computed when not given).
    """

    def __init__(self, values, min: float, max: float, periodic: bool, second_derivatives=None):
        super().__init__()
        values = np.asarray(values, dtype=np.float64)
        if values.ndim != 1 or len(values) < (3 if periodic else 2):
            raise ValueError(f"Continuous1DFunction needs at least {3 if periodic else 2} values, got {values.shape}")
        if not max > min:
            raise ValueError(f"Continuous1DFunction needs max > min, got min={min}, max={max}")
        if second_derivatives is None:
            x = min + np.arange(len(values)) * (max - min) / (len(values) - 1)
            second_derivatives = _natural_spline_second_derivatives(x, values, periodic)
        self.min, self.max, self.periodic = float(min), float(max), bool(periodic)
        self.register_buffer("values", torch.as_tensor(values))
        self.register_buffer("second_derivatives", torch.as_tensor(np.asarray(second_derivatives, dtype=np.float64)))

    n_arguments = 1

    def _locate(self, t: torch.Tensor):
        n = self.values.shape[0]
        width = self.max - self.min
        h = width / (n - 1)
        if self.periodic:
            s = (t - self.min) / width
            t = self.min + width * (s - torch.floor(s).detach())
        inside = (t >= self.min) & (t <= self.max)
        # Clamp before evaluating so that points outside give finite (then discarded) values.
        tc = torch.clamp(t, self.min, self.max)
        lower = torch.clamp(torch.floor((tc - self.min) / h).detach().long(), 0, n - 2)
        upper = lower + 1
        a = (self.min + upper.to(t.dtype) * h - tc) / h
        values = self.values.to(t.dtype)
        second = self.second_derivatives.to(t.dtype)
        return inside, h, a, 1.0 - a, values[lower], values[upper], second[lower], second[upper]

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        inside, h, a, b, y0, y1, d0, d1 = self._locate(t)
        value = a * y0 + b * y1 + ((a * a * a - a) * d0 + (b * b * b - b) * d1) * (h * h / 6.0)
        return torch.where(inside, value, torch.zeros_like(value))

    def derivative(self, argument: int):
        """The derivative in the (only) argument, as a callable on tensors."""
        if argument != 0:
            raise ValueError(f"Continuous1DFunction has one argument, not {argument + 1}")
        return self._slope

    def _slope(self, t: torch.Tensor) -> torch.Tensor:
        # da/dt = -1/h, db/dt = 1/h.
        inside, h, a, b, y0, y1, d0, d1 = self._locate(t)
        slope = (y1 - y0) / h + ((3.0 * b * b - 1.0) * d1 - (3.0 * a * a - 1.0) * d0) * (h / 6.0)
        return torch.where(inside, slope, torch.zeros_like(slope))

    def spec(self) -> dict[str, Any]:
        return {"type": "Continuous1DFunction", "min": self.min, "max": self.max, "periodic": self.periodic}


def _knot_slopes(x: np.ndarray, y: np.ndarray, periodic: bool) -> np.ndarray:
    """First derivatives at the knots of the cubic spline through ``(x, y)``.

    ``y`` is ``(n,)`` or ``(n, k)`` (k splines on the same knots); the result has its shape.
    """
    d = _natural_spline_second_derivatives(x, y, periodic)
    h = np.diff(x)
    col = (slice(None),) + (None,) * (y.ndim - 1)
    slopes = np.empty(y.shape)
    # Knot j read from the interval that starts there (the last from the one that ends there).
    slopes[:-1] = (y[1:] - y[:-1]) / h[col] - (2.0 * d[:-1] + d[1:]) * h[col] / 6.0
    slopes[-1] = (y[-1] - y[-2]) / h[-1] + (d[-2] + 2.0 * d[-1]) * h[-1] / 6.0
    return slopes


# Cubic Hermite basis on [0, 1] in powers of t: row k gives the coefficients of t^k for the
# weights of (value at 0, value at 1, slope at 0, slope at 1).
_HERMITE = np.array([[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [-3.0, 3.0, -2.0, -1.0], [2.0, -2.0, 1.0, 1.0]])


class Continuous2D(torch.nn.Module):
    """A bicubic spline through values on a regular grid; zero outside its range.

    As OpenMM's ``SplineFitter::create2DSpline``: the derivatives at the knots (d/dx, d/dy and
    d2/dxdy) come from 1-D cubic splines (natural, or periodic) along the grid lines, and each
    cell is the bicubic Hermite patch that matches value, both slopes and the cross derivative
    at its four corners.

    Parameters
    ----------
    values : array_like, shape ``(xsize*ysize,)``
        Entry ``(i, j)`` at ``values[i + j*xsize]``.
    shape : (int, int)
        ``(xsize, ysize)``.
    xmin, xmax, ymin, ymax : float
    periodic : bool
    coefficients : array_like, shape ``(xsize-1, ysize-1, 4, 4)``, optional
        Patch coefficients: the value in a cell is ``sum c[k, l] a^k b^l`` with ``a, b`` the
        fractional position in the cell (computed when not given).
    """

    n_arguments = 2

    def __init__(self, values, shape, xmin, xmax, ymin, ymax, periodic: bool, coefficients=None):
        super().__init__()
        nx, ny = (int(v) for v in shape)
        values = np.asarray(values, dtype=np.float64).reshape(-1)
        if nx < (3 if periodic else 2) or ny < (3 if periodic else 2) or len(values) != nx * ny:
            raise ValueError(f"Continuous2DFunction: bad grid {nx} x {ny} with {len(values)} values")
        if not (xmax > xmin and ymax > ymin):
            raise ValueError(f"Continuous2DFunction needs max > min, got x [{xmin}, {xmax}], y [{ymin}, {ymax}]")
        self.shape = (nx, ny)
        self.limits = (float(xmin), float(xmax), float(ymin), float(ymax))
        self.periodic = bool(periodic)
        if coefficients is None:
            coefficients = self._fit(values.reshape(ny, nx).T)
        self.register_buffer("values", torch.as_tensor(values))
        self.register_buffer("coefficients", torch.as_tensor(np.asarray(coefficients, dtype=np.float64)))

    def _fit(self, f: np.ndarray) -> np.ndarray:
        nx, ny = self.shape
        xmin, xmax, ymin, ymax = self.limits
        x, y = np.linspace(xmin, xmax, nx), np.linspace(ymin, ymax, ny)
        # every grid line at once: the spline solves take (n, k) right-hand sides
        fx = _knot_slopes(x, f, self.periodic)
        fy = _knot_slopes(y, f.T, self.periodic).T
        fxy = _knot_slopes(x, fy, self.periodic)
        hx, hy = x[1] - x[0], y[1] - y[0]
        # Corner data of every cell in Hermite order: rows (value at a=0, a=1, slope a=0, a=1),
        # same for columns in b; slopes scaled to the unit cell. g: (nx-1, ny-1, 4, 4).
        g = np.empty((nx - 1, ny - 1, 4, 4))
        for di in (0, 1):
            for dj in (0, 1):
                cell = (slice(di, nx - 1 + di), slice(dj, ny - 1 + dj))
                g[:, :, di, dj] = f[cell]
                g[:, :, 2 + di, dj] = fx[cell] * hx
                g[:, :, di, 2 + dj] = fy[cell] * hy
                g[:, :, 2 + di, 2 + dj] = fxy[cell] * hx * hy
        return _HERMITE @ g @ _HERMITE.T

    def _locate(self, u, v):
        nx, ny = self.shape
        xmin, xmax, ymin, ymax = self.limits
        hx, hy = (xmax - xmin) / (nx - 1), (ymax - ymin) / (ny - 1)
        if self.periodic:
            su, sv = (u - xmin) / (xmax - xmin), (v - ymin) / (ymax - ymin)
            u = xmin + (xmax - xmin) * (su - torch.floor(su).detach())
            v = ymin + (ymax - ymin) * (sv - torch.floor(sv).detach())
        inside = (u >= xmin) & (u <= xmax) & (v >= ymin) & (v <= ymax)
        uc, vc = torch.clamp(u, xmin, xmax), torch.clamp(v, ymin, ymax)
        i = torch.clamp(torch.floor((uc - xmin) / hx).detach().long(), 0, nx - 2)
        j = torch.clamp(torch.floor((vc - ymin) / hy).detach().long(), 0, ny - 2)
        a = (uc - xmin) / hx - i.to(u.dtype)
        b = (vc - ymin) / hy - j.to(u.dtype)
        c = self.coefficients.to(u.dtype)[i, j]  # (..., 4, 4)
        return inside, hx, hy, a, b, c

    @staticmethod
    def _powers(t, derivative: bool):
        one, zero = torch.ones_like(t), torch.zeros_like(t)
        if derivative:
            return torch.stack([zero, one, 2.0 * t, 3.0 * t * t], dim=-1)
        return torch.stack([one, t, t * t, t * t * t], dim=-1)

    def _evaluate(self, u, v, order):
        u, v = torch.broadcast_tensors(u, v)
        inside, hx, hy, a, b, c = self._locate(u, v)
        pa, pb = self._powers(a, order == 0), self._powers(b, order == 1)
        value = (pa.unsqueeze(-1) * c * pb.unsqueeze(-2)).sum((-1, -2))
        if order == 0:
            value = value / hx
        elif order == 1:
            value = value / hy
        return torch.where(inside, value, torch.zeros_like(value))

    def forward(self, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return self._evaluate(u, v, None)

    def derivative(self, argument: int):
        """The partial derivative in argument 0 (x) or 1 (y), as a callable on tensors."""
        if argument not in (0, 1):
            raise ValueError(f"Continuous2DFunction has two arguments, not {argument + 1}")
        return self._d_dx if argument == 0 else self._d_dy

    def _d_dx(self, u, v):
        return self._evaluate(u, v, 0)

    def _d_dy(self, u, v):
        return self._evaluate(u, v, 1)

    def spec(self) -> dict[str, Any]:
        xmin, xmax, ymin, ymax = self.limits
        return {
            "type": "Continuous2DFunction", "shape": list(self.shape), "xmin": xmin, "xmax": xmax,
            "ymin": ymin, "ymax": ymax, "periodic": self.periodic,
        }


class Discrete(torch.nn.Module):
    """A 1-, 2- or 3-D table looked up at the arguments rounded to the nearest integer.

    Indices are clamped to the table, as OpenMM's Reference platform does; the derivative is
    zero.

    Parameters
    ----------
    values : array_like, shape ``(n,)``
        Flattened table, x fastest: entry ``(i, j, k)`` is ``values[i + (j + k*ysize)*xsize]``.
    shape : sequence of int
        ``(xsize,)``, ``(xsize, ysize)`` or ``(xsize, ysize, zsize)``.
    """

    def __init__(self, values, shape):
        super().__init__()
        shape = tuple(int(s) for s in shape)
        values = np.asarray(values, dtype=np.float64).reshape(-1)
        if not 1 <= len(shape) <= 3 or int(np.prod(shape)) != len(values):
            raise ValueError(f"discrete table of shape {shape} needs {int(np.prod(shape))} values, got {len(values)}")
        self.shape = shape
        self.n_arguments = len(shape)
        self.register_buffer("values", torch.as_tensor(values))

    def forward(self, *args: torch.Tensor) -> torch.Tensor:
        if len(args) != len(self.shape):
            raise ValueError(f"discrete table of shape {self.shape} takes {len(self.shape)} arguments, got {len(args)}")
        args = torch.broadcast_tensors(*args)
        flat = None
        stride = 1
        for arg, size in zip(args, self.shape):
            # C's round() (half away from zero) equals floor(x + 0.5) for x >= 0; negative
            # arguments clamp to 0 either way.
            index = torch.clamp(torch.floor(arg.detach() + 0.5), 0, size - 1).long()
            flat = index * stride if flat is None else flat + index * stride
            stride *= size
        return self.values.to(args[0].dtype)[flat]

    def derivative(self, argument: int):
        """The (zero) partial derivative in one argument, as a callable on tensors."""
        if not 0 <= argument < len(self.shape):
            raise ValueError(f"discrete table of shape {self.shape} has no argument {argument + 1}")
        return self._zero

    def _zero(self, *args: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(torch.broadcast_tensors(*args)[0])

    def spec(self) -> dict[str, Any]:
        return {"type": "DiscreteFunction", "shape": list(self.shape)}


def function_from_openmm(function, force_name: str, function_name: str) -> torch.nn.Module:
    """Convert an ``openmm.TabulatedFunction`` (or raise ValueError naming what is unsupported)."""
    import openmm

    if isinstance(function, openmm.Continuous1DFunction):
        values, fmin, fmax = function.getFunctionParameters()
        return Continuous1D(list(values), fmin, fmax, function.getPeriodic())
    if isinstance(function, openmm.Continuous2DFunction):
        xsize, ysize, values, xmin, xmax, ymin, ymax = function.getFunctionParameters()
        return Continuous2D(list(values), (xsize, ysize), xmin, xmax, ymin, ymax, function.getPeriodic())
    if isinstance(function, openmm.Discrete1DFunction):
        values = list(function.getFunctionParameters())
        return Discrete(values, (len(values),))
    if isinstance(function, openmm.Discrete2DFunction):
        xsize, ysize, values = function.getFunctionParameters()
        return Discrete(list(values), (xsize, ysize))
    if isinstance(function, openmm.Discrete3DFunction):
        xsize, ysize, zsize, values = function.getFunctionParameters()
        return Discrete(list(values), (xsize, ysize, zsize))
    raise ValueError(
        f"{force_name}: tabulated function {function_name!r} is a {type(function).__name__}, which the torch "
        "force field does not support (supported: Continuous1DFunction, Continuous2DFunction, "
        "Discrete1D/2D/3DFunction); "
        "use the OpenMM engine for this system"
    )


def function_from_spec(spec: dict[str, Any], buffers: dict[str, torch.Tensor]) -> torch.nn.Module:
    """Rebuild a tabulated function from its :meth:`spec` and buffers (``values`` etc.)."""
    if spec["type"] == "Continuous1DFunction":
        return Continuous1D(
            buffers["values"].double().numpy(), spec["min"], spec["max"], spec["periodic"],
            buffers["second_derivatives"].double().numpy(),
        )
    if spec["type"] == "Continuous2DFunction":
        return Continuous2D(
            buffers["values"].double().numpy(), spec["shape"], spec["xmin"], spec["xmax"], spec["ymin"],
            spec["ymax"], spec["periodic"], buffers["coefficients"].double().numpy(),
        )
    if spec["type"] == "DiscreteFunction":
        return Discrete(buffers["values"].double().numpy(), spec["shape"])
    raise ValueError(f"unknown tabulated function type {spec['type']!r}")
