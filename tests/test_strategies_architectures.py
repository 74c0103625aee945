"""Meta-tests of strategies.architectures: the contract of every example, the edge
cases it reaches, and where it shrinks to."""

from random import Random

import numpy as np
import pytest
from hypothesis import find, given
from hypothesis import strategies as st

from invariants import networks
from strategies import (
    architectures,
    convolutional_networks,
    diagonal_networks,
    fully_connected_networks,
    no_share_networks,
    shared_weight_networks,
)


def minimal(strategy, condition=lambda _: True):
    """The shrunk example satisfying `condition`, from a fixed seed (reproducible)."""
    return find(strategy, condition, random=Random(0))


def maps(net) -> list[list]:
    return [P.tolist() for P in net.index_maps]


def uses(P: np.ndarray) -> np.ndarray:
    """How often each parameter index appears in an index map."""
    return np.bincount(P[P >= 0])


def assert_valid_structure(net, *, bounds=(2, 3, 1, 4, 1, 4)) -> None:
    """Index maps without gaps, chained shapes, no neuron cut off, within bounds."""
    min_depth, max_depth, min_width, max_width, min_in, max_in = bounds
    assert min_depth <= net.depth <= max_depth
    assert min_in <= net.input_dim <= max_in
    assert all(min_width <= d <= max_width for d in net.widths[1:-1])
    assert net.widths[-1] == 1
    assert net.activation in ("linear", "relu")
    for l, P in enumerate(net.index_maps, start=1):
        assert P.shape == (net.widths[l], net.widths[l - 1])
        assert np.all(uses(P) >= 1), "parameter indices must cover 0..p-1"
        assert np.all((P >= 0).any(axis=1)), f"a neuron of layer {l} has no input"
        if l > 1:
            assert np.all((P >= 0).any(axis=0)), f"a neuron of layer {l - 1} is dead"


# -- every example meets its contract --------------------------------------------------


@given(architectures())
def test_every_architecture_is_valid(net):
    assert_valid_structure(net)


@given(st.data())
def test_architectures_respect_any_valid_bounds(data):
    min_depth = data.draw(st.integers(1, 3), label="min_depth")
    max_depth = data.draw(st.integers(min_depth, 4), label="max_depth")
    min_width = data.draw(st.integers(1, 3), label="min_width")
    max_width = data.draw(st.integers(min_width, 5), label="max_width")
    min_in = data.draw(st.integers(1, 3), label="min_input_dim")
    max_in = data.draw(st.integers(min_in, 5), label="max_input_dim")
    bounds = (min_depth, max_depth, min_width, max_width, min_in, max_in)
    strategy = architectures(
        min_depth=min_depth,
        max_depth=max_depth,
        min_width=min_width,
        max_width=max_width,
        min_input_dim=min_in,
        max_input_dim=max_in,
    )
    assert_valid_structure(data.draw(strategy, label="network"), bounds=bounds)


@given(fully_connected_networks())
def test_fully_connected_examples_are_fully_connected(net):
    assert_valid_structure(net)
    assert net.is_fully_connected and net.family == "fully_connected"


@given(no_share_networks())
def test_no_share_examples_use_each_parameter_once(net):
    assert_valid_structure(net)
    assert net.is_no_share and net.family == "no_share"


@given(diagonal_networks())
def test_diagonal_examples_are_diagonal(net):
    assert_valid_structure(net)
    expected = networks.diagonal(net.input_dim, net.depth, net.activation)
    assert maps(net) == maps(expected)


@given(convolutional_networks())
def test_convolutional_examples_share_across_patches(net):
    assert_valid_structure(net)
    assert net.family == "convolutional"
    patches = net.widths[1:-1]
    assert net.shares_weights == any(n >= 2 for n in patches)
    for P in net.index_maps[:-1]:
        # Every patch applies the same filter 0..k-1 to consecutive inputs.
        kernel = int(uses(P).size)
        for row in P:
            (support,) = np.nonzero(row >= 0)
            assert row[support].tolist() == list(range(kernel))
            assert support.tolist() == list(range(support[0], support[0] + kernel))


@given(shared_weight_networks())
def test_shared_examples_share_weights(net):
    assert_valid_structure(net)
    assert net.shares_weights and net.family == "shared"


# -- edge cases are reachable ----------------------------------------------------------


@pytest.mark.parametrize(
    "family", ["fully_connected", "diagonal", "no_share", "convolutional", "shared"]
)
def test_every_family_is_reachable(family):
    minimal(architectures(), lambda n: n.family == family)


@pytest.mark.parametrize(
    "condition",
    [
        lambda n: n.depth == 3,
        lambda n: n.input_dim == 4,
        lambda n: 4 in n.widths[1:-1],
        lambda n: n.activation == "relu",
    ],
    ids=["max_depth", "max_input_dim", "max_width", "relu"],
)
def test_the_bounds_are_reached(condition):
    minimal(architectures(), condition)


def test_one_index_can_be_used_three_times_and_in_two_layers():
    minimal(
        shared_weight_networks(),
        lambda n: any(uses(P).max() >= 3 for P in n.index_maps),
    )
    minimal(
        shared_weight_networks(),
        lambda n: sum(uses(P).max() >= 2 for P in n.index_maps) >= 2,
    )


def test_sparse_no_share_networks_and_unused_inputs_are_reachable():
    minimal(no_share_networks(), lambda n: n.depth == 3 and not n.is_fully_connected)
    minimal(no_share_networks(), lambda n: not (n.index_maps[0] >= 0).all(axis=0).all())


def test_a_stride_larger_than_one_is_reachable():
    def stride(net):
        P = net.index_maps[0]
        starts = [int(np.argmax(row >= 0)) for row in P]
        return starts[1] - starts[0] if len(starts) > 1 else 0

    minimal(convolutional_networks(), lambda n: stride(n) >= 2)


# -- shrinking lands where the docstrings say ------------------------------------------


def test_architectures_shrink_to_the_smallest_linear_fully_connected_net():
    net = minimal(architectures())
    assert (net.family, net.widths, net.activation) == (
        "fully_connected",
        (1, 1, 1),
        "linear",
    )


@pytest.mark.parametrize(
    "condition, widths, activation",
    [
        (lambda n: n.activation == "relu", (1, 1, 1), "relu"),
        (lambda n: n.depth == 3, (1, 1, 1, 1), "linear"),
        (lambda n: n.input_dim == 3, (3, 1, 1), "linear"),
    ],
    ids=["relu", "depth-3", "input-3"],
)
def test_architectures_shrink_within_fully_connected(condition, widths, activation):
    net = minimal(architectures(), condition)
    assert (net.family, net.widths, net.activation) == (
        "fully_connected",
        widths,
        activation,
    )


def test_sharing_shrinks_to_the_earliest_family_that_shares():
    net = minimal(architectures(), lambda n: n.shares_weights)
    assert net.family == "convolutional"


@pytest.mark.parametrize(
    "strategy, condition, expected",
    [
        (no_share_networks(), lambda n: True, [[[0]], [[0]]]),
        # The staircase on the square layer, a dense output row.
        (
            no_share_networks(),
            lambda n: n.widths == (2, 2, 1),
            [[[0, -1], [-1, 1]], [[0, 1]]],
        ),
        (
            diagonal_networks(),
            lambda n: n.input_dim == 2,
            [[[0, -1], [-1, 1]], [[0, 1]]],
        ),
        # Kernel 1, stride 1, two patches: the smallest convolution that shares.
        (
            convolutional_networks(),
            lambda n: n.shares_weights,
            [[[0, -1], [-1, 0]], [[0, 1]]],
        ),
        # One reuse, in layer 1, of parameter 0.
        (shared_weight_networks(), lambda n: True, [[[0, 0]], [[0]]]),
    ],
    ids=["no-share", "no-share-2x2", "diagonal", "convolutional", "shared"],
)
def test_each_family_shrinks_as_documented(strategy, condition, expected):
    net = minimal(strategy, condition)
    assert maps(net) == expected
    assert net.activation == "linear"
