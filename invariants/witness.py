"""Searches for witnesses that a limit theta~ is not a local or global optimum.

A witness is a point theta' with every margin >= 1 and ||theta'|| < ||theta~||,
within a radius of theta~ for a local claim, and differing from theta~ in one layer
only for a claim about Problem 4. The record `Witness` and its exact verifier live
in `invariants.exact_check` (re-exported here); every search below returns only
points that verifier has accepted.

Why the local search is not a gradient step. theta~ is a KKT point, so no step
along the margins' gradients (ReLU'(0) = 0 at a kink) lowers the norm to first
order. The paper's improvements hide from that: most are second order (the norm
drops like the square of the distance), by a dead neuron revived (Theorem 3.2: it
grows like sqrt(eps) while the norm drops like eps) or along the descent direction
of a saddle of the constrained problem with every input non-zero (Theorems 4.1,
4.4, 5.1); and at a kink (Theorem 4.2 (2)) the drop is first order but along
directions on the far side of the kink, which the one-sided Jacobian does not see.

Design of `find_local_improvement`. Each attempt is a constrained local solve,

    min ||theta||^2  s.t.  q_i(theta) >= 1,  ||theta - theta~|| <= rho * radius,

by SLSQP with the exact margin Jacobian (ReLU'(0) = 0), over the free parameters
(all of them, or u^(l) alone with `layer=l`). The variables are the displacement in
units of the radius, and the objective and margins are measured relative to their
values at theta~ in units of the radius, so that gradients are O(1) whatever the
radius; SLSQP then resolves the second-order gain (relative size ~radius^2) that
an unscaled problem loses in its stopping rule. rho = 1 - 1e-3 leaves room for
the last step. Attempts start from small displacements, at several fractions of
the radius, alternating between Gaussian directions and structured ones: a random
sign pattern over the gradients of the zero inputs to neurons (every pattern when
there are at most four), plus each zero neuron's outgoing (and, in a linear net,
incoming) weights with a random sign, plus some noise. A start on the right side
of each kink and with the right output sign is what revives a neuron; a start off
the saddle is all the others need. Each solver's point is then grown along its
ray (or the layer's ray) until every margin is >= 1 in exact arithmetic
(`exactly_feasible`), and is kept only if `verify_witness` accepts it and its
relative gap exceeds `min_relative_gap` (a gap of a few ulps only shows that
theta~ was rounded with margins slightly above 1). The first such point is
returned. Everything random comes from `seed`, so a search is reproducible.

`find_global_improvement` drops the radius and starts far away: Gaussian points
of theta~'s size, theta~ with neurons re-signed, and large perturbations of
theta~; for depth-2 ReLU N_no-share nets it also offers the exact global optimum
of `invariants.certify.exact`. It returns the best verified point.

A search that returns None has found nothing; it proves nothing about theta~.
"""

from __future__ import annotations

import itertools
import logging
import math
import warnings

import numpy as np
from numpy.typing import ArrayLike
from scipy.optimize import minimize

from invariants.activation import zero_inputs
from invariants.exact_check import (
    Witness,
    check_radius,
    exactly_feasible,
    verify_witness,
)
from invariants.networks import Network
from invariants.validation import (
    check_dataset,
    check_layer,
    check_theta,
    check_tolerance,
)

__all__ = [
    "MIN_RELATIVE_GAP",
    "Witness",
    "find_global_improvement",
    "find_local_improvement",
]

log = logging.getLogger(__name__)

# Below this relative gap a witness beats theta~ only by the rounding of theta~
# itself (a limit rescaled in floating point has margins a few ulps either side of
# 1, worth ~1e-15 of its squared norm). The paper's gaps at radius 1e-5 are ~1e-11.
MIN_RELATIVE_GAP = 1e-12
# How far below 1 the smallest margin of a rescaled limit may sit from rounding.
FEASIBILITY_SLACK = 1e-9
# Fractions of the radius at which local starts are placed: far enough off a saddle
# for the solver to see its descent, and small enough to stay in theta~'s basin.
LOCAL_SCALES = (0.5, 0.1, 0.02)
# The ball the local solver may use, as a fraction of the radius: the exact
# feasibility step after the solve grows the point by ~1e-15 relative, never this.
RHO = 1.0 - 1e-3
# Noise added to a structured start, relative to its size, so that repeated sign
# patterns still start from different points.
STRUCTURED_NOISE = 0.3
# SLSQP iterations per solve; a solve that reaches the limit is still verified.
# Local solves converge in 15-35; a global start on a flat dead-ReLU region never
# does, and stops at its limit.
LOCAL_ITERATIONS = 300
GLOBAL_ITERATIONS = 100


# -- the searches ----------------------------------------------------------------------


def find_local_improvement(
    network: Network,
    X: ArrayLike,
    y: ArrayLike,
    theta_tilde: ArrayLike,
    radius: float,
    *,
    seed: int = 0,
    layer: int | None = None,
    budget: int = 48,
    min_relative_gap: float = MIN_RELATIVE_GAP,
) -> Witness | None:
    """A verified witness within `radius` of theta~, or None (see the module).

    At most `budget` local solves, from starts drawn with `seed`; `layer=l` moves
    u^(l) alone (Problem 4). None means that no start led to a verified witness.
    """
    X, y, theta_tilde, free = _check_search(
        network, X, y, theta_tilde, layer, min_relative_gap
    )
    radius = check_radius(radius)
    budget = _check_count(budget, "budget")
    rng = np.random.default_rng(_check_seed(seed))
    for k, (label, z0) in enumerate(
        _local_starts(network, X, theta_tilde, free, rng, budget)
    ):
        candidate = _solve_local(network, X, y, theta_tilde, radius, free, z0)
        search = f"find_local_improvement(seed={seed}): SLSQP from start {k} ({label})"
        found = _accept(
            network, X, y, theta_tilde, candidate, radius, layer, min_relative_gap
        )
        log.debug("local start %d (%s): %s", k, label, "witness" if found else "no")
        if found is not None:
            return Witness(network, X, y, *found, search, radius, layer)
    return None


def find_global_improvement(
    network: Network,
    X: ArrayLike,
    y: ArrayLike,
    theta_tilde: ArrayLike,
    *,
    seed: int = 0,
    starts: int = 24,
    layer: int | None = None,
    exact: bool = True,
    min_relative_gap: float = MIN_RELATIVE_GAP,
) -> Witness | None:
    """The best verified feasible point with a smaller norm than theta~ that the
    search meets, at any distance, or None (see the module).

    `starts` local solves from points drawn with `seed`; `layer=l` moves u^(l)
    alone. With `exact` (and `layer` None), a depth-2 ReLU N_no-share network
    first gets the exact global optimum of `invariants.certify.exact`; when that
    point verifies, it is returned without the local solves, which cannot beat it
    by more than its certified gap.
    """
    X, y, theta_tilde, free = _check_search(
        network, X, y, theta_tilde, layer, min_relative_gap
    )
    starts = _check_count(starts, "starts")
    if not isinstance(exact, bool):
        raise TypeError(f"exact must be True or False, got exact={exact!r}")
    rng = np.random.default_rng(_check_seed(seed))
    best, label = None, ""

    def offer(candidate, source):
        nonlocal best, label
        found = _accept(
            network, X, y, theta_tilde, candidate, None, layer, min_relative_gap
        )
        if found is not None and (best is None or found[2] > best[2]):
            best, label = found, source

    # 1. The exact optimum, where it can be computed.
    depth2 = network.depth == 2 and network.is_no_share
    if exact and layer is None and depth2 and network.activation == "relu":
        from invariants.certify.exact import global_optimum
        from invariants.certify.record import CertificateError

        try:
            optimum = global_optimum(network, X, y)
        except (ValueError, CertificateError) as exc:
            log.debug("exact global optimum not used: %s", exc)
        else:
            offer(optimum.theta, "exact global optimum")
            if best is not None:
                # Within its certified gap of the optimum: no start can do better.
                starts = 0

    # 2. Local solves from far-away starts.
    for k in range(starts):
        kind = ("random", "re-signed", "perturbed")[k % 3]
        x0 = _global_start(network, theta_tilde, free, rng, kind)
        offer(_solve_global(network, X, y, theta_tilde, free, x0), f"{kind} start {k}")
    if best is None:
        return None
    search = f"find_global_improvement(seed={seed}): {label}"
    return Witness(network, X, y, *best, search, None, layer)


# -- local solves ----------------------------------------------------------------------


class _Margins:
    """q(theta) - 1 and its Jacobian on the free parameters, theta = offset +
    embedding of x; both from one backpropagation, kept for the last x because
    SLSQP asks for the values and the Jacobian at the same point."""

    def __init__(self, network, X, y, theta_tilde, free, step=1.0) -> None:
        self.network, self.X, self.y = network, X, y
        self.theta_tilde, self.free, self.step = theta_tilde, free, step
        self._key, self._value = None, None

    def point(self, x) -> np.ndarray:
        theta = self.theta_tilde.copy()
        theta[self.free] += self.step * x
        return theta

    def _at(self, x):
        key = x.tobytes()
        if key != self._key:
            q, J = self.network.unchecked_margin_jacobian(self.point(x), self.X, self.y)
            self._key, self._value = key, (q - 1.0, J[:, self.free])
        return self._value

    def values(self, x) -> np.ndarray:
        return self._at(x)[0]

    def jacobian(self, x) -> np.ndarray:
        return self._at(x)[1]


def _solve_local(network, X, y, theta_tilde, radius, free, z0) -> np.ndarray:
    """SLSQP on the displacement z = (theta - theta~) / radius (see the module):
    objective (||theta||^2 - ||theta~||^2) / radius, margins (q - 1) / radius."""
    base, r = theta_tilde[free], radius
    m = _Margins(network, X, y, theta_tilde, free, step=r)
    constraints = [
        {"type": "ineq", "fun": lambda z: m.values(z) / r, "jac": m.jacobian},
        {
            "type": "ineq",
            "fun": lambda z: RHO**2 - z @ z,
            "jac": lambda z: -2 * z[None],
        },
    ]
    # ftol below rounding: the gain sought is ~radius^2 relative, so the solver
    # stops on its line search or iteration limit, not on a coarse tolerance.
    z = _slsqp(
        lambda z: 2.0 * base @ z + r * (z @ z),
        lambda z: 2.0 * base + 2.0 * r * z,
        z0,
        constraints,
        ftol=1e-16,
        maxiter=LOCAL_ITERATIONS,
    )
    return m.point(z)


def _solve_global(network, X, y, theta_tilde, free, x0) -> np.ndarray:
    """SLSQP on the free parameters (as a displacement from theta~), objective
    ||theta||^2 / ||theta~||^2, margins q - 1."""
    scale = float(theta_tilde @ theta_tilde)
    base = theta_tilde[free]
    m = _Margins(network, X, y, theta_tilde, free)
    constraints = [{"type": "ineq", "fun": m.values, "jac": m.jacobian}]
    # Global gains are a fixed fraction of the norm: a relative 1e-12 is plenty.
    d = _slsqp(
        lambda d: (scale + 2.0 * base @ d + d @ d) / scale,
        lambda d: 2.0 * (base + d) / scale,
        x0 - base,
        constraints,
        ftol=1e-12,
        maxiter=GLOBAL_ITERATIONS,
    )
    return m.point(d)


def _slsqp(fun, jac, x0, constraints, *, ftol, maxiter) -> np.ndarray:
    # The solver's warnings (iteration limit, ill-conditioning) are expected on
    # kinks; its point is judged by the exact verifier, never by its status.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        result = minimize(
            fun,
            x0,
            jac=jac,
            constraints=constraints,
            method="SLSQP",
            options={"maxiter": maxiter, "ftol": ftol},
        )
    return np.asarray(result.x, dtype=float)


def _accept(network, X, y, theta_tilde, candidate, radius, layer, min_gap):
    """(theta', theta~, exact gap) if candidate, made exactly feasible, verifies."""
    if not np.all(np.isfinite(candidate)):
        return None
    # Floats only ever reject here; acceptance is the exact verifier's alone.
    if not np.min(network.margins(candidate, X, y)) > 0:
        return None
    try:
        point = exactly_feasible(network, X, y, candidate, layer=layer)
    except ValueError:
        return None
    if not point @ point < theta_tilde @ theta_tilde:
        return None
    report = verify_witness(
        network, X, y, theta_tilde, point, radius=radius, layer=layer
    )
    if not (report["verified"] and report["relative_gap"] > min_gap):
        return None
    return point, theta_tilde, report["norm_gap"]


# -- starting points -------------------------------------------------------------------


def _local_starts(network, X, theta_tilde, free, rng, budget):
    """(label, z0) for each local attempt, ||z0|| <= RHO (see the module)."""
    basis = _structured_basis(network, X, theta_tilde, free)
    patterns = (
        itertools.cycle(itertools.product((1.0, -1.0), repeat=len(basis)))
        if 0 < len(basis) <= 4
        else None
    )
    n = len(free)
    for k in range(budget):
        scale = RHO * LOCAL_SCALES[(k // 2) % len(LOCAL_SCALES)]
        noise = rng.normal(size=n)
        noise /= np.linalg.norm(noise)
        if basis and k % 2 == 0:
            signs = (
                next(patterns)
                if patterns is not None
                else rng.choice((1.0, -1.0), size=len(basis))
            )
            d = sum(s * b for s, b in zip(signs, basis))
            size = float(np.linalg.norm(d))
            d = (d / size if size > 0 else 0.0) + STRUCTURED_NOISE * noise
            label = f"sign pattern {''.join('+' if s > 0 else '-' for s in signs)}"
        else:
            d, label = noise, "Gaussian"
        yield f"{label}, scale {scale:.3g}", scale * d / np.linalg.norm(d)


def _structured_basis(network, X, theta_tilde, free) -> list[np.ndarray]:
    """Unit directions (in the free coordinates) that move a zero input to a neuron
    off zero, and the weights of neurons that are zero at theta~."""
    out = []

    def add(v):
        v = np.asarray(v, dtype=float)[free]
        size = float(np.linalg.norm(v))
        if size > 0 and not any(np.allclose(v / size, b) for b in out):
            out.append(v / size)

    kinks = zero_inputs(network, theta_tilde, X)
    if kinks:
        for g in network.preactivation_gradients(theta_tilde, X, kinks)[1]:
            add(g)
    tol = 1e-6 * float(np.linalg.norm(theta_tilde))
    for l in range(1, network.depth):
        P_in, P_out = network.index_maps[l - 1], network.index_maps[l]
        start_in = network.layer_slices[l - 1].start
        start_out = network.layer_slices[l].start
        for a in range(P_in.shape[0]):
            into = start_in + np.unique(P_in[a][P_in[a] >= 0])
            out_of = start_out + np.unique(P_out[:, a][P_out[:, a] >= 0])
            for idx, is_input in ((out_of, False), (into, True)):
                # ReLU neurons' incoming directions are already the kinks' gradients.
                if is_input and network.activation == "relu":
                    continue
                if idx.size and np.all(np.abs(theta_tilde[idx]) <= tol):
                    e = np.zeros(network.num_parameters)
                    e[idx] = 1.0
                    add(e)
    return out


def _global_start(network, theta_tilde, free, rng, kind) -> np.ndarray:
    """A far-away start on the free parameters: Gaussian of theta~'s size, theta~
    with random neurons' weights negated, or theta~ heavily perturbed."""
    base = theta_tilde[free]
    size = float(np.linalg.norm(base)) / math.sqrt(len(free))
    if kind == "random":
        return rng.normal(size=len(free)) * size
    if kind == "perturbed":
        return base + 0.5 * size * rng.normal(size=len(free))
    theta = theta_tilde.copy()
    for l, P in enumerate(network.index_maps, start=1):
        start = network.layer_slices[l - 1].start
        for row in P:
            if rng.random() < 0.5:
                theta[start + np.unique(row[row >= 0])] *= -1.0
    return theta[free] + 0.1 * size * rng.normal(size=len(free))


# -- argument checks -------------------------------------------------------------------


def _check_search(network, X, y, theta_tilde, layer, min_gap):
    if not isinstance(network, Network):
        raise TypeError(f"network must be an invariants Network, got {network!r}")
    X, y = check_dataset(X, y, network.input_dim)
    theta_tilde = check_theta(theta_tilde, network.num_parameters, "theta_tilde")
    if not np.any(theta_tilde):
        raise ValueError("theta_tilde = 0: no point is shorter, there is no witness")
    q_min = float(np.min(network.margins(theta_tilde, X, y)))
    # A limit rescaled in floating point sits within a few ulps of margin 1.
    if not q_min >= 1.0 - FEASIBILITY_SLACK:
        raise ValueError(
            f"theta_tilde is not feasible for Problem 2: smallest margin {q_min!r} "
            "< 1; pass the limit rescaled by invariants.kkt.rescale"
        )
    check_tolerance(min_gap, "min_relative_gap", high=1.0, allow_zero=True)
    indices = np.arange(network.num_parameters)
    if layer is not None:
        indices = indices[network.layer_slices[check_layer(layer, network.depth) - 1]]
    return X, y, theta_tilde, indices


def _check_seed(seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be an integer >= 0, got seed={seed!r}")
    if seed < 0:
        raise ValueError(f"seed must be an integer >= 0, got seed={seed!r}")
    return int(seed)


def _check_count(value, name) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer >= 1, got {name}={value!r}")
    if value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {name}={value!r}")
    return int(value)
