"""Least-distance programming: min ||d|| subject to G d >= h, through NNLS.

The Lawson-Hanson reduction: with E = [G^T; h^T] and f = e_{last}, solve
min ||E u - f|| over u >= 0. If the residual r = E u - f has r_last < 0, then
d = -r[:-1] / r_last is the least-distance point and u / (-r_last) are its multipliers;
if the residual vanishes, the constraints are infeasible.

The answer is re-checked, never trusted: feasibility of d, non-negativity of the
multipliers, stationarity d = G^T lambda and complementary slackness are recomputed
here, relative to the data's scale (each constraint is normalised before the solve,
since NNLS verdicts depend on scale).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.optimize import nnls

__all__ = ["InfeasibleError", "LeastDistance", "SolverCheckError", "least_distance"]


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
