"""Certificates from least-distance problems: Theorems 3.1, 5.2 and 5.4.

Each reduces to min ||u|| s.t. A u >= 1 for a matrix A built from the data and the
limit, solved by NNLS (`invariants.ldp`, which normalises A's rows and re-checks the
KKT conditions of its answer). Two numbers are then recomputed here:

- primal: the solver's u, divided by min(A u) so that it is exactly feasible;
  ||u||^2 is an upper bound on the optimum;
- dual: for any lambda >= 0, weak duality with the best scaling of lambda gives
  ||u||^2 >= (sum lambda)^2 / ||A^T lambda||^2 for every feasible u; with the
  solver's multipliers (clipped at 0) that is the lower bound.

Theorem 3.1 (fully-connected linear, any depth m): the network's end-to-end vector
u = W^(m) ... W^(1) separates the data, ||u|| <= prod ||W^(l)||_F, and by the
AM-GM inequality sum ||W^(l)||_F^2 >= m prod ||W^(l)||_F^(2/m). So with A = y x^T
(the SVM without bias), the optimum of Problem 2 is m ||u*||^(2/m), bounded below by
m b^(2/m) for any dual bound b^2 on ||u*||^2.

Theorems 5.2 and 5.4 (one layer l, the others fixed at theta~): the margins are
linear in u^(l) for a linear network, and, for a ReLU network whose inputs to
neurons in layers l..m-1 are all non-zero, linear in u^(l) near u~^(l); A holds their
gradients. Problem 4 for layer l is then (locally) this least-distance problem.
"""

from __future__ import annotations

import math

import numpy as np

from invariants.activation import ZERO_INPUT_TOL, zero_inputs
from invariants.certify.record import (
    CERTIFICATE_TOL,
    Certificate,
    CertificateError,
    NotApplicableError,
)
from invariants.kkt import rescale
from invariants.ldp import InfeasibleError, SolverCheckError, least_distance
from invariants.networks import Network
from invariants.validation import check_dataset, check_layer

__all__ = ["certify_layer", "certify_theorem_3_1"]

SOLVER = "scipy.optimize.nnls (Lawson-Hanson least-distance), re-checked"
# Euler's identity a_i . u~ = q_i holds to rounding when the margins are linear in
# the layer; a larger mismatch means the layer's Jacobian is not what A assumes.
LINEARITY_TOL = 1e-9


def certify_theorem_3_1(
    network: Network, X, y, theta, *, tol: float = CERTIFICATE_TOL
) -> Certificate:
    """Global optimality of theta's direction for Problem 2, on a fully-connected
    linear network of any depth, against the hard-margin SVM without bias."""
    if not (network.is_fully_connected and network.is_linear):
        raise NotApplicableError(
            "Theorem 3.1 is about fully-connected linear networks; this is a "
            f"{network.describe()}"
        )
    X, y = check_dataset(X, y, network.input_dim)
    theta_t = rescale(network, X, y, theta)
    m = network.depth
    # The limit's end-to-end vector separates with margins >= 1: a feasible point
    # whose norm sets the scale of the solve.
    end_to_end = network.outputs(theta_t, np.eye(network.input_dim))
    u, upper, lower, residuals = _least_distance_bounds(
        y[:, None] * X, float(np.linalg.norm(end_to_end))
    )
    return Certificate(
        theorem="3.1",
        claim="global",
        problem=(
            "hard-margin SVM without bias, min ||u|| s.t. y_i u.x_i >= 1; "
            "Problem 2's optimum is m ||u*||^(2/m)"
        ),
        solver=SOLVER,
        primal=m * upper ** (1.0 / m),
        dual=m * lower ** (1.0 / m),
        limit_value=float(theta_t @ theta_t),
        tol=tol,
        residuals={**residuals, "svm_direction": (u / np.linalg.norm(u)).tolist()},
    )


def certify_layer(
    network: Network,
    X,
    y,
    theta,
    layer: int,
    *,
    tol: float = CERTIFICATE_TOL,
    zero_tol: float = ZERO_INPUT_TOL,
) -> Certificate:
    """Optimality of u~^(layer) for Problem 4, the other layers fixed at theta~.

    Theorem 5.2 (linear networks in N): global. Theorem 5.4 (ReLU networks in N):
    local, when every input to a neuron in layers `layer`..m-1 is non-zero; for the
    last layer Problem 4 is convex and the certificate is global."""
    m = network.depth
    layer = check_layer(layer, m)
    X, y = check_dataset(X, y, network.input_dim)
    theta_t = rescale(network, X, y, theta)
    if network.is_linear:
        theorem, claim = "5.2", "global"
    else:
        theorem = "5.4"
        claim = "global" if layer == m else "local"
        blocking = [
            k for k in zero_inputs(network, theta_t, X, tol=zero_tol) if k[0] >= layer
        ]
        if blocking:
            l, i, a = blocking[0]
            raise NotApplicableError(
                f"Theorem 5.4 for layer {layer} needs every input to a neuron in "
                f"layers {layer}..{m - 1} non-zero; the input to neuron {a} of layer "
                f"{l} on sample {i} is zero ({len(blocking)} such inputs)"
            )

    q, J = network.unchecked_margin_jacobian(theta_t, X, y)
    sl = network.layer_slices[layer - 1]
    A, u_t = J[:, sl], theta_t[sl]
    mismatch = float(np.max(np.abs(A @ u_t - q)) / np.max(np.abs(q)))
    if mismatch > LINEARITY_TOL:
        raise CertificateError(
            f"the margins are not linear in layer {layer} at theta~ (Euler's "
            f"identity off by {mismatch:.2e}); the layer's Jacobian is inconsistent"
        )
    _, upper, lower, residuals = _least_distance_bounds(A, float(np.linalg.norm(u_t)))
    return Certificate(
        theorem=theorem,
        claim=claim,
        problem=(
            f"Problem 4 for layer {layer}: min ||u^({layer})|| s.t. the margins, "
            f"{'locally ' if claim == 'local' else ''}linear in u^({layer}), are >= 1"
        ),
        solver=SOLVER,
        primal=upper,
        dual=lower,
        limit_value=float(u_t @ u_t),
        layer=layer,
        tol=tol,
        residuals={**residuals, "euler_identity": mismatch},
    )


def _least_distance_bounds(A: np.ndarray, feasible_norm: float):
    """Solve min ||u|| s.t. A u >= 1, given the norm of a point known to satisfy it,
    and return (u, verified upper bound on ||u*||^2, verified lower bound,
    residuals)."""
    # Rescaled so that the answer has norm <= 1 (see `least_distance`); the
    # answer's direction does not depend on the scale.
    scale = 1.0 / feasible_norm
    if not (feasible_norm > 0 and math.isfinite(scale)):
        raise CertificateError(f"no usable feasible point (norm {feasible_norm!r})")
    try:
        sol = least_distance(A / scale, np.ones(A.shape[0]))
    except InfeasibleError as exc:
        raise CertificateError(f"the least-distance problem is infeasible: {exc}")
    except SolverCheckError as exc:
        raise CertificateError(str(exc)) from None
    u, lam = sol.d / scale, np.clip(sol.multipliers, 0.0, None)
    smallest = float(np.min(A @ u))
    if not smallest > 0:
        raise CertificateError(
            f"the solver's point has margin {smallest!r} <= 0 after re-checking"
        )
    upper = float(u @ u) / smallest**2
    pulled = (A / scale).T @ lam
    if not (lam.sum() > 0 and float(pulled @ pulled) > 0):
        raise CertificateError("the solver's multipliers give no lower bound")
    lower = float(lam.sum()) ** 2 / float(pulled @ pulled) / scale**2
    residuals = dict(sol.residuals)
    residuals["smallest_margin_of_solution"] = smallest
    return u / smallest, upper, lower, residuals
