"""Theorem 3.1: on fully-connected linear networks of any depth, GF converges to a
global optimum of Problem 2, whose value is m ||u*||^(2/m) with u* the hard-margin
SVM without bias."""

import cvxpy as cp
import numpy as np
import pytest
from hypothesis import event, given, note, target
from hypothesis import strategies as st
from limits import limit_of

from invariants.certify.linear import certify_theorem_3_1
from invariants.certify.record import NotApplicableError, assert_certified
from invariants.networks import fully_connected
from strategies import fully_connected_networks, training_cases

linear_fc_cases = training_cases(
    networks=fully_connected_networks(
        max_depth=4, max_width=3, activations=st.just("linear")
    )
)


@given(linear_fc_cases)
def test_gradient_flow_reaches_the_global_optimum(case):
    note(repr(case))
    event(f"depth {case.network.depth}")
    traj = limit_of(case)
    cert = certify_theorem_3_1(case.network, case.X, case.y, traj.theta_tilde)
    note(cert.summary())
    target(cert.excess, label="excess")
    target(cert.gap, label="gap")
    assert_certified(cert, context=repr(case))
    assert cert.gap <= 1e-9


def svm(X, y):
    """u* and ||u*||^2 of the hard-margin SVM without bias, by a conic solver: an
    oracle independent of the certificate's NNLS."""
    u = cp.Variable(X.shape[1])
    problem = cp.Problem(cp.Minimize(cp.sum_squares(u)), [cp.multiply(y, X @ u) >= 1])
    problem.solve(solver=cp.CLARABEL)
    return u.value, problem.value


def lifted_point(net, u):
    """theta for the width-1 path through `net` (the first hidden unit of every
    layer, the rest zero) that computes x -> u.x, balanced across layers."""
    r = np.linalg.norm(u) ** (1.0 / net.depth)
    theta = np.zeros(net.num_parameters)
    sl = net.layer_slices
    theta[sl[0].start : sl[0].start + net.input_dim] = u / np.linalg.norm(u) * r
    for l in range(1, net.depth):
        theta[sl[l].start] = r
    return theta


@given(linear_fc_cases, st.integers(0, 2**32 - 1))
def test_a_lifted_separator_that_is_not_max_margin_is_rejected(case, seed):
    """Lift a separator u that is not the SVM direction into the network: feasible,
    not optimal, and the certificate must say so by the amount theory predicts."""
    net, X, y = case.network, case.X, case.y
    u_star, best = svm(X, y)
    # The max-margin separator itself, lifted, is certified...
    assert_certified(certify_theorem_3_1(net, X, y, lifted_point(net, u_star)))
    # ...and one off its direction, kept only if it still separates, is not.
    kick = np.random.default_rng(seed).normal(size=u_star.size)
    u = u_star + 0.5 * np.linalg.norm(u_star) * kick
    if np.min(y * (X @ u)) <= 0:
        event("kicked separator no longer separates")
        return
    cert = certify_theorem_3_1(net, X, y, lifted_point(net, u))
    # ||theta~||^2 = m (||u|| / min margin of u)^(2/m) for the lifted point.
    expected = net.depth * (np.linalg.norm(u) / np.min(y * (X @ u))) ** (2 / net.depth)
    assert cert.limit_value == pytest.approx(expected, rel=1e-9)
    assert cert.dual == pytest.approx(net.depth * best ** (1 / net.depth), rel=1e-6)
    if expected > cert.dual * (1 + 1e-3):
        assert not cert.holds
        with pytest.raises(AssertionError, match="NOT certified"):
            assert_certified(cert)


def test_relu_and_non_fully_connected_networks_are_not_its_regime():
    X, y = np.array([[1.0, 0.0]]), np.ones(1)
    net = fully_connected([2, 2, 1], "relu")
    with pytest.raises(NotApplicableError, match="fully-connected linear"):
        certify_theorem_3_1(net, X, y, np.ones(net.num_parameters))
