"""Beyond the paper: the exact global optimum of Problem 2 for small depth-2 ReLU
networks, by enumerating activation regions (`invariants.certify.exact`).

It decides what Theorem 4.3 leaves open (local is not global, Lemma C.6) and must
never be beaten by a feasible point, which the properties below search for."""

import dataclasses
import math

import numpy as np
import pytest
from hypothesis import event, example, given, note
from hypothesis import strategies as st
from limits import limit_of

from invariants.casefile import Case
from invariants.cases import get
from invariants.certify import exact
from invariants.certify.exact import (
    better_point,
    certify_global_depth2_relu,
    global_optimum,
)
from invariants.certify.record import (
    CertificateError,
    NotApplicableError,
    assert_certified,
)
from invariants.networks import convolutional, fully_connected
from strategies import fully_connected_networks, training_cases

# Width 2 on up to 3 inputs and 4 points keeps every instance under a few hundred
# convex problems (at most 14 regions, so C(28, 2) = 378 combinations).
small_relu = fully_connected_networks(
    max_depth=2, max_width=2, max_input_dim=3, activations=st.just("relu")
)
small_cases = training_cases(networks=small_relu, max_points=4)
# Solve to the solvers' accuracy, not the certificates' 1e-6, so that the two routes
# (and each value and bound) can be compared closely.
TOL = 1e-9


def check_point(net, X, y, theta, value):
    """theta is feasible (every recomputed margin >= 1) and has the stated value."""
    assert np.min(net.margins(theta, X, y)) >= 1.0
    assert float(theta @ theta) == pytest.approx(value, rel=1e-12)


def rescaled_value(net, X, y, theta) -> float:
    """||theta||^2 of theta moved along its ray to smallest margin 1, or inf."""
    q = float(np.min(net.margins(theta, X, y)))
    return float(theta @ theta) / q if q > 0 else math.inf


@given(small_cases, st.integers(0, 2**32 - 1))
def test_neither_gradient_flow_nor_a_nearby_point_beats_the_exact_optimum(case, seed):
    """Solved without the limit as a candidate, the optimum is at most the GF limit's
    value, and no perturbation of the optimal point itself does better."""
    note(repr(case))
    net, X, y = case.network, case.X, case.y
    traj = limit_of(case)
    opt = global_optimum(net, X, y, tol=TOL)
    note(f"{opt.method}: value {opt.value!r}, bound {opt.lower_bound!r}")
    event(f"solved by {opt.method}")
    check_point(net, X, y, opt.theta, opt.value)
    assert opt.lower_bound <= opt.value
    assert opt.value - opt.lower_bound <= 1e-8 * opt.value
    assert opt.lower_bound <= traj.norm_squared * (1 + 1e-9)
    if opt.value < traj.norm_squared * (1 - 1e-6):
        event("the GF limit is not a global optimum")
    rng = np.random.default_rng(seed)
    scale = np.linalg.norm(opt.theta)
    for radius in (1e-4, 1e-2, 0.3):
        for _ in range(50):
            kick = rng.normal(size=opt.theta.size) * radius * scale
            value = rescaled_value(net, X, y, opt.theta + kick)
            assert value >= opt.lower_bound * (1 - 1e-9)


# Found by the property below: rank-2 data in R^3, where the relaxation spreads its
# solution over neighbouring regions and its lifted point was 1.2e-8 above the
# optimum until the chosen combination was re-solved.
RANK_TWO = Case.from_dict(
    {
        "network": {
            "family": "fully_connected",
            "widths": [3, 2, 1],
            "activation": "relu",
        },
        "X": [
            [-0.9765625, -0.8125, 0.0],
            [-0.04166666666666671, 0.2500000000000003, 0.0],
            [-0.5, 3.0, 0.0],
        ],
        "y": [-1, -1, -1],
        "theta0": [
            12.091228833799438, 3.1683043544164993, -0.1473450927498334,
            -7.004403676037869, 6.854467386478134, 0.6816382495612598,
            -1.374184864213981, -1.159272822350372,
        ],
        "loss": "exponential",
    }
)  # fmt: skip


@given(small_cases, st.integers(0, 2**32 - 1))
@example(RANK_TWO, 0)
def test_the_relaxation_shortcut_agrees_with_full_enumeration(case, seed):
    """Both routes give the same value; no random feasible point goes below the
    verified bound; the initialisation (feasible by construction) is no better."""
    note(repr(case))
    net, X, y = case.network, case.X, case.y
    quick = global_optimum(net, X, y, tol=TOL)
    full = global_optimum(net, X, y, relaxation=False)
    event(f"relaxation {'sufficed' if quick.method == 'relaxation' else 'was loose'}")
    note(f"quick {quick.value!r} [{quick.lower_bound!r}], full {full.value!r}")
    check_point(net, X, y, full.theta, full.value)
    assert full.value == pytest.approx(quick.value, rel=1e-8)
    assert max(quick.lower_bound, full.lower_bound) <= min(quick.value, full.value)
    assert quick.lower_bound <= rescaled_value(net, X, y, case.theta0)
    rng = np.random.default_rng(seed)
    hits = 0
    for _ in range(300):
        value = rescaled_value(net, X, y, rng.normal(size=net.num_parameters))
        hits += value < math.inf
        assert value >= quick.lower_bound * (1 - 1e-9)
    event(f"random points separating: {'some' if hits else 'none'}")


# -- the paper's constructions ---------------------------------------------------------


def test_lemma_c6_limit_is_not_global_and_the_optimum_is_below_the_papers_point():
    c = get("lemmaC.6")
    net, X, y = c.network, c.case.X, c.case.y
    cert = certify_global_depth2_relu(net, X, y, c.limit)
    assert cert.limit_value == pytest.approx(10.0, rel=1e-12)
    assert not cert.holds
    assert cert.primal < 10.0 and cert.primal <= 7.8125
    # The paper's better point is feasible, so the verified bound is below it too.
    assert rescaled_value(net, X, y, c.better_point) == pytest.approx(7.8125)
    assert cert.dual <= 7.8125
    witness = better_point(cert, net, X, y)
    check_point(net, X, y, witness, cert.primal)
    assert float(witness @ witness) < cert.limit_value


def test_theorem_3_2_optimum_is_one_neuron_per_sample_as_computed_by_hand():
    """x_1 = (1, 1/4), x_2 = (-1, 1/4). A unit-norm u gives relu(u.x_1) + relu(u.x_2)
    at most ||x|| = sqrt(17)/4 when one input is active and u.(x_1 + x_2) <= 1/2
    when both are; both margins need a total of 2, so sum ||u_l|| >= 8 / sqrt(17),
    and u_i = x_i / ||x_i||^2 (one neuron per sample, each off on the other sample)
    attains it: Problem 2's optimum is 2 * 8 / sqrt(17) = 16 / sqrt(17), below the
    limit's 8."""
    c = get("thm3.2")
    net, X, y = c.network, c.case.X, c.case.y
    by_hand = 16 / math.sqrt(17)
    x1, x2 = X
    theta = np.concatenate(
        [x1 / np.linalg.norm(x1) ** 1.5, x2 / np.linalg.norm(x2) ** 1.5]
    )
    theta = np.concatenate([theta, [np.linalg.norm(x1) ** -0.5] * 2])
    assert rescaled_value(net, X, y, theta) == pytest.approx(by_hand, rel=1e-12)
    cert = certify_global_depth2_relu(net, X, y, c.limit)
    assert cert.limit_value == pytest.approx(8.0, rel=1e-12)
    assert not cert.holds
    assert cert.primal == pytest.approx(by_hand, rel=1e-9)
    assert cert.dual == pytest.approx(by_hand, rel=1e-9)


@pytest.mark.parametrize("name", ["lemmaC.6", "thm3.2", "thm4.2.2"])
def test_relaxation_and_enumeration_agree_on_the_constructions(name):
    c = get(name)
    net, X, y = c.network, c.case.X, c.case.y
    quick = global_optimum(net, X, y, tol=TOL)
    full = global_optimum(net, X, y, relaxation=False)
    assert full.method == "enumeration" and full.combinations >= 1
    assert full.value == pytest.approx(quick.value, rel=1e-9)
    assert full.lower_bound == pytest.approx(quick.lower_bound, rel=1e-9)


# -- a global limit ------------------------------------------------------------------

GLOBAL_NET = fully_connected([2, 2, 1], "relu")
GLOBAL_X = np.array([[1.0, 0.0], [-1.0, 0.0]])
GLOBAL_Y = np.ones(2)
# One neuron per sample: w = +-(1, 0), v = 1. A unit-norm u raises the two margins
# by at most ||u|| in total (only one input can be active), and they need 2, so
# sum ||u_l|| >= 2 and ||theta||^2 >= 4, which this point attains.
GLOBAL_LIMIT = np.array([1.0, 0.0, -1.0, 0.0, 1.0, 1.0])


@pytest.mark.parametrize("relaxation", [True, False])
def test_a_global_limit_is_certified_by_either_route(relaxation):
    opt = global_optimum(GLOBAL_NET, GLOBAL_X, GLOBAL_Y, relaxation=relaxation)
    assert opt.value == pytest.approx(4.0, rel=1e-9)
    assert opt.lower_bound == pytest.approx(4.0, rel=1e-9)
    cert = certify_global_depth2_relu(GLOBAL_NET, GLOBAL_X, GLOBAL_Y, GLOBAL_LIMIT)
    assert_certified(cert)
    assert cert.excess <= 1e-9
    assert better_point(cert, GLOBAL_NET, GLOBAL_X, GLOBAL_Y) is None


def test_a_tampered_witness_is_caught():
    c = get("lemmaC.6")
    net, X, y = c.network, c.case.X, c.case.y
    cert = certify_global_depth2_relu(net, X, y, c.limit)
    shrunk = (0.99 * np.array(cert.residuals["better_point"])).tolist()
    forged = dataclasses.replace(
        cert, residuals={**cert.residuals, "better_point": shrunk}
    )
    with pytest.raises(CertificateError, match="does not verify"):
        better_point(forged, net, X, y)


# -- limits of the method ------------------------------------------------------------


def test_an_instance_too_large_is_refused_before_any_convex_problem(monkeypatch):
    class Forbidden:
        def __init__(self, *args, **kwargs):
            raise AssertionError("a convex problem was set up despite the size bound")

    monkeypatch.setattr(exact, "GroupNormProblem", Forbidden)
    net = fully_connected([3, 8, 1], "relu")
    X = np.abs(np.random.default_rng(0).normal(size=(8, 3)))
    with pytest.raises(ValueError, match=r"would need \d+ convex problems"):
        global_optimum(net, X, np.ones(8))
    with pytest.raises(ValueError, match="max_problems=3000"):
        certify_global_depth2_relu(net, X, np.ones(8), np.ones(net.num_parameters))


def test_region_count_is_bounded_before_the_lps():
    net = fully_connected([4, 1, 1], "relu")
    X = np.random.default_rng(1).normal(size=(60, 4))
    with pytest.raises(ValueError, match="MAX_REGION_LPS"):
        global_optimum(net, X, np.ones(60))


@pytest.mark.parametrize(
    ("network", "match"),
    [
        (fully_connected([2, 2, 1], "linear"), "ReLU"),
        (fully_connected([2, 2, 2, 1], "relu"), "depth 2"),
        (convolutional(4, 2, 2, "relu"), "N_no-share"),
    ],
)
def test_other_networks_are_refused(network, match):
    X = np.ones((2, network.input_dim))
    with pytest.raises(NotApplicableError, match=match):
        global_optimum(network, X, np.ones(2))
