"""Separable datasets for a given network, and whole training cases.

Datasets are separable by construction, never by filtering. Each comes with a teacher
theta* (a parameter vector of the same network) such that, for every point,

    y_i Phi(theta*; x_i) >= min_margin ||x_i||     and     |Phi(theta*; x_i)| <= ||x_i||

(the second up to rounding, relative 1e-9). So ``min_margin`` in (0, 0.99] is a margin
relative to the teacher's largest gain on the sample; for a linear teacher u.x with
||u|| = 1 it is the sine of the angle between x_i and the hyperplane u.x = 0. Two
constructions:

- Linear fully connected and diagonal networks compute every u.x, so a unit direction
  u is drawn; each point keeps the side of the hyperplane u.x = 0 it was drawn on and
  its component along u is raised until the margin holds; the teacher computes u.x.
- Every other network (ReLU, convolutional, no-share, shared): a Gaussian teacher from
  a Hypothesis-drawn seed, repaired so that it is nonzero on an anchor input (a path
  of positive pre-activations), labels y_i = sign Phi(theta*; x_i), and points whose
  relative margin is too small are moved along the segment towards the best point
  (Phi is continuous), not dropped. The teacher is then scaled so the best point's
  relative margin is 1.

Points are finite, never subnormal, |x_ij| <= max_coordinate, and have infinity norm
>= max_coordinate / 16 (a point near 0 has a vanishing absolute margin). Two copies of
a point never carry opposite labels: a label is the sign of Phi(theta*; x), a function
of x, and the margin keeps it away from 0.
"""

from __future__ import annotations

import numpy as np
from hypothesis import event, note, reject
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument

from invariants.casefile import Case
from invariants.networks import Network
from invariants.validation import LOSSES
from strategies import _teachers
from strategies._printing import Dataset, exact
from strategies._validation import (
    check_choice,
    check_integer,
    check_le,
    check_network,
    check_number,
    check_strategy,
    lazy_strategy,
)
from strategies.architectures import architectures
from strategies.initializations import INIT_KINDS, initializations

__all__ = ["Dataset", "separable_datasets", "training_cases"]

MAX_MIN_MARGIN = 0.99
DEFAULT_NETWORKS = architectures()
# Exponential first: cases shrink towards the exponential loss.
DEFAULT_LOSSES = st.sampled_from(LOSSES)


def separable_datasets(
    network: Network,
    *,
    min_points: int = 1,
    max_points: int = 6,
    min_margin: float = 0.1,
    max_coordinate: float = 4.0,
) -> st.SearchStrategy[Dataset]:
    """Datasets ``(X, y)`` that `network` separates with relative margin min_margin.

    Returns `Dataset` records, which unpack as ``X, y`` and print exactly. See the
    module docstring for the contract. Shrinks towards one point: for a linear fully
    connected or diagonal network e_1 (the first basis vector) labelled +1; for any
    other network the anchor (max_coordinate / 2) e_b, b the first input with a path
    to the output, labelled by the teacher of seed 0.
    """
    options = _dataset_options(
        network, min_points, max_points, min_margin, max_coordinate
    )
    return lazy_strategy(
        "separable_datasets",
        lambda: _labelled(**_checked(**options)).map(lambda pair: pair[0]),
        **options,
    )


def _teacher_datasets(
    network: Network,
    *,
    min_points: int = 1,
    max_points: int = 6,
    min_margin: float = 0.1,
    max_coordinate: float = 4.0,
) -> st.SearchStrategy[tuple[Dataset, np.ndarray]]:
    """`separable_datasets` with the teacher: pairs (Dataset, theta*)."""
    options = _dataset_options(
        network, min_points, max_points, min_margin, max_coordinate
    )
    return lazy_strategy(
        "_teacher_datasets", lambda: _labelled(**_checked(**options)), **options
    )


def _dataset_options(network, min_points, max_points, min_margin, max_coordinate):
    return {
        "network": network,
        "min_points": min_points,
        "max_points": max_points,
        "min_margin": min_margin,
        "max_coordinate": max_coordinate,
    }


def _checked(network, min_points, max_points, min_margin, max_coordinate) -> dict:
    network = check_network(network)
    if _teachers.input_path(network) is None:
        raise InvalidArgument(
            f"network={network!r} computes 0 for every theta: no input reaches the "
            "output through its index maps, so no dataset is separable"
        )
    return {"network": network} | _checked_sizes(
        min_points, max_points, min_margin, max_coordinate
    )


def _checked_sizes(min_points, max_points, min_margin, max_coordinate) -> dict:
    min_points = check_integer(min_points, "min_points", 1)
    max_points = check_integer(max_points, "max_points", 1)
    check_le("min_points", min_points, "max_points", max_points)
    return {
        "min_points": min_points,
        "max_points": max_points,
        "min_margin": check_number(
            min_margin, "min_margin", low=0.0, high=MAX_MIN_MARGIN, low_open=True
        ),
        # Outside this range Phi under- or overflows long before the flow is done.
        "max_coordinate": check_number(
            max_coordinate, "max_coordinate", low=1e-6, high=1e6
        ),
    }


@st.composite
def _labelled(
    draw, network, min_points, max_points, min_margin, max_coordinate
) -> tuple[Dataset, np.ndarray]:
    n = draw(st.integers(min_points, max_points))
    coordinate = st.floats(
        -max_coordinate,
        max_coordinate,
        allow_nan=False,
        allow_infinity=False,
        allow_subnormal=False,
    )
    d = network.input_dim
    points = [[draw(coordinate) for _ in range(d)] for _ in range(n)]
    X = _teachers.snap(points, max_coordinate)
    margin = _teachers.target_margin(min_margin)
    if _teachers.computes_every_direction(network):
        u = _teachers.snap([draw(st.floats(-1, 1)) for _ in range(d)], 1.0)
        X, theta = _direction_data(network, X, u, margin)
    else:
        X, theta = _teacher_data(draw, network, X, margin, max_coordinate)
    X = _teachers.into_box(X, max_coordinate)
    y = np.where(network.outputs(theta, X) > 0.0, 1.0, -1.0)
    return Dataset(exact(X), exact(y)), exact(theta)


def _direction_data(network, X, u, margin):
    if not np.any(u):
        u = np.eye(len(u))[0]
    u = u / np.linalg.norm(u)
    # Each point keeps the side of u.x = 0 it was drawn on (+1 when on it), so the
    # labels cost no extra draws and shrink with the points.
    labels = np.where(X @ u < 0.0, -1.0, 1.0)
    X = np.array(
        [_teachers.direction_point(u, label, x, margin) for label, x in zip(labels, X)]
    )
    return X, _teachers.direction_teacher(network, u)


def _teacher_data(draw, network, X, margin, max_coordinate):
    seed = draw(st.integers(0, 2**32 - 1))
    theta = np.random.default_rng(seed).standard_normal(network.num_parameters)
    anchor = np.zeros(network.input_dim)
    anchor[_teachers.input_path(network)[0]] = max_coordinate / 2
    if not _teachers.repair_teacher(network, theta, anchor):
        reject()  # probability zero for a Gaussian teacher; see repair_teacher
    anchor_margin = _teachers.relative_margins(network, theta, anchor[None, :])[0]
    if np.max(_teachers.relative_margins(network, theta, X)) < 1e-6 * anchor_margin:
        # Every drawn point is (nearly) dead for the teacher; measured against a best
        # point with a vanishing margin, the teacher's scale would degenerate.
        X[0] = anchor
    X = _teachers.fit_points(network, theta, X, margin)
    # The best relative margin on the final sample becomes 1 (a hair under).
    best = float(np.max(_teachers.relative_margins(network, theta, X)))
    theta = theta * (best * (1.0 + 1e-12)) ** (-1.0 / network.depth)
    return X, theta


# -- whole cases -----------------------------------------------------------------------


def training_cases(
    *,
    networks: st.SearchStrategy[Network] = DEFAULT_NETWORKS,
    losses: st.SearchStrategy[str] = DEFAULT_LOSSES,
    init_kinds: st.SearchStrategy[str] | None = None,
    min_points: int = 1,
    max_points: int = 6,
    min_margin: float = 0.1,
    max_coordinate: float = 4.0,
) -> st.SearchStrategy[Case]:
    """`invariants.casefile.Case` records: network, separable (X, y), theta0, loss.

    Draws the loss, the network, the dataset with its teacher (see
    `separable_datasets`), then theta0 from `initializations` with that teacher. With
    ``init_kinds=None`` the kind depends on the network, so that gradient flow can fit
    the data: a ReLU network starts ``"past_threshold"`` (the teacher, slightly
    perturbed, scaled until the loss is below the threshold of Theorem 2.1), because
    from a random start a ReLU network can stall with dead neurons; a linear network
    starts from any kind. Shrinks towards the exponential loss, the smallest fully
    connected network (widths (1, 1, 1)) and one point. Records the family, depth and
    kind with `event()` and describes the network with `note()`.
    """
    options = {
        "networks": networks,
        "losses": losses,
        "init_kinds": init_kinds,
        "min_points": min_points,
        "max_points": max_points,
        "min_margin": min_margin,
        "max_coordinate": max_coordinate,
    }

    def build() -> st.SearchStrategy[Case]:
        check_strategy(networks, "networks")
        check_strategy(losses, "losses")
        if init_kinds is not None:
            check_strategy(init_kinds, "init_kinds")
        sizes = _checked_sizes(min_points, max_points, min_margin, max_coordinate)
        return _cases(networks, losses, init_kinds, **sizes)

    return lazy_strategy("training_cases", build, **options)


@st.composite
def _cases(draw, networks, losses, init_kinds, **dataset_options) -> Case:
    loss = check_choice(draw(losses), "losses", LOSSES)
    network = check_network(draw(networks), "the network drawn from networks")
    dataset, teacher = draw(_teacher_datasets(network, **dataset_options))
    if init_kinds is None:
        kinds = st.sampled_from(INIT_KINDS)
        if not network.is_linear:
            # As many entries as INIT_KINDS: a ReLU case then draws the same sequence
            # of choices as a linear one, so the shrinker can move between the two.
            kinds = st.sampled_from(["past_threshold"] * len(INIT_KINDS))
    else:
        kinds = init_kinds
    theta0 = draw(
        initializations(
            network, dataset.X, dataset.y, kind=kinds, loss=loss, teacher=teacher
        )
    )
    event(f"family: {network.family}")
    event(f"depth: {network.depth}")
    note(f"network: {network.describe()}")
    return Case(network, dataset.X, dataset.y, theta0, loss)
