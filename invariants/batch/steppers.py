"""One step of an embedded pair for a batch of rows, each with its own step size.

- `dop853_step`: Dormand and Prince's explicit 8(5,3) pair, SciPy's `DOP853`
  tableau and error norm (read from the public class), for the non-stiff clocks.
- `rodas4_step`: Hairer and Wanner's RODAS4, a stiffly accurate, L-stable
  linearly-implicit Rosenbrock method of order 4 with an embedded order-3
  estimate, for the stiff far phase. Each row solves its own (P, P) system; the
  matrix I / (h gamma) - J is inverted once per step and reused by the 6 stages.
  Coefficients in the form of Hairer and Wanner's `rodas.f` (as also used by
  KPP): G K_i = f(t + alpha_i h, y + sum_j a_ij K_j) + sum_j c_ij K_j / h
  + h gamma_i f_t. Its order is tested in tests/test_batch.py.

`error_norms` is the RMS of the error over atol + rtol max(|y0|, |y1|), per row;
`next_steps` the usual controller, clipped to [0.2, 10] times the old step.
"""

from __future__ import annotations

import numpy as np
from scipy.integrate import DOP853

__all__ = ["DOP853_ORDER", "RODAS4_ORDER", "dop853_step", "rodas4_step"]

_A, _B, _C = DOP853.A, DOP853.B, DOP853.C
_E3, _E5 = DOP853.E3, DOP853.E5
DOP853_ORDER = 7  # exponent of its error estimate is -1 / (7 + 1)

_GAMMA = 0.25
_ALPHA = np.array([0.0, 0.386, 0.21, 0.63, 1.0, 1.0])
_GAMMAS = np.array([0.25, -0.1043, 0.1035, -0.0362, 0.0, 0.0])
_a = [
    1.544,
    0.9466785280815826, 0.2557011698983284,
    3.314825187068521, 2.896124015972201, 0.9986419139977817,
    1.221224509226641, 6.019134481288629, 12.53708332932087, -0.687886036105895,
    1.221224509226641, 6.019134481288629, 12.53708332932087, -0.687886036105895, 1.0,
]  # fmt: skip
_c = [
    -5.6688,
    -2.430093356833875, -0.2063599157091915,
    -0.1073529058151375, -9.594562251023355, -20.47028614809616,
    7.496443313967647, -10.24680431464352, -33.99990352819905, 11.7089089320616,
    8.083246795921522, -7.981132988064893, -31.52159432874371, 16.31930543123136,
    -6.058818238834054,
]  # fmt: skip
_RA = np.zeros((6, 6))
_RC = np.zeros((6, 6))
_RA[np.tril_indices(6, -1)] = _a
_RC[np.tril_indices(6, -1)] = _c
# y1 = Y_6 + K_6 (stiffly accurate); the error estimate is K_6 itself.
_RM = np.array([*_a[10:15], 1.0])
RODAS4_ORDER = 3  # the embedded order: error exponent -1 / (3 + 1)


def error_norms(err, y0, y1, rtol, atol):
    scale = atol + rtol * np.maximum(np.abs(y0), np.abs(y1))
    return np.sqrt(np.mean((err / scale) ** 2, axis=1))


def next_steps(h, norm, order, accepted):
    with np.errstate(divide="ignore", invalid="ignore"):
        factor = 0.9 * norm ** (-1.0 / (order + 1))
    factor = np.where(norm == 0, 10.0, factor)
    factor = np.where(np.isfinite(factor), factor, 0.2)
    factor = np.clip(factor, 0.2, np.where(accepted, 10.0, 1.0))
    return h * factor


def dop853_step(fun, t, y, f0, h, rtol, atol):
    """(y1, f1, error norm); `fun(t, y)` evaluates the rows' field."""
    hh = h[:, None]
    K = np.empty((len(_C) + 1,) + y.shape)
    K[0] = f0
    for i in range(1, len(_C)):
        dy = np.tensordot(_A[i, :i], K[:i], axes=1) * hh
        K[i] = fun(t + _C[i] * h, y + dy)
    y1 = y + hh * np.tensordot(_B, K[:-1], axes=1)
    K[-1] = f1 = fun(t + h, y1)
    with np.errstate(all="ignore"):
        scale = atol + rtol * np.maximum(np.abs(y), np.abs(y1))
        e5 = np.tensordot(_E5, K, axes=1) / scale
        e3 = np.tensordot(_E3, K, axes=1) / scale
        n5, n3 = np.sum(e5**2, axis=1), np.sum(e3**2, axis=1)
        denom = np.sqrt((n5 + 0.01 * n3) * y.shape[1])
        norm = np.where(n5 == 0, 0.0, np.abs(h) * n5 / denom)
    return y1, f1, np.where(np.isfinite(norm), norm, np.inf)


def rodas4_step(fun, jac, t, y, f0, h, rtol, atol):
    """(y1, error norm); `jac(t, y)` gives (df/dy (B, P, P), df/dt (B, P))."""
    Jy, Jt = jac(t, y)
    P = y.shape[1]
    hh = h[:, None]
    with np.errstate(all="ignore"):
        M = np.eye(P)[None] / (_GAMMA * h)[:, None, None] - Jy
        finite = np.all(np.isfinite(M), axis=(1, 2))
        M[~finite] = np.eye(P)
        try:
            Minv = np.linalg.inv(M)
        except np.linalg.LinAlgError:
            Minv = np.stack([_pinv_or_nan(m) for m in M])
        K = []
        for i in range(6):
            if i == 0:
                Fi = f0
            else:
                Yi = y + sum(_RA[i, j] * K[j] for j in range(i) if _RA[i, j])
                Fi = fun(t + _ALPHA[i] * h, Yi)
            rhs = Fi + sum(_RC[i, j] * K[j] for j in range(i)) / hh
            rhs = rhs + (_GAMMAS[i] * h)[:, None] * Jt
            K.append(np.einsum("bpq,bq->bp", Minv, rhs))
        y1 = y + sum(_RM[j] * K[j] for j in range(6))
        norm = error_norms(K[5], y, y1, rtol, atol)
    norm[~finite] = np.inf
    return y1, np.where(np.isfinite(norm), norm, np.inf)


def _pinv_or_nan(m):
    try:
        return np.linalg.inv(m)
    except np.linalg.LinAlgError:
        return np.full_like(m, np.nan)
