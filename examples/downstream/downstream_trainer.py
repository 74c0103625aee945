"""A toy trainer: clipped gradient descent on a network of the class N.

Written as another lab would: plain numpy for the loss and its gradient, and the
network (forward pass and margin Jacobian) from `invariants.networks`.

`train` takes the network as data (index maps and activation), the dataset, theta0,
the loss and a number of steps, and returns every iterate, so any checker of
`invariants` (balance, KKT, ...) can judge the path. `gate` is the same trainer behind
the conformance protocol, for this project's CI:

    pytest --pyargs invariants.conformance --trainer=downstream_trainer:gate
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike

from invariants.networks import from_index_maps
from invariants.trainer import TrainingProblem, declare

__all__ = ["GATE_STEPS", "LEARNING_RATE", "LOSSES", "gate", "loss_gradient", "train"]

LOSSES = ("exponential", "logistic")
LEARNING_RATE = 1e-2
GATE_STEPS = 300


def loss_gradient(q: np.ndarray, loss: str) -> np.ndarray:
    """dL/dq_i for L = sum_i l(q_i): -exp(-q) or -1 / (1 + exp(q))."""
    if loss == "exponential":
        return -np.exp(-q)
    if loss == "logistic":
        # -sigmoid(-q), in a form that overflows for neither sign of q.
        return -np.exp(-np.logaddexp(0.0, q))
    raise ValueError(f"loss={loss!r} must be one of {LOSSES}")


def train(
    index_maps: Sequence[ArrayLike],
    activation: str,
    X: ArrayLike,
    y: ArrayLike,
    theta0: ArrayLike,
    loss: str = "exponential",
    steps: int = 100,
    *,
    lr: float = 1e-2,
) -> list[np.ndarray]:
    """Gradient descent theta_(k+1) = theta_k - eta_k grad L(theta_k), k < steps.

    eta_k = lr / max(1, ||grad L(theta_k)||): no step moves theta by more than lr,
    so a random start with large margins (huge gradients) cannot diverge. Returns
    the steps + 1 iterates theta_0, ..., theta_steps.
    """
    if not (isinstance(steps, int) and steps >= 0):
        raise ValueError(f"steps={steps!r} must be an integer >= 0")
    if not lr > 0:
        raise ValueError(f"lr={lr!r} must be positive")
    network = from_index_maps(index_maps, activation)
    X = np.asarray(X, dtype=float)
    y = np.asarray(y, dtype=float)
    theta = np.array(theta0, dtype=float)
    path = [theta.copy()]
    for _ in range(steps):
        q, J = network.margin_jacobian(theta, X, y)
        grad = loss_gradient(q, loss) @ J
        theta = theta - lr / max(1.0, float(np.linalg.norm(grad))) * grad
        path.append(theta.copy())
    return path


# The step is clipped (eta_k = lr / max(1, ||grad L||)), so it claims an adaptive
# step no larger than lr, not a fixed one.
@declare(method="gradient_descent", step_size=LEARNING_RATE, fixed_step=False)
def gate(problem: TrainingProblem) -> list[np.ndarray]:
    """`train` under the conformance protocol: every iterate of GATE_STEPS steps.

    It claims gradient descent with a clipped step, not a converged direction, so
    the conformance suite checks that every step is -eta_k grad L with
    0 < eta_k <= lr, balancedness (against the bound its own steps imply) and loss
    decrease, and says why it skips the limit's KKT point and certificate.
    """
    steps = min(GATE_STEPS, problem.budget.max_steps)
    return train(
        problem.index_maps,
        problem.activation,
        problem.X,
        problem.y,
        problem.theta0,
        problem.loss,
        steps,
        lr=LEARNING_RATE,
    )
