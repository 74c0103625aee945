"""KKT points of the max-margin problem in parameter space (Problem 2).

Problem 2: min 1/2 ||theta||^2 s.t. q_i(theta) = y_i Phi(theta; x_i) >= 1. A feasible
theta~ is a KKT point when theta~ = sum_i lambda_i g_i with lambda_i >= 0, lambda_i = 0
off the active set {i : q_i = 1}, and g_i in the Clarke subdifferential of q_i.

Where every input to a neuron is non-zero, g_i is the gradient. Where an input is
zero, ReLU' may take any value in [0, 1] there, and q_i's generalised gradients are
the backpropagated gradients over all such choices. They are multilinear in the
choices (one factor per layer), so their convex hull is spanned by the choices at the
corners {0, 1}^K; and lambda_i times a point of that hull is a non-negative
combination of the corner gradients. The KKT conditions therefore become one
non-negative least-squares problem,

    min_{mu >= 0} || theta~ - sum_i sum_corners mu_(i,c) g_i^c ||,

and lambda_i = sum_c mu_(i,c). Its optimal value, relative to ||theta~||, is the KKT
residual: zero exactly at KKT points, for whatever intermediate slopes they need.

The corner hull is the chain-rule enclosure of the Clarke subdifferential: equal to
it at depth 2 (each kink belongs to its own neuron's weights, which move freely), and
possibly larger from depth 3 on, where kinks of one sample in successive layers can
be tied. Marked here, and in the README's known issues: the residual can then pass a
point that is KKT only for the enclosure.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from scipy.optimize import nnls

from invariants.activation import ZERO_INPUT_TOL, zero_inputs
from invariants.ldp import check_nnls
from invariants.networks import Network
from invariants.validation import check_dataset, check_theta, check_tolerance

__all__ = [
    "ACTIVE_TOL",
    "KKT_TOL",
    "MAX_KINKS_PER_SAMPLE",
    "KKTPoint",
    "assert_kkt",
    "kkt_point",
    "kkt_residual",
    "rescale",
]

# A margin of theta~ counts as active when it is within this of 1. Inactive margins
# of a GF limit stay a fixed distance above 1, while the simulator's direction error
# at ||theta|| ~ 1e8 is far below 1e-6.
ACTIVE_TOL = 1e-6
# Smallest margin, relative to the bound on the outputs, whose sign is trusted: a few
# hundred ulps, the rounding of a forward pass through a handful of layers.
ROUNDING_MARGIN = 256 * np.finfo(float).eps
# Largest relative KKT residual of a point that passes. The same margin against the
# simulator's accuracy: a limit read at ||theta|| ~ 1e8 has residual ~1e-8 or less.
KKT_TOL = 1e-6
# Corners per sample grow as 2^K with K the zero inputs that matter for the sample;
# beyond this the checker refuses rather than build millions of columns.
MAX_KINKS_PER_SAMPLE = 12


def rescale(
    network: Network, X: ArrayLike, y: ArrayLike, theta: ArrayLike
) -> np.ndarray:
    """theta~ = theta / q_min^(1/m): the point on theta's ray whose smallest margin is
    1 (up to rounding: a few ulps either way). Every network here is m-homogeneous,
    so this is the feasible point of Problem 2 in theta's direction with the
    smallest norm."""
    X, y = check_dataset(X, y, network.input_dim)
    theta = check_theta(theta, network.num_parameters)
    # Only the direction matters; dividing by the largest entry first keeps the
    # margins of a far GF iterate (||theta|| up to 1e308) or a tiny one finite.
    largest = float(np.max(np.abs(theta)))
    if largest == 0:
        raise ValueError("theta = 0 has no direction to rescale")
    theta = theta / largest
    q = network.margins(theta, X, y)
    q_min = float(np.min(q))
    if not q_min > 0:
        raise ValueError(
            f"theta does not separate the data: smallest margin {q_min!r} (sample "
            f"{int(np.argmin(q))}); only points with every margin > 0 can be rescaled "
            "onto the feasible set of Problem 2"
        )
    # A bound on every output: a smallest margin within rounding of it has a sign
    # that rounding chose (a subnormal input, or a neuron a hair from its kink).
    scale = float(np.max(np.linalg.norm(X, axis=1))) * math.prod(
        float(np.linalg.norm(W)) for W in network.weight_matrices(theta)
    )
    if not q_min > ROUNDING_MARGIN * scale:
        raise ValueError(
            f"theta does not separate the data beyond rounding: smallest margin "
            f"{q_min:.3g} (sample {int(np.argmin(q))}) against outputs of size up to "
            f"{scale:.3g}; its sign is not meaningful in double precision"
        )
    return theta / q_min ** (1.0 / network.depth)


@dataclass(frozen=True)
class KKTPoint:
    """The KKT conditions of Problem 2 measured at theta~.

    `multipliers` has one entry per sample (0 off the active set). `slopes` gives,
    for each zero input (layer, sample, neuron) of an active sample, the ReLU' value
    the multipliers use there (the mu-weighted mean over corners). `residual` is
    ||theta~ - sum_i lambda_i g_i|| / ||theta~||.
    """

    theta_tilde: np.ndarray
    margins: np.ndarray
    active_set: tuple[int, ...]
    multipliers: np.ndarray
    residual: float
    slopes: dict
    corners: int
    active_tol: float
    zero_tol: float

    def to_json(self) -> dict:
        return {
            "kkt_residual": self.residual,
            "active_set": list(self.active_set),
            "multipliers": self.multipliers.tolist(),
            "clarke_slopes": [
                # A kink of a sample with multiplier 0 uses no slope: null.
                {
                    "layer": l,
                    "sample": i,
                    "neuron": a,
                    "slope": s if math.isfinite(s) else None,
                }
                for (l, i, a), s in sorted(self.slopes.items())
            ],
            "corners": self.corners,
            "active_tol": self.active_tol,
            "zero_tol": self.zero_tol,
        }


def kkt_point(
    network: Network,
    X: ArrayLike,
    y: ArrayLike,
    theta: ArrayLike,
    *,
    active_tol: float = ACTIVE_TOL,
    zero_tol: float = ZERO_INPUT_TOL,
) -> KKTPoint:
    """Rescale theta onto Problem 2's feasible set and fit KKT multipliers to it.

    theta may be any point with every margin positive (a GF iterate, a trainer's
    checkpoint); only its direction matters."""
    active_tol = check_tolerance(active_tol, "active_tol", high=0.5, allow_zero=True)
    zero_tol = check_tolerance(zero_tol, "zero_tol", high=0.5, allow_zero=True)
    X, y = check_dataset(X, y, network.input_dim)
    theta_t = rescale(network, X, y, theta)
    q = network.margins(theta_t, X, y)
    active = tuple(int(i) for i in np.flatnonzero(q <= 1.0 + active_tol))

    # 1. The generalised gradients: one column per active sample and corner.
    kinks = _relevant_kinks(network, theta_t, X, zero_tol)
    columns, owners, corners = [], [], []
    for i in active:
        own = [k for k in kinks if k[1] == i]
        if len(own) > MAX_KINKS_PER_SAMPLE:
            raise ValueError(
                f"sample {i} has {len(own)} zero inputs to neurons that carry "
                f"gradient; the Clarke hull needs 2^{len(own)} corners, more than "
                f"the limit 2^{MAX_KINKS_PER_SAMPLE} (MAX_KINKS_PER_SAMPLE)"
            )
        for corner in itertools.product((0.0, 1.0), repeat=len(own)):
            slopes = {(l, 0, a): s for (l, _, a), s in zip(own, corner)}
            _, g = network.unchecked_margin_jacobian(
                theta_t, X[i : i + 1], y[i : i + 1], slopes or None
            )
            columns.append(g[0])
            owners.append(i)
            corners.append(dict(zip(own, corner)))
    C = np.array(columns).T

    # 2. Non-negative least squares on unit columns (their sizes differ by the
    # data's scale), then the residual recomputed from the weights it returned.
    # The residual is a verdict only at the best weights: a suboptimal answer
    # would call a KKT point non-KKT, so NNLS's own optimality is re-checked.
    norms = np.linalg.norm(C, axis=0)
    usable = norms > 0
    mu = np.zeros(C.shape[1])
    if np.any(usable):
        unit = C[:, usable] / norms[usable]
        mu[usable] = nnls(unit, theta_t, maxiter=None)[0]
        check_nnls(unit, theta_t, mu[usable], "KKT multipliers' NNLS")
        mu[usable] /= norms[usable]
    size = float(np.linalg.norm(theta_t))
    residual = float(np.linalg.norm(theta_t - C @ mu)) / size

    # 3. Multipliers per sample, and the slope each zero input effectively gets.
    lam = np.zeros(len(y))
    np.add.at(lam, owners, mu)
    weighted: dict = {}
    for w, owner_corner in zip(mu, corners):
        for k, s in owner_corner.items():
            weighted[k] = weighted.get(k, 0.0) + w * s
    slopes = {
        k: (v / lam[k[1]] if lam[k[1]] > 0 else math.nan) for k, v in weighted.items()
    }
    return KKTPoint(
        theta_tilde=theta_t,
        margins=q,
        active_set=active,
        multipliers=lam,
        residual=residual,
        slopes=slopes,
        corners=len(columns),
        active_tol=float(active_tol),
        zero_tol=float(zero_tol),
    )


def _relevant_kinks(network: Network, theta: np.ndarray, X, zero_tol: float):
    """Zero inputs whose slope can change a gradient: the neuron must pass gradient
    on, i.e. its outgoing weights must not all be zero (relative to their layer)."""
    kinks = zero_inputs(network, theta, X, tol=zero_tol)
    if not kinks:
        return []
    Ws = network.weight_matrices(theta)
    carries = [
        np.linalg.norm(Ws[l], axis=0) > zero_tol * np.linalg.norm(Ws[l])
        for l in range(1, network.depth)
    ]
    return [(l, i, a) for (l, i, a) in kinks if carries[l - 1][a]]


def kkt_residual(
    network: Network, X: ArrayLike, y: ArrayLike, theta: ArrayLike, **options
) -> float:
    """||theta~ - sum_i lambda_i g_i|| / ||theta~|| at the best multipliers; see
    `kkt_point`."""
    return kkt_point(network, X, y, theta, **options).residual


def assert_kkt(
    network: Network,
    X: ArrayLike,
    y: ArrayLike,
    theta: ArrayLike,
    *,
    tol: float = KKT_TOL,
    context: str = "",
    **options,
) -> KKTPoint:
    """Raise AssertionError unless theta's direction is a KKT point of Problem 2."""
    tol = check_tolerance(tol, "tol", high=1.0)
    point = kkt_point(network, X, y, theta, **options)
    if not point.residual <= tol:
        where = f" [{context}]" if context else ""
        raise AssertionError(
            f"kkt_residual = {point.residual:.3e}, should be <= {tol:.0e}: theta's "
            f"direction is not a KKT point of Problem 2 (active set "
            f"{list(point.active_set)}, multipliers "
            f"{np.array2string(point.multipliers, precision=6)}, "
            f"{network.describe()}){where}"
        )
    return point
