"""Meta-tests of strategies.datasets and strategies.initializations: contracts,
reachable edge cases, shrink targets, and exact reprs."""

import math
from random import Random

import numpy as np
import pytest
from hypothesis import find, given
from hypothesis import strategies as st

from invariants.casefile import Case
from invariants.losses import log_loss, log_loss_threshold
from invariants.networks import convolutional, diagonal, fully_connected, no_share
from strategies import (
    Dataset,
    architectures,
    initializations,
    separable_datasets,
    training_cases,
)
from strategies.datasets import _teacher_datasets
from strategies.initializations import balance

TINY = np.finfo(float).tiny


def minimal(strategy, condition=lambda _: True):
    """The shrunk example satisfying `condition`, from a fixed seed (reproducible)."""
    return find(strategy, condition, random=Random(0))


def assert_dataset_contract(net, X, y, teacher, *, points, min_margin, max_coordinate):
    """The promise of separable_datasets, checked against the generating teacher."""
    assert X.dtype == np.float64 and X.shape[1] == net.input_dim
    assert points[0] <= X.shape[0] <= points[1] and y.shape == (X.shape[0],)
    assert set(y.tolist()) <= {-1.0, 1.0}
    assert np.all(np.isfinite(X))
    assert np.all((X == 0.0) | (np.abs(X) >= TINY)), "no subnormal coordinates"
    assert np.all(np.abs(X) <= max_coordinate)
    assert np.all(np.max(np.abs(X), axis=1) >= max_coordinate / 16)
    f = net.outputs(teacher, X)
    norms = np.linalg.norm(X, axis=1)
    # Exactly, with no tolerance: the construction aims above the bound.
    assert np.all(y * f >= min_margin * norms), (y * f / norms).tolist()
    # The teacher is normalised: its largest relative margin is 1 (up to rounding).
    assert np.all(np.abs(f) <= norms * (1 + 1e-9))


def one_point_per_label(X, y) -> None:
    """Opposite labels never share a point."""
    for i in range(len(y)):
        for j in range(len(y)):
            if y[i] != y[j]:
                assert not np.array_equal(X[i], X[j])


# -- every example meets its contract --------------------------------------------------


@given(st.data())
def test_datasets_are_separated_by_their_teacher(data):
    net = data.draw(architectures(), label="network")
    (X, y), teacher = data.draw(_teacher_datasets(net), label="dataset, teacher")
    assert_dataset_contract(
        net, X, y, teacher, points=(1, 6), min_margin=0.1, max_coordinate=4.0
    )
    one_point_per_label(X, y)


@given(st.data())
def test_datasets_honour_any_valid_options(data):
    net = data.draw(architectures(), label="network")
    min_points = data.draw(st.integers(1, 4), label="min_points")
    max_points = data.draw(st.integers(min_points, 8), label="max_points")
    min_margin = data.draw(st.floats(0.001, 0.99), label="min_margin")
    max_coordinate = data.draw(st.floats(1e-3, 1e3), label="max_coordinate")
    (X, y), teacher = data.draw(
        _teacher_datasets(
            net,
            min_points=min_points,
            max_points=max_points,
            min_margin=min_margin,
            max_coordinate=max_coordinate,
        ),
        label="dataset, teacher",
    )
    assert_dataset_contract(
        net,
        X,
        y,
        teacher,
        points=(min_points, max_points),
        min_margin=min_margin,
        max_coordinate=max_coordinate,
    )


@given(st.data())
def test_public_datasets_unpack_and_print_exactly(data):
    net = data.draw(architectures(), label="network")
    dataset = data.draw(separable_datasets(net), label="dataset")
    X, y = dataset
    assert isinstance(dataset, Dataset)
    again = eval(repr(dataset), {"np": np, "Dataset": Dataset})
    assert again.X.tobytes() == X.tobytes() and again.y.tobytes() == y.tobytes()


@given(st.data())
def test_initializations_have_the_right_shape(data):
    net = data.draw(architectures(), label="network")
    (X, y), teacher = data.draw(_teacher_datasets(net), label="dataset, teacher")
    theta = data.draw(initializations(net, X, y, teacher=teacher), label="theta0")
    assert theta.dtype == np.float64 and theta.shape == (net.num_parameters,)
    assert np.all(np.isfinite(theta))
    assert eval(repr(theta), {"np": np}).tobytes() == theta.tobytes()


@given(st.data())
def test_balanced_initializations_are_balanced(data):
    net = data.draw(architectures(), label="network")
    X, y = data.draw(separable_datasets(net), label="dataset")
    theta = data.draw(
        initializations(net, X, y, kind=st.just("balanced")), label="theta0"
    )
    layer_norms = [float(theta[s] @ theta[s]) for s in net.layer_slices]
    assert np.allclose(layer_norms, layer_norms[0], rtol=1e-9, atol=0)
    if net.shares_weights:
        return
    Ws = net.weight_matrices(theta)
    for l, j in net.hidden_neurons():
        incoming, outgoing = Ws[l - 1][j] @ Ws[l - 1][j], Ws[l][:, j] @ Ws[l][:, j]
        assert abs(incoming - outgoing) <= 1e-9 * (incoming + outgoing)


@given(st.data())
def test_balancing_keeps_the_function(data):
    net = data.draw(architectures(), label="network")
    X, _ = data.draw(separable_datasets(net), label="dataset")
    seed = data.draw(st.integers(0, 2**32 - 1), label="seed")
    theta = np.random.default_rng(seed).standard_normal(net.num_parameters)
    before, after = net.outputs(theta, X), net.outputs(balance(net, theta), X)
    assert np.allclose(after, before, rtol=1e-9, atol=1e-12 * np.abs(before).max())


@given(st.data())
def test_past_threshold_initializations_are_below_half_the_threshold(data):
    net = data.draw(architectures(), label="network")
    loss = data.draw(st.sampled_from(["exponential", "logistic"]), label="loss")
    (X, y), teacher = data.draw(_teacher_datasets(net), label="dataset, teacher")
    theta = data.draw(
        initializations(
            net, X, y, kind=st.just("past_threshold"), loss=loss, teacher=teacher
        ),
        label="theta0",
    )
    q = net.margins(theta, X, y)
    assert np.all(q > 0)
    assert log_loss(q, loss) < log_loss_threshold(loss) - math.log(2)


@given(training_cases())
def test_training_cases_are_valid_and_print_exactly(case):
    again = eval(repr(case), {"Case": Case})
    for name in ("X", "y", "theta0"):
        assert getattr(again, name).tobytes() == getattr(case, name).tobytes()
    assert again.to_dict() == case.to_dict()
    q = case.network.margins(case.theta0, case.X, case.y)
    if not case.network.is_linear:
        # ReLU cases start past the threshold, where the flow cannot get stuck.
        assert log_loss(q, case.loss) < log_loss_threshold(case.loss)


# -- edge cases are reachable ----------------------------------------------------------

NETWORKS = {
    "fc-linear": fully_connected([2, 2, 1], "linear"),
    "fc-relu": fully_connected([2, 2, 1], "relu"),
    "diagonal-relu": diagonal(2, 3, "relu"),
    "conv-linear": convolutional(3, 2, 1, "linear"),
    "no-share-relu": no_share([[[True, False], [True, True]], [[True, True]]], "relu"),
}


@pytest.mark.parametrize("net", NETWORKS.values(), ids=NETWORKS.keys())
def test_both_labels_and_many_points_are_reachable(net):
    minimal(separable_datasets(net), lambda d: set(d.y.tolist()) == {-1.0, 1.0})
    minimal(separable_datasets(net), lambda d: len(d.y) == 6)


def test_margins_near_the_bound_are_reachable():
    net = NETWORKS["fc-relu"]

    def smallest_relative_margin(pair):
        (X, y), teacher = pair
        return np.min(y * net.outputs(teacher, X) / np.linalg.norm(X, axis=1))

    minimal(_teacher_datasets(net), lambda pair: smallest_relative_margin(pair) < 0.2)


@pytest.mark.parametrize("kind", ["gaussian", "balanced", "past_threshold"])
def test_every_init_kind_is_reachable_in_training_cases(kind):
    minimal(training_cases(init_kinds=st.just(kind)))


# -- shrinking lands where the docstrings say ------------------------------------------


def test_linear_datasets_shrink_to_e1_labelled_plus_one():
    for net in (NETWORKS["fc-linear"], diagonal(2, 2, "linear")):
        X, y = minimal(separable_datasets(net))
        assert X.tolist() == [[1.0, 0.0]] and y.tolist() == [1.0]


def test_other_datasets_shrink_to_the_anchor_point():
    for net in (NETWORKS["fc-relu"], NETWORKS["conv-linear"]):
        X, _ = minimal(separable_datasets(net, max_coordinate=3.0))
        # One point: the anchor (max_coordinate / 2) e_(b_0) on an input path.
        assert X.shape == (1, net.input_dim)
        assert np.abs(X).max() == 1.5 and np.count_nonzero(X) == 1


def test_training_cases_shrink_to_one_point_on_the_smallest_network():
    case = minimal(training_cases())
    assert case.loss == "exponential" and case.X.shape == (1, 1)
    assert case.network.is_fully_connected and case.network.widths == (1, 1, 1)
