"""Every bad argument to a public strategy raises InvalidArgument naming it: one table.

Arguments are checked when the strategy is first used (`.validate()` or a draw), like
Hypothesis' own strategies; values drawn from strategy-valued arguments are checked
as they are drawn. Both paths are exercised by `first_use`.
"""

import re

import numpy as np
import pytest
from hypothesis import find, settings
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument

from invariants.networks import from_index_maps, fully_connected
from strategies import (
    architectures,
    convolutional_networks,
    diagonal_networks,
    fully_connected_networks,
    initializations,
    no_share_networks,
    separable_datasets,
    shared_weight_networks,
    training_cases,
)

NET = fully_connected([2, 1, 1], "linear")
X = np.array([[1.0, 0.0], [0.0, 1.0]])
Y = np.array([1.0, -1.0])
# Phi(theta; x) = x_1 - x_2 on NET separates (X, Y); x_2 - x_1 does not.
TEACHER = np.array([1.0, -1.0, 1.0])
WRONG_TEACHER = np.array([-1.0, 1.0, 1.0])
# Two hidden neurons; the input feeds only the first, the output reads only the second.
CUT_OFF = from_index_maps([[[0], [-1]], [[-1, 0]]], "relu")


def first_use(strategy) -> None:
    strategy.validate()
    # One example is all it takes to reach the checks made at draw time.
    find(strategy, lambda _: True, settings=settings(max_examples=1, database=None))


BAD_ARGUMENTS = [
    (lambda: architectures(min_depth=0), "min_depth=0 must be an integer >= 1"),
    (lambda: architectures(min_depth=4), "min_depth=4 must be <= max_depth=3"),
    (lambda: architectures(max_width=0), "max_width=0 must be an integer >= 1"),
    (lambda: architectures(min_width=5), "min_width=5 must be <= max_width=4"),
    (lambda: architectures(max_width=True), "max_width=True must be an integer >= 1"),
    (
        lambda: fully_connected_networks(min_input_dim=1.5),
        "min_input_dim=1.5 must be an integer >= 1",
    ),
    (
        lambda: fully_connected_networks(min_input_dim=5),
        "min_input_dim=5 must be <= max_input_dim=4",
    ),
    (
        lambda: no_share_networks(activations="relu"),
        (
            "activations='relu' must be a SearchStrategy, got str; for a fixed value "
            "pass activations=st.just('relu')"
        ),
    ),
    (
        lambda: architectures(activations=st.just("tanh")),
        "activations drew 'tanh'; every value it draws must be one of",
    ),
    (
        lambda: diagonal_networks(min_depth=1, max_depth=1),
        "diagonal_networks: max_depth=1 must be >= 2",
    ),
    (
        lambda: diagonal_networks(min_input_dim=5, max_input_dim=6),
        "do not overlap; widen one range",
    ),
    (
        lambda: convolutional_networks(min_width=5, max_width=6),
        "convolutional_networks: no (depth, input_dim, kernel_size, stride)",
    ),
    (
        lambda: shared_weight_networks(max_input_dim=1, max_width=1),
        "shared_weight_networks: sharing needs a layer with two entries",
    ),
    (lambda: separable_datasets("NET"), "network='NET' must be an invariants."),
    (lambda: separable_datasets(CUT_OFF), "computes 0 for every theta"),
    (
        lambda: separable_datasets(NET, min_points=0),
        "min_points=0 must be an integer >= 1",
    ),
    (
        lambda: separable_datasets(NET, min_points=7),
        "min_points=7 must be <= max_points=6",
    ),
    (
        lambda: separable_datasets(NET, min_margin=0),
        "min_margin=0 must be a finite number in (0.0, 0.99]",
    ),
    (
        lambda: separable_datasets(NET, min_margin=1.0),
        "min_margin=1.0 must be a finite number in (0.0, 0.99]",
    ),
    (
        lambda: separable_datasets(NET, max_coordinate=float("inf")),
        "max_coordinate=inf must be a finite number in [1e-06, 1000000.0]",
    ),
    (
        lambda: initializations(NET, X, Y, kind="gaussian"),
        "kind='gaussian' must be a SearchStrategy",
    ),
    (
        lambda: initializations(NET, X, Y, kind=st.just("orthogonal")),
        "kind drew 'orthogonal'; every value it draws must be one of",
    ),
    (
        lambda: initializations(NET, X, Y, loss="hinge"),
        "loss='hinge' must be one of ('exponential', 'logistic')",
    ),
    (
        lambda: initializations(NET, X, Y, scale=-1.0),
        "scale=-1.0 must be a finite number in (0.0, 1000000.0]",
    ),
    (
        lambda: initializations(NET, X[:, :1], Y),
        "X has 1 columns but the network's input dimension is 2",
    ),
    (
        lambda: initializations(NET, X, np.array([1.0, 0.0])),
        "labels must be -1 or +1",
    ),
    (
        lambda: initializations(NET, X, Y, teacher=WRONG_TEACHER),
        "teacher must separate (X, y)",
    ),
    (
        lambda: initializations(NET, X, Y, teacher=TEACHER[:2]),
        "teacher must have shape (3,) for this network",
    ),
    (
        lambda: initializations(NET, X, Y, kind=st.just("past_threshold")),
        "kind drew 'past_threshold', which needs teacher=",
    ),
    (
        lambda: training_cases(networks=NET),
        "networks=from_index_maps(",
    ),
    (
        lambda: training_cases(networks=st.just(42)),
        "the network drawn from networks=42 must be an invariants.networks.Network",
    ),
    (
        lambda: training_cases(losses=st.just("hinge")),
        "losses drew 'hinge'; every value it draws must be one of",
    ),
    (
        lambda: training_cases(init_kinds="balanced"),
        "init_kinds='balanced' must be a SearchStrategy",
    ),
    (
        lambda: training_cases(max_points=0),
        "max_points=0 must be an integer >= 1",
    ),
]


@pytest.mark.parametrize(
    "make, message", BAD_ARGUMENTS, ids=[m for _, m in BAD_ARGUMENTS]
)
def test_bad_arguments_raise_invalid_argument(make, message):
    strategy = make()  # lazy: nothing is checked yet
    with pytest.raises(InvalidArgument, match=re.escape(message)):
        first_use(strategy)


def test_good_arguments_pass_the_same_checks():
    first_use(initializations(NET, X, Y, teacher=TEACHER))
    first_use(separable_datasets(NET, min_margin=0.99, max_coordinate=1e6))
    first_use(architectures(min_depth=1, max_depth=1, max_input_dim=1, max_width=1))
