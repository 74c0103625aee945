"""The paper's constructions as data, with their closed-form limits and witnesses.

Each `Construction` holds a `Case` (network, data, the proof's initialisation and
the exponential loss), the limit theta_tilde that the proof derives in closed form
(rescaled so that its smallest margin is exactly 1), ||theta_tilde||^2, and, where
the paper gives one, its witness: a feasible theta' with a smaller norm.

Every theta is in the network's parameter order [u^(1), ..., u^(m)]:

- fully-connected depth 2: [w_1, ..., w_k, v] (W^(1) read row by row, then v);
- diagonal depth m: [w_1, ..., w_m] (the diagonals, then the output row);
- the convolutional net of Theorem 4.4: [filter w (2), v (2)].

Source: /work/shared/paper/THEOREMS.md, "The constructions". The suite checks that
gradient flow from each initialisation reaches the stated limit and that each
witness is feasible and shorter; this module only states them.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from invariants.casefile import Case
from invariants.networks import convolutional, diagonal, fully_connected
from invariants.validation import check_loss

__all__ = ["CONSTRUCTIONS", "Construction", "get", "names"]

Witness = Callable[[float], np.ndarray]


@dataclass(frozen=True, eq=False)
class Construction:
    """One of the paper's constructions.

    `witness(eps)`, if not None, is the paper's family of feasible points theta'
    with ||theta'|| < ||theta_tilde|| and theta' -> theta_tilde as eps -> 0 (a proof
    that theta_tilde is not a local optimum); `eps` is the parameter named in the
    note, valid for 0 < eps <= `max_eps`. `witness_norm_squared(eps)` is the paper's
    closed form of ||theta'||^2. `better_point`, if not None, is a fixed feasible
    point with a smaller norm (theta_tilde is not a global optimum). `changed_layers`
    lists the layers (from 1) in which the witness or better point differs from
    theta_tilde, when the theorem is about those layers alone.
    """

    name: str
    theorem: str
    case: Case
    limit: np.ndarray
    norm_squared: float
    witness: Witness | None = None
    witness_norm_squared: Callable[[float], float] | None = None
    max_eps: float = 0.0
    better_point: np.ndarray | None = None
    changed_layers: tuple[int, ...] | None = None
    note: str = ""

    def __post_init__(self) -> None:
        limit = np.array(self.limit, dtype=float)
        if limit.shape != (self.case.network.num_parameters,):
            raise ValueError(
                f"{self.name}: limit has shape {limit.shape}, the network has "
                f"{self.case.network.num_parameters} parameters"
            )
        limit.setflags(write=False)
        object.__setattr__(self, "limit", limit)
        if self.better_point is not None:
            better = np.array(self.better_point, dtype=float)
            better.setflags(write=False)
            object.__setattr__(self, "better_point", better)

    @property
    def network(self):
        return self.case.network

    @property
    def direction(self) -> np.ndarray:
        """theta_tilde / ||theta_tilde||, the direction GF converges to."""
        return self.limit / np.linalg.norm(self.limit)

    def with_loss(self, loss: str) -> Construction:
        """The same construction trained with `loss` ("exponential" or "logistic").

        The limit does not depend on the loss: both have the exponential tail that
        Theorem 2.1 needs, and every initial loss here is below log 2.
        """
        check_loss(loss)
        case = dataclasses.replace(self.case, loss=loss)
        return dataclasses.replace(self, case=case)

    def __repr__(self) -> str:
        return f"<Construction {self.name!r} ({self.theorem})>"


def _case(network, X, y, theta0, name: str) -> Case:
    return Case(
        network,
        np.asarray(X, float),
        np.asarray(y, float),
        np.asarray(theta0, float),
        "exponential",
        name,
    )


# -- Theorem 3.2 -----------------------------------------------------------------------


def thm3_2() -> Construction:
    """Depth-2 ReLU, 2 neurons: neuron 2 starts dead on both points and freezes."""
    net = fully_connected((2, 2, 1), "relu")
    X = [[1.0, 0.25], [-1.0, 0.25]]
    # The proof's event: w_1.x_i > 0, w_2.x_i < 0 for both points, v_1 > 0. Neuron 1
    # is scaled so the initial loss is already below log 2 (exponential 0.42,
    # logistic 0.36). Neuron 2 stays at its initial value for ever, so it is off
    # the limit direction by ||neuron 2|| / ||theta||; it is kept small (norm
    # 0.15) so that at ||theta|| = 1e8 that offset is ~1.5e-9, below the 1e-8 the
    # suite asks of the simulator.
    w1, v1 = (0.5, 4.0), 2.0
    w2, v2 = (0.02, -0.15), 0.05
    theta0 = [*w1, *w2, v1, v2]
    limit = [0.0, 2.0, 0.0, 0.0, 2.0, 0.0]

    def witness(eps: float) -> np.ndarray:
        r = math.sqrt(2.0 * eps)
        return np.array([eps / 2, 2.0 - 2.0 * eps, -r, 0.0, 2.0, r])

    return Construction(
        name="thm3.2",
        theorem="Theorem 3.2",
        case=_case(net, X, [1, 1], theta0, "thm3.2"),
        limit=np.array(limit),
        norm_squared=8.0,
        witness=witness,
        witness_norm_squared=lambda eps: 8.0 - 4.0 * eps + 17.0 * eps**2 / 4.0,
        max_eps=0.01,
        note=(
            "x_1 = (1, 1/4), x_2 = (-1, 1/4), y = (1, 1). Init w_1 = (0.5, 4), "
            "v_1 = 2, w_2 = (0.02, -0.15), v_2 = 0.05 lies in the proof's event. "
            "Limit w_1 = (0, 2), v_1 = 2, neuron 2 = 0: a KKT point that is not a "
            "local optimum. Witness eps = eps'^2 / 9 for radius eps'."
        ),
    )


# -- Theorem 4.1 -----------------------------------------------------------------------


def thm4_1(activation: str = "linear") -> Construction:
    """Diagonal depth 2, one point; the second coordinate starts at a saddle."""
    net = diagonal(2, 2, activation)

    def witness(eps: float) -> np.ndarray:
        w = [math.sqrt(1.0 - eps), math.sqrt(eps / 2.0)]
        return np.array(w + w)

    return Construction(
        name=f"thm4.1-{activation}",
        theorem="Theorem 4.1",
        case=_case(
            net, [[1.0, 2.0]], [1], [1.0, 0.0, 1.0, 0.0], f"thm4.1-{activation}"
        ),
        limit=np.array([1.0, 0.0, 1.0, 0.0]),
        norm_squared=2.0,
        witness=witness,
        witness_norm_squared=lambda eps: 2.0 - eps,
        max_eps=0.01,
        note=(
            "x = (1, 2), y = 1, w_1(0) = w_2(0) = (1, 0). Limit (1, 0) in both "
            "layers, not a local optimum: w' = (sqrt(1 - eps), sqrt(eps / 2))."
        ),
    )


# -- Theorem 4.2 (2), Theorem 5.3 ------------------------------------------------------

_X_4_2 = [[0.0, 1.0], [1.0, 0.0], [0.0, -1.0], [-1.0, 0.0]]


def _thm4_2_2_witness(eps: float) -> np.ndarray:
    e = eps / (2.0 * math.sqrt(2.0))
    w = [e, 1 - e, 1 - e, -e, -e, -1 + e, -1 + e, e]
    return np.array(w + [1.0] * 4)


def _thm4_2_2_witness_norm_squared(eps: float) -> float:
    e = eps / (2.0 * math.sqrt(2.0))
    return 8.0 + 8.0 * e * (e - 1.0)


def thm4_2_2(name: str = "thm4.2.2", theorem: str = "Theorem 4.2 (2)") -> Construction:
    """Depth-2 ReLU, 4 neurons, 4 points on the axes: all w_l != 0 at the limit."""
    net = fully_connected((2, 4, 1), "relu")
    X = np.array(_X_4_2)
    theta0 = np.concatenate([2.0 * X.ravel(), [2.0] * 4])
    limit = np.concatenate([X.ravel(), [1.0] * 4])
    return Construction(
        name=name,
        theorem=theorem,
        case=_case(net, X, [1] * 4, theta0, name),
        limit=limit,
        norm_squared=8.0,
        witness=_thm4_2_2_witness,
        witness_norm_squared=_thm4_2_2_witness_norm_squared,
        max_eps=0.01,
        changed_layers=(1,),
        note=(
            "x_1..x_4 = (0, 1), (1, 0), (0, -1), (-1, 0), y = 1, w_j(0) = 2 x_j, "
            "v_j(0) = 2. Limit w_j = x_j, v_j = 1; some inputs to neurons are 0. "
            "Witness with eps' = eps / (2 sqrt 2) changes only the first layer."
        ),
    )


def thm5_3() -> Construction:
    """Theorem 5.3: the Thm 4.2 (2) case; its witness moves only layer 1, so the
    first layer is not a local optimum of Problem 4."""
    c = thm4_2_2(name="thm5.3", theorem="Theorem 5.3")
    return dataclasses.replace(
        c,
        note=c.note + " Layer 1 of the limit is not a local optimum of Problem 4.",
    )


# -- Lemma C.6, Theorem 5.4 ------------------------------------------------------------


def lemma_c6(name: str = "lemmaC.6", theorem: str = "Lemma C.6") -> Construction:
    """Depth-2 ReLU, 3 points: every input non-zero at the limit (so a local
    optimum by Thm 4.3) and still not a global one."""
    net = fully_connected((2, 2, 1), "relu")
    X = [[1.0, 0.25], [-1.0, 0.25], [0.0, -1.0]]
    theta0 = [0.0, 3.0, 0.0, -2.0, 3.0, 2.0]
    limit = [0.0, 2.0, 0.0, -1.0, 2.0, 1.0]
    x1 = np.array(X[0])
    w1 = x1 / (2.0 * np.linalg.norm(x1))
    better = np.array([*w1, -1.25, -1.0, 2.0, 1.0])
    return Construction(
        name=name,
        theorem=theorem,
        case=_case(net, X, [1] * 3, theta0, name),
        limit=np.array(limit),
        norm_squared=10.0,
        better_point=better,
        changed_layers=(1,),
        note=(
            "x_1 = (1, 1/4), x_2 = (-1, 1/4), x_3 = (0, -1), y = 1. Limit "
            "w_1 = (0, 2), v_1 = 2, w_2 = (0, -1), v_2 = 1, ||theta||^2 = 10. "
            "Better point w_1 = x_1 / (2 ||x_1||), w_2 = (-5/4, -1), same v: "
            "||theta'||^2 = 7.8125. It changes only the first layer."
        ),
    )


def thm5_4_not_global() -> Construction:
    """Theorem 5.4, negative part: the Lemma C.6 case; its better point moves only
    layer 1, so that layer is a local but not a global optimum of Problem 4."""
    c = lemma_c6(name="thm5.4-not-global", theorem="Theorem 5.4")
    return dataclasses.replace(
        c,
        note=c.note + " Layer 1 is not a global optimum of Problem 4.",
    )


# -- Theorem 4.4 -----------------------------------------------------------------------


def thm4_4(activation: str = "relu") -> Construction:
    """One shared filter over two patches: both inputs to neurons are non-zero at
    the limit and it is still not a local optimum."""
    net = convolutional(4, 2, 2, activation)
    r = 1.0 / math.sqrt(2.0)

    def witness(eps: float) -> np.ndarray:
        s = math.sqrt(eps)
        return np.array([s, 1.0 - eps, r + s / 2.0, r - s / 2.0])

    return Construction(
        name=f"thm4.4-{activation}",
        theorem="Theorem 4.4",
        case=_case(
            net, [[4.0, r, -4.0, r]], [1], [0.0, 1.0, r, r], f"thm4.4-{activation}"
        ),
        limit=np.array([0.0, 1.0, r, r]),
        norm_squared=2.0,
        witness=witness,
        witness_norm_squared=lambda eps: 2.0 - eps / 2.0 + eps**2,
        max_eps=0.01,
        note=(
            "x = (4, 1/sqrt 2, -4, 1/sqrt 2), y = 1, w(0) = (0, 1), "
            "v(0) = (1/sqrt 2, 1/sqrt 2), which is already the limit direction. "
            "Witness eps = eps'^2 / 2: output 1 + 3 eps, "
            "||theta'||^2 = 2 - eps/2 + eps^2."
        ),
    )


# -- Theorem 5.1 -----------------------------------------------------------------------


def thm5_1(depth: int, activation: str = "linear") -> Construction:
    """Diagonal depth m >= 3, x = (1, 1): the balanced limit is not a local optimum."""
    if depth < 3:
        raise ValueError(f"depth={depth!r}: Theorem 5.1 needs depth >= 3")
    net = diagonal(2, depth, activation)
    c = 2.0 ** (-1.0 / depth)

    def witness(eps: float) -> np.ndarray:
        w = [((1.0 + eps) / 2.0) ** (1.0 / depth), ((1.0 - eps) / 2.0) ** (1.0 / depth)]
        return np.array(w * depth)

    def witness_norm_squared(eps: float) -> float:
        return depth * (
            ((1.0 + eps) / 2.0) ** (2.0 / depth) + ((1.0 - eps) / 2.0) ** (2.0 / depth)
        )

    name = f"thm5.1-m{depth}-{activation}"
    return Construction(
        name=name,
        theorem="Theorem 5.1",
        case=_case(net, [[1.0, 1.0]], [1], [1.0] * (2 * depth), name),
        limit=np.full(2 * depth, c),
        norm_squared=2.0 * depth * c**2,
        witness=witness,
        witness_norm_squared=witness_norm_squared,
        max_eps=0.1,
        note=(
            f"x = (1, 1), y = 1, w_j(0) = (1, 1), depth {depth}. Limit "
            "w_j = 2^(-1/m) (1, 1); witness w_j = (((1 + eps)/2)^(1/m), "
            "((1 - eps)/2)^(1/m)), shorter by O(eps^2)."
        ),
    )


# -- registry --------------------------------------------------------------------------


def _build() -> dict[str, Construction]:
    items = [
        thm3_2(),
        thm4_1("linear"),
        thm4_1("relu"),
        thm4_2_2(),
        lemma_c6(),
        thm4_4("relu"),
        thm4_4("linear"),
        *(thm5_1(m, a) for m in (3, 4, 5) for a in ("linear", "relu")),
        thm5_3(),
        thm5_4_not_global(),
    ]
    return {c.name: c for c in items}


CONSTRUCTIONS: dict[str, Construction] = _build()


def names() -> list[str]:
    """The registered construction names, in the paper's order."""
    return list(CONSTRUCTIONS)


def get(name: str) -> Construction:
    """The construction called `name`; KeyError listing the known names if none."""
    try:
        return CONSTRUCTIONS[name]
    except (KeyError, TypeError):
        raise KeyError(
            f"no construction named {name!r}; known: {', '.join(CONSTRUCTIONS)}"
        ) from None
