"""The KKT checker of Problem 2: it passes KKT points, whatever Clarke slopes they
need, and fails points that are KKT for no choice of slopes and multipliers."""

import numpy as np
import pytest
from hypothesis import given, note
from hypothesis import strategies as st

from invariants.cases import CONSTRUCTIONS, get
from invariants.kkt import (
    KKT_TOL,
    MAX_KINKS_PER_SAMPLE,
    assert_kkt,
    kkt_point,
    kkt_residual,
    rescale,
)
from invariants.networks import fully_connected
from strategies import architectures, training_cases

# Two ReLU neurons, theta = [w_1, w_2, v] = [(1, 0), (0, 1), (1, 1)], all labels +1.
# x_k = (1, 0) lies on neuron 2's kink; x_a = (-c, 1) is seen by neuron 2 only. Both
# margins are 1, and the KKT conditions hold with lambda = (1, 1) and ReLU' = c at
# the kink: w_2 = c x_k + x_a. So the point is KKT exactly when c is in [0, 1].
KINKED = fully_connected([2, 2, 1], "relu")
KINKED_THETA = np.array([1.0, 0.0, 0.0, 1.0, 1.0, 1.0])


def kinked_data(c):
    return np.array([[1.0, 0.0], [-c, 1.0]]), np.ones(2)


@pytest.mark.parametrize("c", [0.0, 0.1, 0.25, 0.5, 0.9, 1.0])
def test_a_kkt_point_passes_with_the_intermediate_slope_it_needs(c):
    X, y = kinked_data(c)
    point = assert_kkt(KINKED, X, y, KINKED_THETA)
    assert point.slopes[(1, 0, 1)] == pytest.approx(c, abs=1e-12)
    np.testing.assert_allclose(point.multipliers, [1.0, 1.0], atol=1e-12)
    assert point.active_set == (0, 1)


@pytest.mark.parametrize("c", [-0.5, 1.5, 2.0])
def test_no_slope_in_the_clarke_interval_makes_it_kkt(c):
    X, y = kinked_data(c)
    assert kkt_residual(KINKED, X, y, KINKED_THETA) > 0.05
    with pytest.raises(AssertionError, match="kkt_residual"):
        assert_kkt(KINKED, X, y, KINKED_THETA)


def test_a_fixed_relu_derivative_at_the_kink_is_not_enough():
    """With ReLU'(0) pinned to 0 or 1 (what plain backprop gives) the slope-1/4
    point fails: the Clarke interval is what makes it KKT."""
    X, y = kinked_data(0.25)
    from scipy.optimize import nnls

    for slope in (0.0, 0.5, 1.0):
        slopes = {(1, 0, 1): slope}
        J = np.vstack(
            [
                KINKED.unchecked_margin_jacobian(
                    KINKED_THETA, X[i : i + 1], y[i : i + 1], slopes if i == 0 else None
                )[1]
                for i in range(2)
            ]
        )
        residual = nnls(J.T, KINKED_THETA)[1] / np.linalg.norm(KINKED_THETA)
        assert residual > 0.05


@pytest.mark.parametrize("name", sorted(CONSTRUCTIONS))
def test_every_construction_limit_is_a_kkt_point(name):
    c = get(name)
    assert_kkt(c.network, c.case.X, c.case.y, c.limit, context=name)


@pytest.mark.parametrize("name", ["thm3.2", "lemmaC.6"])
def test_a_non_stationary_initialisation_fails(name):
    c = get(name)
    assert kkt_residual(c.network, c.case.X, c.case.y, c.case.theta0) > 0.1


def test_witness_points_are_not_kkt_points():
    """The paper's witness of Theorem 3.2 is feasible but no KKT point."""
    c = get("thm3.2")
    theta = c.witness(0.1)
    assert kkt_residual(c.network, c.case.X, c.case.y, theta) > 1e-3


def balance_lower_bound(network, theta_tilde):
    """A lower bound on the relative KKT residual of any point, from Euler's identity
    per layer: <u^(l), g_i^(l)> = q_i for every generalised gradient, so
    ||u^(l)||^2 - sum_i lambda_i q_i = <u^(l), r^(l)> for every layer l, and
    |‖u^(l)‖^2 - ‖u^(k)‖^2| <= ||r|| ||theta~||."""
    sizes = [float(u @ u) for u in network.layer_parameters(theta_tilde)]
    return (max(sizes) - min(sizes)) / float(theta_tilde @ theta_tilde)


# A case whose theta0 separates the data: a teacher past the loss threshold.
separating_cases = training_cases(
    networks=architectures(max_depth=3, max_width=3),
    init_kinds=st.just("past_threshold"),
    max_points=5,
)


@given(separating_cases, st.floats(0.5, 2.0))
def test_residual_respects_the_layer_balance_bound(case, c):
    """Any correct residual is at least the layer imbalance of theta~; scaling one
    layer by c and the next by 1/c keeps every margin and breaks the balance."""
    net, X, y = case.network, case.X, case.y
    theta = np.array(case.theta0)
    sl = net.layer_slices
    theta[sl[0]] *= c
    theta[sl[1]] /= c
    point = kkt_point(net, X, y, theta)
    bound = balance_lower_bound(net, point.theta_tilde)
    note(f"residual {point.residual!r}, bound {bound!r}")
    assert point.residual >= bound - 1e-12
    # And the residual depends only on the direction.
    assert kkt_residual(net, X, y, 3.0 * theta) == pytest.approx(
        point.residual, rel=1e-6, abs=1e-12
    )


@given(separating_cases, st.sampled_from([1e-3, 1e3]))
def test_residual_does_not_depend_on_the_data_scale(case, c):
    """X -> c X moves theta~ to c^(-1/m) theta~ and every margin gradient with it,
    so the residual, relative to ||theta~||, is the same number; an absolute one
    would change by the factor c^(-1/m)."""
    net, X, y, theta = case.network, case.X, case.y, case.theta0
    here = kkt_point(net, X, y, theta)
    there = kkt_point(net, c * X, y, theta)
    note(f"residuals {here.residual!r} and {there.residual!r}")
    size = np.linalg.norm(there.theta_tilde) / np.linalg.norm(here.theta_tilde)
    assert size == pytest.approx(c ** (-1 / net.depth), rel=1e-9)
    # Both are rounding-level at an exact KKT point: compare above that floor.
    assert there.residual == pytest.approx(here.residual, rel=1e-6, abs=1e-12)


def test_rescale_puts_the_smallest_margin_at_one():
    c = get("lemmaC.6")
    theta = rescale(c.network, c.case.X, c.case.y, 7.0 * c.limit)
    assert np.min(c.network.margins(theta, c.case.X, c.case.y)) == pytest.approx(1.0)
    np.testing.assert_allclose(theta, c.limit, rtol=1e-14)


def test_points_that_do_not_separate_are_refused():
    X, y = kinked_data(0.25)
    with pytest.raises(ValueError, match="does not separate"):
        kkt_point(KINKED, X, y, -KINKED_THETA)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"active_tol": -1.0}, "active_tol"),
        ({"active_tol": float("nan")}, "active_tol"),
        ({"zero_tol": 1.0}, "zero_tol"),
    ],
)
def test_bad_tolerances(kwargs, message):
    X, y = kinked_data(0.25)
    with pytest.raises(ValueError, match=message):
        kkt_point(KINKED, X, y, KINKED_THETA, **kwargs)


def test_too_many_kinks_on_one_sample_are_refused_up_front():
    # A zero first layer except one live neuron: every other neuron's input is 0 on
    # every sample while its output weight still carries gradient.
    width = MAX_KINKS_PER_SAMPLE + 2
    net = fully_connected([2, width, 1], "relu")
    theta = np.zeros(net.num_parameters)
    theta[0] = 1.0
    theta[2 * width :] = 1.0
    X, y = np.array([[1.0, 0.0]]), np.ones(1)
    with pytest.raises(ValueError, match="MAX_KINKS_PER_SAMPLE"):
        kkt_point(net, X, y, theta)


def test_default_tolerance_is_stated():
    assert 0 < KKT_TOL <= 1e-6
