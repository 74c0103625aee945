"""Theorem 4.2 (1): on a depth-2 linear N_no-share network, a GF limit with every
w~_l != 0 is a global optimum of Problem 2, certified against Problem 8 (the group
norm sum ||u_l||, u_l = v_l w_l)."""

import math

import cvxpy as cp
import numpy as np
import pytest
from hypothesis import event, example, given, note, reject, target
from hypothesis import strategies as st
from limits import limit_of, off_balance

from invariants.casefile import Case
from invariants.certify.conic import certify_theorem_4_2, lift
from invariants.certify.record import (
    CertificateError,
    NotApplicableError,
    assert_certified,
)
from invariants.networks import convolutional, fully_connected, no_share
from strategies import no_share_networks, training_cases

linear_no_share = no_share_networks(
    max_depth=2, max_width=3, activations=st.just("linear")
)
# Flows whose limit has a neuron dying as a small power of ||theta|| run to the
# simulator's max_log_norm and are rejected anyway. In a CI sample of 73 cases the
# converged ones needed at most 24,500 evaluations and the rejected ones spent 9 s
# each under the default budget; 25,000 (about 3 s) rejects them sooner.
MAX_EVALUATIONS = 25_000


@given(training_cases(networks=linear_no_share))
def test_gradient_flow_limit_is_certified_global_and_an_unbalanced_one_is_not(case):
    """The limit is certified; the same limit with one neuron off balance (feasible,
    same margins, larger norm) is refused by the excess theory predicts."""
    note(repr(case))
    event(f"loss: {case.loss}")
    net, X, y = case.network, case.X, case.y
    traj = limit_of(case, max_evaluations=MAX_EVALUATIONS)
    try:
        cert = certify_theorem_4_2(net, X, y, traj.theta_tilde)
    except NotApplicableError:
        event("not applicable: some w~_l = 0 at the limit")
        reject()
    note(cert.summary())
    target(cert.excess, label="excess of the GF limit")
    assert_certified(cert, context=repr(case))
    assert cert.gap <= 1e-8

    moved, expected = off_balance(net, traj.theta_tilde)
    bad = certify_theorem_4_2(net, X, y, moved)
    note(bad.summary())
    # The limit is balanced (Lemma C.4), so the largest of at most 3 neurons carries
    # >= 1/3 of ||theta~||^2; a factor 2 adds 9/8 of its share: excess >= 0.27.
    assert expected > 0.27
    assert not bad.holds
    assert bad.dual == pytest.approx(cert.dual, rel=1e-8)
    assert expected - 1e-12 <= bad.excess <= expected + 2 * cert.tol


# Found by the property below: margins whose terms cancel round far more than one ulp,
# so dividing the solver's point by its smallest margin left one at 1 - 4e-16.
CANCELLING_MARGINS = Case.from_dict(
    {
        "network": {
            "family": "no_share",
            "masks": [[[False, True], [True, True], [True, False]], [[True] * 3]],
            "activation": "linear",
        },
        "X": [[0.12528409090909104, -0.2500000000000003], [0.0, 1.0], [-1.0, 4.0]],
        "y": [1, 1, 1],
        "theta0": [
            2.7966219729593145, 6.648901790816354, 2.674044731078587,
            -10.545731638796633, 7.326544929494365, 3.6122628462400486,
            -4.3452659321253195,
        ],
        "loss": "exponential",
    }
)  # fmt: skip


@given(training_cases(networks=linear_no_share, init_kinds=st.just("past_threshold")))
@example(CANCELLING_MARGINS)
def test_the_verified_bound_never_exceeds_a_feasible_point(case):
    """Any separating theta is feasible after rescaling, so the verified lower bound
    must sit below its value; the solver's own optimum must be within 1e-8 of it."""
    note(repr(case))
    try:
        cert = certify_theorem_4_2(case.network, case.X, case.y, case.theta0)
    except NotApplicableError:
        event("not applicable: a neuron of theta0 is zero")
        reject()
    note(cert.summary())
    assert cert.dual <= cert.limit_value * (1 + 1e-12)
    assert cert.dual <= cert.primal * (1 + 1e-12)
    assert cert.gap <= 1e-8


# -- fixed cases ---------------------------------------------------------------------

NET = fully_connected([2, 2, 1], "linear")
X2 = np.array([[1.0, 0.0], [0.0, 1.0]])
Y2 = np.array([1.0, 1.0])


def split(beta):
    """beta lifted into NET, shared equally by the two neurons (both w_l != 0)."""
    return lift(NET, [beta / 2, beta / 2])


def test_a_separator_that_is_not_max_margin_is_refused_by_the_predicted_amount():
    """For a fully-connected net, Problem 8's optimum is the SVM without bias: here
    u* = (1, 1), so Problem 2's optimum is 2 ||u*|| = 2 sqrt(2). The separator
    (1, 2) has margins (1, 2) and value 2 sqrt(5)."""
    good = certify_theorem_4_2(NET, X2, Y2, split(np.array([1.0, 1.0])))
    assert_certified(good)
    assert good.limit_value == pytest.approx(2 * math.sqrt(2), rel=1e-12)
    bad = certify_theorem_4_2(NET, X2, Y2, split(np.array([1.0, 2.0])))
    assert not bad.holds
    assert bad.limit_value == pytest.approx(2 * math.sqrt(5), rel=1e-12)
    assert bad.excess == pytest.approx(1 - math.sqrt(2) / math.sqrt(5), abs=1e-9)
    with pytest.raises(AssertionError, match="NOT certified"):
        assert_certified(bad)


def test_no_share_with_disjoint_neurons_matches_the_group_norm_by_hand():
    """Two neurons on one coordinate each, x = (1, 0), (0, 2): the optimum puts
    u_1 = (1), u_2 = (1/2), so Problem 2's optimum is 2 (1 + 1/2) = 3."""
    net = no_share([[[True, False], [False, True]], [[True, True]]], "linear")
    X = np.array([[1.0, 0.0], [0.0, 2.0]])
    theta = lift(net, [np.array([0.5]), np.array([0.25])])  # margins 1/2 each
    cert = certify_theorem_4_2(net, X, Y2, theta)
    assert cert.limit_value == pytest.approx(3.0, rel=1e-12)
    assert cert.dual == pytest.approx(3.0, rel=1e-9)
    assert_certified(cert)


@pytest.mark.parametrize(
    ("network", "X", "theta", "match"),
    [
        (fully_connected([2, 2, 1], "relu"), X2, split(np.ones(2)), "linear"),
        (fully_connected([2, 2, 2, 1], "linear"), X2, np.ones(10), "depth-2"),
        (fully_connected([2, 2, 2, 1], "relu"), X2, np.ones(10), "depth-2"),
        (
            convolutional(4, 2, 2, "linear"),
            [[4.0, 2**-0.5, -4.0, 2**-0.5]],
            [0.0, 1.0, 2**-0.5, 2**-0.5],
            "shares weights",
        ),
        (NET, X2, lift(NET, [np.ones(2), None]), r"w~_l != 0.*neuron 1"),
    ],
    ids=["relu", "depth 3", "depth 3 relu", "shared weights", "a zero neuron"],
)
def test_outside_the_hypotheses_it_refuses(network, X, theta, match):
    y = np.ones(len(X))
    with pytest.raises(NotApplicableError, match=match):
        certify_theorem_4_2(network, X, y, theta)


# -- the solver is checked, not trusted ----------------------------------------------


def tamper(monkeypatch, how):
    original = cp.Problem.solve

    def solve(self, *args, **kwargs):
        result = original(self, *args, **kwargs)
        how(self)
        return result

    monkeypatch.setattr(cp.Problem, "solve", solve)


def test_a_solver_that_misreports_its_point_and_multipliers_changes_nothing(
    monkeypatch,
):
    """Halve the returned point (infeasible) and inflate the multipliers sevenfold
    (not dual-feasible): the re-checked numbers are the honest ones."""
    theta = split(np.array([1.0, 1.0]))
    honest = certify_theorem_4_2(NET, X2, Y2, theta)

    def lie(problem):
        for v in problem.variables():
            v.value = 0.5 * v.value
        for c in problem.constraints:
            c.dual_variables[0].value = 7.0 * c.dual_value

    tamper(monkeypatch, lie)
    checked = certify_theorem_4_2(NET, X2, Y2, theta)
    assert checked.primal == pytest.approx(honest.primal, rel=1e-10)
    assert checked.dual == pytest.approx(honest.dual, rel=1e-10)
    assert checked.residuals["min_margin_before_rescale"] == pytest.approx(0.5)


def test_distorted_multipliers_are_an_error(monkeypatch):
    """Multipliers scaled unevenly are still rescaled to dual feasibility, so the
    bound drops below the optimum, never above it; an answer called optimal with
    so loose a bound is then an error, not a failed certificate."""
    theta = split(np.array([1.0, 1.0]))

    def skew(problem):
        for c in problem.constraints:
            c.dual_variables[0].value = c.dual_value * np.array([1.0, 0.2])

    tamper(monkeypatch, skew)
    with pytest.raises(CertificateError, match="duality gap"):
        certify_theorem_4_2(NET, X2, Y2, theta)


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_non_finite_solver_output_is_an_error(monkeypatch, bad):
    def poison(problem):
        for v in problem.variables():
            v.save_value(np.full(v.shape, bad))

    tamper(monkeypatch, poison)
    with pytest.raises(CertificateError, match="non-finite"):
        certify_theorem_4_2(NET, X2, Y2, split(np.ones(2)))


def test_a_solver_failure_is_an_error(monkeypatch):
    def fail(self, *args, **kwargs):
        raise cp.error.SolverError("simulated failure")

    monkeypatch.setattr(cp.Problem, "solve", fail)
    with pytest.raises(CertificateError, match="CLARABEL failed"):
        certify_theorem_4_2(NET, X2, Y2, split(np.ones(2)))
