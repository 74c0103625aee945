"""GF limits for the theorem properties: simulate a generated case until its
direction has converged, and turn the simulator's refusals into counted rejections;
and points moved off a limit, for the checks that must fail."""

import numpy as np
from hypothesis import event, reject

from invariants.certify.conic import depth2_neurons
from invariants.flow import FlowError, StationaryPointError, simulate

# The direction's rate of change per unit of log||theta|| at which a flow counts as
# converged. The KKT residual of a sliding flow's point is about this rate (the
# sliding velocity is theta~ minus a non-negative combination of active gradients),
# so the checkers' 1e-6 tolerances leave a factor of 1000.
DIRECTION_TOL = 1e-9


def limit_of(case, max_evaluations: int = 60_000):
    """The simulated limit of `case` (a Trajectory), or a Hypothesis rejection with
    an event naming why there is none."""
    try:
        return simulate(
            case, direction_tol=DIRECTION_TOL, max_evaluations=max_evaluations
        )
    except StationaryPointError:
        event("GF never fits: stationary or falls into the origin")
        reject()
    except FlowError as exc:
        # Kink failures, budgets, and flows slower than max_log_norm are counted so a
        # change in how often they happen shows in --hypothesis-show-statistics.
        text = str(exc)
        why = next(
            (w for w in ("max_log_norm", "budget", "kink") if w in text), "other"
        )
        event(f"simulator gave up ({why})")
        reject()


def off_optimum(net, theta_tilde, X, y, layer, size):
    """theta~ with layer `layer` moved orthogonally to itself by `size` ||u~^(l)||,
    the other layers unchanged; None if the layer has one parameter or the move
    breaks separation.

    Problem 4's constraints (for a linear network, or a ReLU network whose pattern
    the move keeps) are then those at theta~, and the multipliers of u~ average the
    new margins to 1, so the smallest is <= 1 and ||u'||^2 / min margin^2 >=
    (1 + size^2) ||u~||^2: the relative excess is at least size^2 / (1 + size^2)."""
    sl = net.layer_slices[layer - 1]
    u = theta_tilde[sl]
    if u.size < 2:
        return None
    r = np.arange(1.0, u.size + 1) * (-1.0) ** np.arange(u.size)
    r -= (r @ u) / (u @ u) * u
    moved = theta_tilde.copy()
    moved[sl] = u + size * np.linalg.norm(u) * r / np.linalg.norm(r)
    if np.min(net.margins(moved, X, y)) <= 0:
        return None
    return moved


def off_balance(network, theta, factor=2.0):
    """theta with its largest neuron's w multiplied and v divided by `factor`: the
    same function, margins and activation pattern, a larger norm. Returns the point
    and the relative excess 1 - ||theta||^2 / ||theta'||^2 it must show over an
    optimal theta."""
    neurons = [n for n in depth2_neurons(network) if n.v_position >= 0]
    sizes = [
        abs(theta[n.v_position]) * np.linalg.norm(theta[n.w_positions]) for n in neurons
    ]
    n = neurons[int(np.argmax(sizes))]
    moved = np.array(theta, dtype=float)
    moved[n.w_positions] *= factor
    moved[n.v_position] /= factor
    return moved, 1.0 - float(theta @ theta) / float(moved @ moved)
