"""Limits of gradient flow on our kind of networks, judged by the paper's checkers."""

import pytest
from hypothesis import event, given, reject
from hypothesis import strategies as st

import invariants
from strategies import fully_connected_networks, separable_datasets, training_cases

# Theorem 3.1's regime: fully connected linear networks.
linear_cases = training_cases(
    networks=fully_connected_networks(
        max_depth=3, max_width=2, max_input_dim=3, activations=st.just("linear")
    ),
    max_points=4,
)


def limit_of(case):
    """The simulated limit, or a rejection when the simulator gives up on a case."""
    try:
        # Follow the flow until its direction stops moving, not to a fixed norm.
        return invariants.simulate(case, direction_tol=1e-9)
    except (invariants.FlowError, invariants.StationaryPointError) as exc:
        event(f"simulator gave up: {type(exc).__name__}")
        reject()


@given(linear_cases)
def test_the_limit_is_a_kkt_point_and_globally_optimal(case):
    trajectory = limit_of(case)
    point = invariants.assert_kkt(
        case.network, case.X, case.y, trajectory.theta_tilde, context=repr(case)
    )
    assert min(point.margins) == pytest.approx(1.0, rel=1e-9)
    regime = invariants.classify(case.network, trajectory.theta_tilde, case.X)
    assert regime.guarantee == "global" and regime.theorem == "3.1"
    verdict = invariants.optimality(
        case.network, case.X, case.y, trajectory.theta_tilde, search=False
    )
    assert verdict.global_ is True, verdict.evidence


@st.composite
def networks_with_data(draw):
    # A dataset strategy takes its network: draw the network first, then its data.
    network = draw(fully_connected_networks(max_depth=2))
    return network, draw(separable_datasets(network, max_points=3))


@given(networks_with_data())
def test_generated_data_is_labelled_plus_or_minus_one(pair):
    network, (X, y) = pair
    assert X.shape == (len(y), network.input_dim)
    assert set(y.tolist()) <= {-1.0, 1.0}
