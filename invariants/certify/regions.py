"""Activation regions of one ReLU neuron: the chambers of a hyperplane arrangement.

A neuron that sees inputs x_i^l is linear on each closed chamber of the arrangement
{u : x_i^l . u = 0}; its sign vector says which samples it sees positively. The
chambers are found by a tree over the samples: a sign vector of the first i samples
extends to sample i + 1 on one side at once when its witness point already lies
there, and otherwise when an LP, max t s.t. c_j x_j . u >= t ||x_j||, |u| <= 1, has
t > CHAMBER_TOL, checked on the LP's own u. A refusal is a claim about the LP's
optimum, so every LP's optimality is re-checked too: its multipliers give an upper
bound on t that must meet the t of its u. Antipodal chambers come in pairs, so only
half are searched.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.optimize import linprog

from invariants.certify.record import CertificateError

__all__ = [
    "CHAMBER_TOL",
    "MAX_REGION_LPS",
    "activation_regions",
    "check_region_work",
]

# The tree search for chambers needs at most (samples x chambers) LPs; chambers are
# bounded by Cover's count before any LP runs.
MAX_REGION_LPS = 20_000
# Inscribed margin (unit rows, u in the unit box) below which a sign vector is not a
# chamber. HiGHS is run to 1e-10; 1e-9 sits above its noise and far below the
# chambers of data that are not degenerate to nine digits.
CHAMBER_TOL = 1e-9
# Largest gap between the LP's verified t and the upper bound from its multipliers.
# HiGHS's feasibility tolerances are 1e-10 per row and column, and the bound sums
# the dual residual over the (few) coordinates of u; a chamber missed by a wrong
# refusal would silently drop convex problems from the exact global optimum.
LP_GAP_TOL = 1e-8
_LP_OPTIONS = {
    "primal_feasibility_tolerance": 1e-10,
    "dual_feasibility_tolerance": 1e-10,
}


def activation_regions(Xl) -> tuple[list[np.ndarray], dict]:
    """Sign vectors c in {-1, 0, +1}^n of the closed chambers of the arrangement
    {u : x_i . u = 0} (c_i = 0 where x_i = 0), and search statistics."""
    Xl = np.asarray(Xl, dtype=float)
    norms = np.linalg.norm(Xl, axis=1)
    rows = np.flatnonzero(norms > 0)
    stats = {"lps": 0, "thinnest_kept": math.inf, "fattest_refused": 0.0}
    if rows.size == 0:
        return [np.zeros(len(Xl))], stats
    U = Xl[rows] / norms[rows, None]
    # Chambers of the first sample: its two sides. Keep the + side; mirror at the end.
    u0 = U[0] / np.max(np.abs(U[0]))
    found = [((1,), u0, float(U[0] @ u0))]
    for i in range(1, len(rows)):
        grown = []
        for signs, u, margin in found:
            side = float(U[i] @ u)
            for s in (1, -1):
                if s * side > CHAMBER_TOL:
                    grown.append((signs + (s,), u, min(margin, s * side)))
                    continue
                stats["lps"] += 1
                point, t = _chamber_point(U[: i + 1], np.array(signs + (s,)))
                if t > CHAMBER_TOL:
                    grown.append((signs + (s,), point, t))
                else:
                    stats["fattest_refused"] = max(stats["fattest_refused"], t)
        found = grown
    out = []
    for signs, _, margin in found:
        stats["thinnest_kept"] = min(stats["thinnest_kept"], margin)
        for mirror in (1, -1):
            c = np.zeros(len(Xl))
            c[rows] = mirror * np.array(signs, dtype=float)
            out.append(c)
    return out, stats


def _chamber_point(U, signs):
    """max t s.t. signs_i U_i . u >= t, |u| <= 1: the LP's u and t re-checked."""
    n, r = U.shape
    A = np.hstack([-(signs[:, None] * U), np.ones((n, 1))])
    res = linprog(
        np.r_[np.zeros(r), -1.0],
        A_ub=A,
        b_ub=np.zeros(n),
        bounds=[(-1.0, 1.0)] * r + [(None, 1.0)],
        method="highs",
        options=_LP_OPTIONS,
    )
    if res.x is None or res.status != 0:
        # u = 0, t = 0 is always feasible: a missing answer is a solver failure.
        raise CertificateError(
            f"HiGHS failed on a chamber LP (status {res.status}): {res.message}"
        )
    u = np.clip(res.x[:r], -1.0, 1.0)
    t = float(np.min(signs * (U @ u)))
    upper = _chamber_bound(U, signs, res.ineqlin.marginals)
    if not upper - t <= LP_GAP_TOL:
        raise CertificateError(
            f"HiGHS's chamber LP answer is not optimal: its point has t = {t:.3g} "
            f"but its multipliers bound t by {upper:.3g} (gap {upper - t:.2e} > "
            f"LP_GAP_TOL={LP_GAP_TOL:.0e}); a chamber could be missed"
        )
    return u, t


def _chamber_bound(U, signs, marginals) -> float:
    """An upper bound on the chamber LP's optimum from multipliers y >= 0 of its
    rows: for sum y = 1, t <= sum_i y_i c_i U_i . u <= ||U^T (y c)||_1 on the unit
    box, and t <= 1 always. HiGHS reports them as marginals <= 0 of a minimisation."""
    y = np.clip(-np.asarray(marginals, dtype=float), 0.0, None)
    if not np.all(np.isfinite(y)):
        return math.inf
    total = float(y.sum())
    if total == 0.0:
        return 1.0
    return min(1.0, float(np.abs(U.T @ (y * signs)).sum()) / total)


def check_region_work(X, by_columns) -> None:
    lps = 0
    for cols in by_columns:
        Xl = X[:, list(cols)]
        n = int(np.count_nonzero(np.linalg.norm(Xl, axis=1)))
        r = int(np.linalg.matrix_rank(Xl)) if n else 0
        cover = 2 * sum(math.comb(max(n - 1, 0), j) for j in range(r))
        lps += n * cover
    if lps > MAX_REGION_LPS:
        raise ValueError(
            f"finding the activation regions could take up to {lps} LPs, more than "
            f"MAX_REGION_LPS={MAX_REGION_LPS}: use fewer samples or input dimensions"
        )
