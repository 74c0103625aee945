"""Reference trainers for the conformance mode (`pytest --pyargs
invariants.conformance`).

Importable as ``trainers:<name>`` when tests/ is on sys.path, as in the suite's own
subprocess runs (tests/test_conformance.py):

- `ours`: the library's simulator, the exact flow followed until its direction has
  converged. Must pass every property.
- `gd`: plain gradient descent with a small fixed step, every iterate returned. Must
  pass balance (within its step's bound) and loss decrease; claims no converged
  direction, so the limit properties are skipped with a reason. It declines cases
  whose loss starts above the threshold of Theorem 2.1, where a fixed step can
  diverge (a property of GD, not a bug).
- `faulty`: the same descent with a classic bug: the gradient of a shared weight
  is taken from one of its uses (the last one written wins) instead of summed over
  all of them. Identical to `gd` on networks without sharing; on a convolutional or
  weight-sharing network it breaks Lemma C.2, and the suite must say so.
- `wrong_loss` (the other loss's derivative), `ten_times_the_step` (steps 10 x the
  declared step_size): balance and loss decrease hold, the update property fails.
  `clipped`: adaptive steps declared with ``fixed_step=False``; passes.
- `nan_trainer`, `wrong_shape`, `not_an_array`, `empty`, `ignores_theta0`: trainers
  whose output is malformed, for the validation messages.
"""

from __future__ import annotations

import numpy as np

from invariants.flow import FlowError, StationaryPointError, gradient_flow
from invariants.losses import log_loss, log_loss_threshold, log_neg_derivative
from invariants.networks import Network, from_index_maps
from invariants.trainer import Unsupported, declare

GD_STEP = 0.01
GD_STEPS = 400
# The suite's own convergence threshold (tests/limits.py): a converged flow's KKT
# residual is about this rate.
DIRECTION_TOL = 1e-9


@declare(method="gradient_flow", direction_tol=DIRECTION_TOL)
def ours(problem):
    try:
        traj = gradient_flow(
            problem.network,
            problem.X,
            problem.y,
            problem.theta0,
            problem.loss,
            target_norm=problem.budget.target_norm,
            direction_tol=DIRECTION_TOL,
            max_evaluations=60_000,
        )
    except (StationaryPointError, FlowError) as exc:
        # The simulator's refusals (no fit, a flow too slow to follow) are honest
        # declines, not wrong answers.
        raise Unsupported(str(exc)) from exc
    return {"thetas": traj.thetas}


def _descend(
    problem,
    margin_jacobian,
    steps: int = GD_STEPS,
    theta0=None,
    *,
    loss=None,
    step=GD_STEP,
):
    q0 = problem.network.margins(problem.theta0, problem.X, problem.y)
    if log_loss(q0, problem.loss) >= log_loss_threshold(problem.loss):
        # A fixed step is a descent step only where eta < 2 / (local smoothness);
        # far above the threshold of Theorem 2.1 (a wrong-side start, e^{-q} ~ 100)
        # eta = 0.01 overshoots and diverges. Past it, GD's own results apply.
        raise Unsupported("plain GD starts only past the loss threshold")
    theta = np.array(problem.theta0 if theta0 is None else theta0, dtype=float)
    saved = [theta.copy()]
    for _ in range(min(steps, problem.budget.max_steps)):
        q, J = margin_jacobian(theta)
        # -grad L = sum_i -l'(q_i) grad q_i; -l' from its log, which cannot overflow.
        weights = np.exp(log_neg_derivative(q, loss or problem.loss))
        theta = theta + step * (weights @ J)
        saved.append(theta.copy())
        if np.linalg.norm(theta) >= problem.budget.target_norm:
            break
    return np.array(saved)


@declare(method="gradient_descent", step_size=GD_STEP)
def gd(problem):
    net, X, y = problem.network, problem.X, problem.y
    return _descend(problem, lambda theta: net.margin_jacobian(theta, X, y))


OTHER_LOSS = {"exponential": "logistic", "logistic": "exponential"}


@declare(method="gradient_descent", step_size=GD_STEP)
def wrong_loss(problem):
    """The other loss's derivative: the bug balance and loss decrease cannot see."""
    return _descend(problem, _exact(problem), loss=OTHER_LOSS[problem.loss])


@declare(method="gradient_descent", step_size=GD_STEP)
def ten_times_the_step(problem):
    return _descend(problem, _exact(problem), steps=40, step=10 * GD_STEP)


@declare(method="gradient_descent", step_size=GD_STEP, fixed_step=False)
def clipped(problem):
    """Steps of length at most GD_STEP: eta_k = GD_STEP / max(1, ||grad L||)."""
    net, X, y = problem.network, problem.X, problem.y
    theta = problem.theta0.copy()
    saved = [theta]
    for _ in range(50):
        q, J = net.margin_jacobian(theta, X, y)
        grad = -np.exp(log_neg_derivative(q, problem.loss)) @ J
        theta = theta - GD_STEP / max(1.0, float(np.linalg.norm(grad))) * grad
        saved.append(theta)
    return saved


def _unshared(network: Network):
    """The same network with every use of a weight given its own parameter, and
    for each layer the shared index each use reads."""
    maps, targets = [], []
    for P in network.index_maps:
        uses = np.flatnonzero(P.ravel() >= 0)
        U = np.full(P.shape, -1)
        U.ravel()[uses] = np.arange(len(uses))
        maps.append(U)
        targets.append(P.ravel()[uses])
    return from_index_maps(maps, network.activation), targets


@declare(method="gradient_descent", step_size=GD_STEP)
def faulty(problem):
    net, X, y = problem.network, problem.X, problem.y
    unshared, targets = _unshared(net)
    offsets = np.cumsum([0, *net.layer_sizes])
    use_offsets = np.cumsum([0, *(len(t) for t in targets)])

    def margin_jacobian(theta):
        per_use = np.concatenate(
            [theta[offsets[l] : offsets[l + 1]][t] for l, t in enumerate(targets)]
        )
        q, J_uses = unshared.margin_jacobian(per_use, X, y)
        J = np.zeros((len(y), net.num_parameters))
        for l, t in enumerate(targets):
            # The bug: assignment, not np.add.at, so the last use overwrites the rest.
            J[:, offsets[l] + t] = J_uses[:, use_offsets[l] : use_offsets[l + 1]]
        return q, J

    return _descend(problem, margin_jacobian)


# -- malformed output ------------------------------------------------------------------


@declare(method="gradient_descent", step_size=GD_STEP)
def nan_trainer(problem):
    thetas = _descend(problem, _exact(problem), steps=5)
    thetas[-1, 0] = np.nan
    return thetas


@declare(method="gradient_descent", step_size=GD_STEP)
def wrong_shape(problem):
    return _descend(problem, _exact(problem), steps=5)[:, :-1]


@declare(method="gradient_descent", step_size=GD_STEP)
def not_an_array(problem):
    return "thetas"


@declare(method="gradient_descent", step_size=GD_STEP)
def empty(problem):
    return []


@declare(method="gradient_descent", step_size=GD_STEP)
def ignores_theta0(problem):
    start = np.ones_like(problem.theta0)
    return _descend(problem, _exact(problem), steps=5, theta0=start)


def _exact(problem):
    net, X, y = problem.network, problem.X, problem.y
    return lambda theta: net.margin_jacobian(theta, X, y)


not_callable = 42


def undeclared(problem):
    return [problem.theta0, problem.theta0]
