"""Initial parameter vectors theta0 for a network and a dataset.

Kinds (the ``kind`` strategy draws one per example):

- ``"gaussian"``: i.i.d. N(0, scale^2), from a Hypothesis-drawn seed fed to
  `numpy.random.default_rng`.
- ``"balanced"``: a Gaussian draw rescaled, without changing the function it computes,
  so that the quantities gradient flow conserves start at 0. For a network without
  shared weights (fully connected, diagonal, no-share) every hidden neuron's incoming
  norm equals its outgoing norm, ``sum_b W_l[j, b]^2 == sum_a W_(l+1)[a, j]^2`` (at
  depth 2: ||w_j|| = |v_j|), reached by positive per-neuron rescalings (row j of
  W_l times c, column j of W_(l+1) divided by c); this implies equal layer norms. With
  shared weights a neuron cannot be rescaled alone, so the layer norms ||u^(l)|| are
  made equal (each layer times c_l with prod c_l = 1).
- ``"past_threshold"``: needs ``teacher``, a parameter vector with every margin
  positive. theta0 = c * (teacher + delta) / ||teacher + delta||, with delta a random
  perturbation of relative size at most 0.25 (halved until every margin stays
  positive; it shrinks to 0) and c the smallest power of 2, at least 1, for which
  log L(theta0) < log_loss_threshold(loss) - log 2: the loss is at most half the
  threshold of Theorem 2.1, so the flow is in its margin-maximising phase from t = 0.

Results are float64 arrays of length `network.num_parameters` whose repr is exact.
"""

from __future__ import annotations

import math

import numpy as np
from hypothesis import event
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument
from numpy.typing import ArrayLike

from invariants.losses import log_loss, log_loss_threshold
from invariants.networks import Network
from invariants.validation import LOSSES
from strategies._printing import ExactArray, exact
from strategies._validation import (
    check_choice,
    check_network,
    check_number,
    check_one_of,
    check_strategy,
    checked_dataset,
    checked_theta,
    lazy_strategy,
)

__all__ = ["INIT_KINDS", "initializations"]

INIT_KINDS = ("gaussian", "balanced", "past_threshold")
DEFAULT_KINDS = st.sampled_from(INIT_KINDS)
MAX_PERTURBATION = 0.25
# log L at most log_loss_threshold - log 2: the loss is at most half the threshold.
THRESHOLD_SLACK = math.log(2.0)
# Per-neuron balancing is coordinate descent on a convex function of the log-scales;
# it stops when every neuron is balanced to this relative accuracy.
BALANCE_TOLERANCE = 1e-14
BALANCE_SWEEPS = 1_000  # about 80 suffice at depth 5, width 6


def initializations(
    network: Network,
    X: ArrayLike,
    y: ArrayLike,
    *,
    kind: st.SearchStrategy[str] = DEFAULT_KINDS,
    loss: str = "exponential",
    teacher: ArrayLike | None = None,
    scale: float = 1.0,
) -> st.SearchStrategy[ExactArray]:
    """theta0 for `network` on the dataset (X, y); see the module for the kinds.

    ``kind`` is a strategy (a fixed kind: ``st.just("balanced")``); ``loss`` fixes the
    threshold for ``"past_threshold"``, which needs ``teacher``; ``scale`` is the
    standard deviation of the Gaussian draws. Shrinks towards the first kind drawn by
    ``kind`` (``"gaussian"`` by default), the seed 0, and no perturbation.
    """
    options = {"network": network, "X": X, "y": y, "kind": kind, "loss": loss}
    options |= {"teacher": teacher, "scale": scale}

    def build() -> st.SearchStrategy[ExactArray]:
        net = check_network(network)
        X_, y_ = checked_dataset(net, X, y)
        check_strategy(kind, "kind")
        loss_ = check_one_of(loss, "loss", LOSSES)
        scale_ = check_number(scale, "scale", low=0.0, high=1e6, low_open=True)
        teacher_ = None
        if teacher is not None:
            teacher_ = checked_theta(net, teacher, "teacher")
            q = net.margins(teacher_, X_, y_)
            if not np.all(q > 0.0):
                i = int(np.argmin(q))
                raise InvalidArgument(
                    f"teacher must separate (X, y): every y_i Phi(teacher; x_i) must "
                    f"be > 0, but point {i} has {q[i]!r}"
                )
        return _initializations(net, X_, y_, kind, loss_, teacher_, scale_)

    return lazy_strategy("initializations", build, **options)


@st.composite
def _initializations(draw, network, X, y, kinds, loss, teacher, scale) -> ExactArray:
    kind = check_choice(draw(kinds), "kind", INIT_KINDS)
    event(f"init: {kind}")
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if kind == "gaussian":
        return exact(scale * rng.standard_normal(network.num_parameters))
    if kind == "balanced":
        return exact(
            balance(network, scale * rng.standard_normal(network.num_parameters))
        )
    if teacher is None:
        raise InvalidArgument(
            "kind drew 'past_threshold', which needs teacher=..., a parameter vector "
            "with y_i Phi(teacher; x_i) > 0 for every i; pass one or leave "
            "'past_threshold' out of kind"
        )
    size = draw(st.floats(0.0, MAX_PERTURBATION))
    return exact(past_threshold(network, X, y, teacher, loss, size, rng))


def balance(network: Network, theta: np.ndarray) -> np.ndarray:
    """theta rescaled, computing the same function, as the module docstring says."""
    theta = np.array(theta, dtype=float)
    if network.depth == 1:
        return theta
    if network.shares_weights:
        norms = np.array([np.linalg.norm(theta[s]) for s in network.layer_slices])
        if np.all(norms > 0.0):
            target = math.exp(float(np.mean(np.log(norms))))
            for s, norm in zip(network.layer_slices, norms):
                theta[s] *= target / norm
        return theta
    neurons = _neuron_parameters(network)
    for _ in range(BALANCE_SWEEPS):
        worst = 0.0
        for incoming, outgoing in neurons:
            a = float(theta[incoming] @ theta[incoming])
            b = float(theta[outgoing] @ theta[outgoing])
            if a == 0.0 or b == 0.0:
                continue  # probability zero for a Gaussian draw; nothing to scale
            worst = max(worst, abs(a - b) / (a + b))
            c = (b / a) ** 0.25
            theta[incoming] *= c
            theta[outgoing] /= c
        if worst < BALANCE_TOLERANCE:
            break
    return theta


def _neuron_parameters(network: Network) -> list[tuple[np.ndarray, np.ndarray]]:
    """(incoming, outgoing) positions in theta of every hidden neuron, no sharing."""
    out = []
    slices = network.layer_slices
    for l, j in network.hidden_neurons():
        P_in, P_out = network.index_maps[l - 1], network.index_maps[l]
        incoming = slices[l - 1].start + P_in[j][P_in[j] >= 0]
        outgoing = slices[l].start + P_out[:, j][P_out[:, j] >= 0]
        out.append((incoming, outgoing))
    return out


def past_threshold(network, X, y, teacher, loss, size, rng) -> np.ndarray:
    """c (teacher + delta) / ||teacher + delta||, as the module docstring says."""
    teacher = np.asarray(teacher, dtype=float)
    direction = rng.standard_normal(network.num_parameters)
    delta = size * np.linalg.norm(teacher) * direction / np.linalg.norm(direction)
    # Halving keeps the search deterministic; after 60 halvings delta is below the
    # last bit of the teacher and the teacher's own positive margins remain.
    for _ in range(60):
        if np.all(network.margins(teacher + delta, X, y) > 0.0):
            break
        delta = delta / 2.0
    else:
        delta = np.zeros_like(teacher)
    theta = teacher + delta
    theta = theta / np.linalg.norm(theta)
    bound = log_loss_threshold(loss) - THRESHOLD_SLACK
    # Margins grow like c^m, so a few doublings suffice unless a margin is tiny;
    # 1100 doublings would overflow, by which time something else is wrong.
    for _ in range(1100):
        if log_loss(network.margins(theta, X, y), loss) < bound:
            return theta
        theta = 2.0 * theta
    raise InvalidArgument(
        f"teacher margins are too small to scale past the loss threshold: "
        f"min margin {float(np.min(network.margins(teacher, X, y)))!r}"
    )
