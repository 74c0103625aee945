"""Theorem 2.1: GF past the loss threshold converges in direction to a KKT point of
Problem 2, for every family in N, both losses, linear and ReLU, any depth.

The simulator follows each generated flow until its direction stops moving
(direction_tol), then the KKT checker, which shares no code with the simulator's
field beyond the network's Jacobian, fits multipliers to the limit.
"""

import numpy as np
import pytest
from hypothesis import event, given, note, target
from limits import limit_of

from invariants.kkt import KKT_TOL, assert_kkt, kkt_point
from strategies import architectures, training_cases


@given(training_cases(networks=architectures(max_depth=3, max_width=3)))
def test_the_limit_of_gradient_flow_is_a_kkt_point(case):
    note(repr(case))
    net = case.network
    event(f"{net.family} {net.activation} depth {net.depth}")
    traj = limit_of(case)
    point = assert_kkt(net, case.X, case.y, traj.theta_tilde, tol=KKT_TOL)
    note(f"kkt_residual {point.residual:.3e}, log||theta|| {traj.log_norm:.1f}")
    target(point.residual, label="kkt_residual")
    if point.slopes:
        event("limit has a zero input to a neuron")

    # The same limit with its first layer scaled off balance keeps every margin and
    # is no KKT point: the checker must say so.
    broken = traj.theta_tilde.copy()
    broken[net.layer_slices[0]] *= 1.2
    broken[net.layer_slices[1]] /= 1.2
    with pytest.raises(AssertionError, match="kkt_residual"):
        assert_kkt(net, case.X, case.y, broken, tol=KKT_TOL)


def test_a_limit_read_too_early_is_caught():
    """At ||theta|| = 1e8 a slowly converging flow is still 0.16 away from its
    limit direction; the checker must not pass it as a KKT point."""
    from invariants.networks import convolutional

    net = convolutional(3, 2, 1, "linear")
    X, y = np.array([[1.0, 0.0, 0.9]]), np.array([1.0])
    theta0 = np.array([0.6, 0.8, 0.7, 0.5])
    from invariants.flow import gradient_flow

    early = gradient_flow(net, X, y, theta0, target_norm=1e8)
    assert kkt_point(net, X, y, early.theta_tilde).residual > 1e-2
    late = gradient_flow(
        net, X, y, theta0, direction_tol=1e-10, max_evaluations=100_000
    )
    assert_kkt(net, X, y, late.theta_tilde)
