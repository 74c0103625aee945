"""Least-distance programming: min ||d|| subject to G d >= h, through NNLS.

The Lawson-Hanson reduction: with E = [G^T; h^T] and f = e_{last}, solve
min ||E u - f|| over u >= 0. If the residual r = E u - f has r_last < 0, then
d = -r[:-1] / r_last is the least-distance point and u / (-r_last) are its multipliers;
if the residual vanishes, the constraints are infeasible.

The answer is re-checked, never trusted: feasibility of d, non-negativity of the
multipliers, stationarity d = G^T lambda and complementary slackness are recomputed
here, relative to the data's scale (each constraint is normalised before the solve,
since NNLS verdicts depend on scale). The NNLS answer itself is checked optimal
(`check_nnls`) before either verdict, feasible or infeasible, is read from it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.optimize import nnls

__all__ = [
    "NNLS_TOL",
    "InfeasibleError",
    "LeastDistance",
    "SolverCheckError",
    "check_nnls",
    "least_distance",
]

# Slack of the NNLS optimality conditions, in units of eps times the size of the
# gradient's terms (see `check_nnls`). Forming b - A x and A^T r rounds at that size,
# and a backward-stable least-squares solve on the passive set leaves a gradient of
# the same order there; a wrong multiplier moves the gradient by ||a_i||^2 times its
# error, which a factor of a few thousand ulps cannot hide.
NNLS_TOL = 4096 * np.finfo(float).eps


class InfeasibleError(ValueError):
    """No d satisfies G d >= h."""


class SolverCheckError(RuntimeError):
    """A solver's answer failed the independent re-check."""


@dataclass(frozen=True)
class LeastDistance:
    d: np.ndarray
    multipliers: np.ndarray
    residuals: dict


def least_distance(
    G: np.ndarray, h: np.ndarray, *, tol: float = 1e-9, norm_hint: float | None = None
) -> LeastDistance:
    """The minimum-norm d with G d >= h, and multipliers lambda >= 0, d = G^T lambda.

    `norm_hint`, the norm of any point known to be feasible, lets the solve run on a
    rescaled problem whose answer has norm <= 1: the reduction below recovers d as
    r / r_last with r_last = -1 / (1 + ||d||^2), which loses ||d||^2 in relative
    accuracy when d is long."""
    G = np.asarray(G, dtype=float)
    h = np.asarray(h, dtype=float)
    if G.ndim != 2 or G.shape[0] == 0:
        raise ValueError(f"G must be a non-empty 2-D array, got shape {G.shape}")
    if h.shape != (G.shape[0],):
        raise ValueError(f"h must have shape ({G.shape[0]},), got {h.shape}")
    if not (np.all(np.isfinite(G)) and np.all(np.isfinite(h))):
        raise ValueError("G and h must be finite")
    if np.all(h <= 0):
        z = np.zeros(G.shape[1])
        return LeastDistance(z, np.zeros(G.shape[0]), {"feasibility": 0.0})
    if norm_hint is not None:
        if not (math.isfinite(norm_hint) and norm_hint > 0):
            raise ValueError(
                f"norm_hint must be positive and finite, got {norm_hint!r}"
            )
        # G' = c G has the answer d' = d / c and multipliers lambda' = lambda / c^2.
        inner = least_distance(norm_hint * G, h, tol=tol)
        d, lam = inner.d * norm_hint, inner.multipliers * norm_hint**2
        return LeastDistance(d, lam, check_least_distance(G, h, d, lam, tol=tol))

    # Scale each constraint (g_i, h_i) as a whole, so every column of the NNLS
    # matrix below has unit norm. Scaling g_i alone would leave h_i / ||g_i|| in the
    # last row, spread over as many orders of magnitude as the rows' sizes, and
    # NNLS then called feasible problems infeasible once rows differed by ~3e3.
    scale = np.sqrt(np.linalg.norm(G, axis=1) ** 2 + h**2)
    scale[scale == 0] = 1.0
    Gs, hs = G / scale[:, None], h / scale
    E = np.vstack([Gs.T, hs[None, :]])
    f = np.zeros(E.shape[0])
    f[-1] = 1.0
    u, _ = nnls(E, f, maxiter=50 * E.shape[1] + 100)
    check_nnls(E, f, u, "least-distance NNLS")
    r = E @ u - f
    # r_last = -1 / (1 + ||d||^2) up to scale; it is exactly 0 when infeasible, and
    # small but negative when the answer is merely long, so decide by re-checking.
    if not r[-1] < 0:
        raise InfeasibleError("the constraints G d >= h have no solution")
    d = -r[:-1] / r[-1]
    lam = (u / -r[-1]) / scale
    if np.min(G @ d - h) < -tol * max(float(np.max(np.abs(h))), 1e-300):
        raise InfeasibleError(
            "the constraints G d >= h have no solution (NNLS residual "
            f"{r[-1]:.3g}; its candidate violates a constraint)"
        )
    return LeastDistance(d, lam, check_least_distance(G, h, d, lam, tol=tol))


def check_nnls(
    A: np.ndarray, b: np.ndarray, x: np.ndarray, what: str = "NNLS"
) -> float:
    """The optimality conditions of min ||A x - b|| over x >= 0, recomputed.

    With the gradient w = A^T (b - A x): x >= 0, w_i <= 0 where x_i = 0 (no
    multiplier can grow and shrink the residual) and w_i = 0 where x_i > 0, each up
    to NNLS_TOL relative to ||a_i|| (||b|| + ||A|| ||x||), the size of the terms
    that round in w_i (a negative x_i counts as the gradient ||a_i||^2 |x_i|).
    Returns the worst violation in those units; raises SolverCheckError, naming
    the entry, when it exceeds NNLS_TOL."""
    w = A.T @ (b - A @ x)
    col = np.linalg.norm(A, axis=0)
    size = col * (np.linalg.norm(b) + np.linalg.norm(A) * np.linalg.norm(x))
    size = np.maximum(size, np.finfo(float).tiny)
    negative = np.maximum(0.0, -x) * col**2 / size
    # A zero entry may only have w_i <= 0; a positive one needs w_i = 0.
    gradient = np.where(x > 0, np.abs(w), np.maximum(w, 0.0)) / size
    for rel, kind in ((negative, "infeasible"), (gradient, "not optimal")):
        worst = int(np.argmax(rel)) if rel.size else 0
        if rel.size and not rel[worst] <= NNLS_TOL:
            raise SolverCheckError(
                f"{what} answer is {kind}: entry {worst} ({x[worst]:.3g}) has "
                f"gradient {w[worst]:.3g}, violation {rel[worst]:.2e} relative, "
                f"above NNLS_TOL={NNLS_TOL:.1e}"
            )
    return float(max(negative.max(initial=0.0), gradient.max(initial=0.0)))


def check_least_distance(G, h, d, lam, *, tol: float) -> dict:
    """KKT residuals of min 1/2||d||^2 s.t. G d >= h, relative to ||d|| and |h|.

    Raises SolverCheckError when any exceeds `tol`."""
    size = max(float(np.linalg.norm(d)), 1e-300)
    hscale = max(float(np.max(np.abs(h))), 1e-300)
    slack = G @ d - h
    res = {
        "feasibility": float(max(0.0, -slack.min()) / hscale),
        "stationarity": float(np.linalg.norm(d - G.T @ lam) / size),
        "dual_sign": float(max(0.0, -lam.min()) * np.linalg.norm(G) / size),
        "complementarity": float(np.max(np.abs(lam * slack)) / size**2),
    }
    bad = {k: v for k, v in res.items() if not v <= tol}
    if bad:
        raise SolverCheckError(f"least-distance answer failed its re-check: {bad}")
    return res
