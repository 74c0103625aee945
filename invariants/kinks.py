"""Filippov sliding on ReLU kinks: GF held on a surface where an input to a neuron is 0.

A ReLU network's field jumps where a pre-activation z_k = Z_l[i, a] changes sign:
ReLU'(z_k) is 0 on one side and 1 on the other. When the field on each side points
towards the surface, GF neither crosses it nor stops: it slides along it with a Clarke
selection ReLU'(z_k) = alpha_k in [0, 1], the one that keeps z_k at zero. An
integrator that steps across such a surface chatters with vanishing steps; this module
lets the simulator pin the kink instead.

Pinned kinks carry slopes alpha solved so that the pinned pre-activations follow
d z_k / d clock = -KAPPA z_k: zero along the exact surface, with a gentle pull back
that keeps integration error from accumulating off it. A kink is pinned when a
crossing is attracting from both sides, and released when its slope leaves [0, 1]
(beyond that no Clarke selection holds the surface, and GF leaves it to the side the
slope points to). The constraint is multilinear in the slopes (linear at depth 2), so
a few Newton steps with a finite-difference Jacobian solve it.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import lsq_linear

from invariants.networks import Network

__all__ = [
    "Kink",
    "all_kinks",
    "crossing",
    "hidden_preactivations",
    "rays",
    "solve_slopes",
]

Kink = tuple[int, int, int]  # (layer, sample, neuron), layers counted from 1

# Pull-back rate of a pinned pre-activation, per unit of the clock.
KAPPA = 1.0
# Relative accuracy to which the slopes satisfy the sliding condition.
SLOPE_TOL = 1e-12
# Step of the finite difference in the slopes: the condition is multilinear, so this
# only has to be small against 1.
SLOPE_STEP = 1e-6
# Where the Newton iteration may take the slopes while it looks for a solution.
SLOPE_LO, SLOPE_HI = -1.0, 2.0


def all_kinks(network: Network, n: int) -> list[Kink]:
    """Every hidden pre-activation of a ReLU network on n samples, in the order of
    `hidden_preactivations`."""
    if network.activation != "relu":
        return []
    return [
        (l, i, a)
        for l in range(1, network.depth)
        for i in range(n)
        for a in range(network.widths[l])
    ]


def rays(X: np.ndarray, *, lines: bool = False) -> np.ndarray:
    """An id per sample; samples that are positive multiples of each other share it
    (with `lines`, negative multiples too)."""
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    unit = np.where(norms > 0, X / np.where(norms > 0, norms, 1.0), 0.0)
    ids = np.arange(len(X))
    for i in range(len(X)):
        for j in range(i):
            same = np.allclose(unit[i], unit[j], rtol=0, atol=1e-12)
            if same or (lines and np.allclose(unit[i], -unit[j], rtol=0, atol=1e-12)):
                ids[i] = ids[j]
                break
    return ids


def hidden_preactivations(network: Network, state: np.ndarray, X: np.ndarray):
    """All hidden pre-activations, flattened in the order of `all_kinks`, and a scale
    for each (||incoming weights|| ||layer input||) to judge zero against."""
    if network.activation != "relu" or network.depth < 2:
        return np.empty(0), np.empty(0)
    Ws = network.weight_matrices(state)
    Zs = network.forward(state, X).preactivations
    H = X
    values, scales = [], []
    for W, Z in zip(Ws[:-1], Zs[:-1]):
        values.append(Z.ravel())
        scales.append(
            np.outer(np.linalg.norm(H, axis=1), np.linalg.norm(W, axis=1)).ravel()
        )
        H = np.maximum(Z, 0.0)
    return np.concatenate(values), np.concatenate(scales)


def solve_slopes(network, X, state, pinned, velocity, alpha0=None, cache=None):
    """Slopes alpha for the pinned kinks and the velocity they give.

    `velocity(state, slopes)` is the phase's field with the given Clarke selection.
    Returns (alpha, v). alpha may leave [0, 1]: the caller decides what that means.
    `cache`, a dict, keeps the condition's Jacobian in the slopes between calls: it
    changes slowly along the path, and a stale one only costs an extra iteration.
    """
    if not pinned:
        return np.empty(0), velocity(state, None)
    alpha = np.full(len(pinned), 0.5) if alpha0 is None else np.array(alpha0, float)
    cache = {} if cache is None else cache

    def residual(a):
        slopes = dict(zip(pinned, a))
        v = velocity(state, slopes)
        z, Dz = network.preactivation_gradients(state, X, pinned, slopes)
        scale = np.linalg.norm(Dz, axis=1) * np.linalg.norm(v) + np.abs(z)
        return Dz @ v + KAPPA * z, v, scale

    g, v, scale = residual(alpha)
    fresh = False
    boxed = False
    for _ in range(20):
        if not np.all(np.isfinite(g)):
            # A trial stage of a step that is too long: the stepper rejects it.
            return alpha, np.full_like(v, np.nan)
        if np.all(np.abs(g) <= SLOPE_TOL * np.maximum(scale, 1e-300)):
            if boxed or np.all((alpha >= 0) & (alpha <= 1)) or len(pinned) == 1:
                return alpha, v
            # Kinks on one surface (duplicated points) make the condition singular;
            # among its solutions take one inside [0, 1]^K if there is one, so that
            # a kink is released only when no Clarke selection holds the surface.
            boxed = True
            A = cache.get("A")
            if A is not None and A.shape == (len(pinned),) * 2:
                inside = lsq_linear(A, A @ alpha, bounds=(0.0, 1.0)).x
                # Both promises re-checked: inside the box, and holding the surface;
                # otherwise alpha, which already holds it, is the answer.
                if np.all((inside >= 0) & (inside <= 1)):
                    g_in, v_in, scale_in = residual(inside)
                    held = np.abs(g_in) <= SLOPE_TOL * np.maximum(scale_in, 1e-300)
                    if np.all(held):
                        return inside, v_in
            return alpha, v
        A = cache.get("A")
        if A is None or A.shape != (len(pinned),) * 2:
            A = np.empty((len(pinned), len(pinned)))
            for j in range(len(pinned)):
                shifted = alpha.copy()
                shifted[j] += SLOPE_STEP
                A[:, j] = (residual(shifted)[0] - g) / SLOPE_STEP
            cache["A"], fresh = A, True
        previous = np.abs(g).max()
        # Bounded steps: dependent or degenerate kinks make A singular, and an
        # unbounded step would fling the slopes to 1e10. Slopes a little outside
        # [0, 1] still tell the caller which way a kink is released.
        alpha = alpha + lsq_linear(A, -g, bounds=(SLOPE_LO - alpha, SLOPE_HI - alpha)).x
        g, v, scale = residual(alpha)
        if not fresh and np.abs(g).max() > 0.1 * previous:
            cache.pop("A")  # stale: measure it again next iteration
    # Known shortcoming: the last iterate goes back as if it held the surface. On
    # ordinary paths Newton stalls at relative residuals up to 1.4e-7, which the
    # pull-back absorbs; degenerate ones leave far more. Refusing residuals above
    # 1e-6 made some sliding paths crawl, step after rejected step.
    return alpha, v


def crossing(network, X, state, pinned, alpha, kink, velocity):
    """How the field meets the surface z_kink = 0 at `state`: the rate of z_kink under
    ReLU' = 0 and ReLU' = 1 there (other pinned kinks at their slopes). Attracting
    from both sides when the first is > 0 and the second < 0."""
    rates = []
    for value in (0.0, 1.0):
        slopes = dict(zip(pinned, alpha))
        slopes[kink] = value
        v = velocity(state, slopes)
        _, Dz = network.preactivation_gradients(state, X, [kink], slopes)
        rates.append(float(Dz[0] @ v))
    return rates[0], rates[1]
