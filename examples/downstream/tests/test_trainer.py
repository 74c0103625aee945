"""Our gradient-descent trainer against conservation laws of the paper (Lemma C.2)."""

import numpy as np
from downstream_trainer import train
from hypothesis import given
from hypothesis import strategies as st

import invariants
from invariants.balance import layer_balance
from strategies import architectures, training_cases

STEPS = 20
LR = 1e-2


@given(training_cases(networks=architectures(max_depth=3, max_width=3)))
def test_the_trainer_returns_every_iterate(case):
    path = train(
        case.network.index_maps, case.network.activation, case.X, case.y,
        case.theta0, case.loss, STEPS,
    )  # fmt: skip
    assert len(path) == STEPS + 1
    assert all(theta.shape == (case.network.num_parameters,) for theta in path)
    np.testing.assert_array_equal(path[0], case.theta0)


@given(training_cases(networks=architectures(max_depth=3, max_width=3)))
def test_layer_balance_drifts_by_at_most_the_squared_steps(case):
    # Along gradient flow ||u^(l)||^2 - ||u^(l+1)||^2 is conserved (Lemma C.2). A GD
    # step changes it by exactly eta^2 (||g_l||^2 - ||g_(l+1)||^2), and this trainer
    # clips eta ||g|| to LR, so the drift after STEPS steps is at most STEPS LR^2.
    path = train(
        case.network.index_maps, case.network.activation, case.X, case.y,
        case.theta0, case.loss, STEPS, lr=LR,
    )  # fmt: skip
    bound = STEPS * LR**2
    for drift in layer_balance(case.network, np.array(path)).values():
        assert drift.absolute_drift <= bound * (1 + 1e-6) + 1e-12, drift


@given(st.sampled_from(["exponential", "logistic"]))
def test_the_trainer_reads_networks_built_by_the_library(loss):
    net = invariants.fully_connected([2, 1, 1], "linear")
    X, y = np.array([[1.0, 0.0], [0.0, 1.0]]), np.array([1.0, -1.0])
    path = train(net.index_maps, net.activation, X, y, [1.0, -1.0, 1.0], loss, 50)
    # Phi(theta; x) = x_1 - x_2 separates (X, y) from the start, and small GD steps
    # raise the normalized margin towards its maximum 1 / (2 sqrt 2) here.
    assert np.all(np.diff([net.normalized_margin(t, X, y) for t in path]) >= -1e-12)
