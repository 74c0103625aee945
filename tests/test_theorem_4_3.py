"""Theorem 4.3: on a depth-2 ReLU N_no-share network, a GF limit at which every
input to every neuron is non-zero is a local optimum of Problem 2, certified against
Problem 11 (the group norm with the activation pattern frozen at the limit)."""

import numpy as np
import pytest
from hypothesis import event, given, note, reject, target
from hypothesis import strategies as st
from limits import limit_of, off_balance

from invariants.cases import get
from invariants.certify.conic import certify_theorem_4_3
from invariants.certify.record import NotApplicableError, assert_certified
from invariants.networks import fully_connected
from strategies import no_share_networks, training_cases

relu_no_share = no_share_networks(max_depth=2, max_width=3, activations=st.just("relu"))


@given(training_cases(networks=relu_no_share))
def test_gradient_flow_limit_is_certified_local_and_an_unbalanced_one_is_not(case):
    """The limit is certified; the same limit with one neuron off balance (feasible,
    same pattern, larger norm) is refused by the excess theory predicts."""
    note(repr(case))
    event(f"loss: {case.loss}")
    net, X, y = case.network, case.X, case.y
    traj = limit_of(case)
    try:
        cert = certify_theorem_4_3(net, X, y, traj.theta_tilde)
    except NotApplicableError:
        event("not applicable: an input to a neuron is zero at the limit")
        reject()
    note(cert.summary())
    target(cert.excess, label="excess of the GF limit")
    assert_certified(cert, context=repr(case))
    assert cert.gap <= 1e-8

    moved, expected = off_balance(net, traj.theta_tilde)
    try:
        bad = certify_theorem_4_3(net, X, y, moved)
    except NotApplicableError:
        # An input within a factor of the zero tolerance (1e-6 of the layer's
        # scale) can cross it when the layer's weights are rescaled.
        event("moved point has an input judged zero")
        return
    note(bad.summary())
    # Balanced limit (Lemma C.4): the largest of at most 3 neurons carries >= 1/3 of
    # ||theta~||^2 and a factor 2 adds 9/8 of its share, so the excess is >= 0.27.
    assert expected > 0.27
    assert not bad.holds
    assert bad.dual == pytest.approx(cert.dual, rel=1e-8)
    assert expected - 1e-12 <= bad.excess <= expected + 2 * cert.tol


def test_lemma_c6_limit_is_a_certified_local_optimum():
    """Every input non-zero at w~_1 = (0, 2), v~_1 = 2, w~_2 = (0, -1), v~_2 = 1:
    Problem 11 with that pattern has optimum 10, the limit's value."""
    c = get("lemmaC.6")
    cert = certify_theorem_4_3(c.network, c.case.X, c.case.y, c.limit)
    assert cert.claim == "local"
    assert cert.limit_value == pytest.approx(10.0, rel=1e-12)
    assert_certified(cert)
    assert cert.excess <= 1e-9
    assert cert.gap <= 1e-9


def test_lemma_c6_limit_off_balance_is_refused():
    """Neuron 1 moved to w = (0, 4), v = 1: its 4 + 4 becomes 16 + 1, so
    ||theta'||^2 = 19 and the excess over the optimum 10 is 9/19."""
    c = get("lemmaC.6")
    moved, expected = off_balance(c.network, c.limit)
    assert expected == pytest.approx(9 / 19, rel=1e-12)
    cert = certify_theorem_4_3(c.network, c.case.X, c.case.y, moved)
    assert not cert.holds
    assert cert.excess == pytest.approx(9 / 19, abs=1e-9)


@pytest.mark.parametrize(
    ("name", "match"),
    [
        ("thm4.2.2", "non-zero"),
        ("thm3.2", "non-zero"),
        ("thm4.4-relu", "shares weights"),
    ],
)
def test_limits_of_the_counterexamples_are_outside_the_hypotheses(name, match):
    """Theorem 4.2 (2)'s limit has zero inputs, Theorem 3.2's a dead neuron (all its
    inputs zero), Theorem 4.4's network shares its filter."""
    c = get(name)
    with pytest.raises(NotApplicableError, match=match):
        certify_theorem_4_3(c.network, c.case.X, c.case.y, c.limit)


@pytest.mark.parametrize(
    ("activation", "widths", "match"),
    [("linear", [2, 2, 1], "ReLU networks"), ("relu", [2, 2, 2, 1], "depth-2")],
)
def test_other_networks_are_refused(activation, widths, match):
    net = fully_connected(widths, activation)
    X = np.array([[1.0, 0.25], [-1.0, 0.25]])
    with pytest.raises(NotApplicableError, match=match):
        certify_theorem_4_3(net, X, np.ones(2), np.ones(net.num_parameters))
