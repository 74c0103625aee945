"""Which of the paper's theorems governs a GF limit, and what it guarantees.

`classify(network, theta_tilde, X)` reads the network's structure (fully connected,
no-share, shared weights, depth, activation) and the limit's zero structure (neurons
whose incoming weights vanish, inputs to neurons that vanish, both judged against
the layer's scale as in `invariants.activation`) and returns the strongest guarantee
the paper proves, ordered

    global > local > per-layer global > per-layer local > kkt,

with the theorem that proves it, and the theorem whose construction shows that the
next stronger guarantee can fail in this regime. Every limit of GF past the loss
threshold is at least a KKT point (Theorem 2.1), so "kkt" is the floor.

Per-layer guarantees concern Problem 4: u~^(l) optimal with the other layers fixed.
For linear networks every layer is globally optimal (Theorem 5.2). For ReLU networks
layer l is locally optimal when no input to a neuron in layers l..m-1 is zero
(Theorem 5.4); for the last layer that condition is empty.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike

from invariants.activation import ZERO_INPUT_TOL, zero_inputs
from invariants.kkt import KKT_TOL
from invariants.networks import Network
from invariants.validation import check_dataset, check_theta

__all__ = ["GUARANTEES", "Regime", "classify"]

# Strongest first.
GUARANTEES = ("global", "local", "per-layer global", "per-layer local", "kkt")


@dataclass(frozen=True)
class Regime:
    """The classifier's answer for one limit.

    `guarantee` is one of GUARANTEES, proved by `theorem`. `counterexample` names the
    theorem whose construction shows that the next stronger guarantee can fail here
    (None when the guarantee is already global). `layers` maps each layer with a
    per-layer guarantee to ("global" | "local", theorem), and `unguaranteed_layers`
    each other layer to the theorem whose construction shows it can fail there (a
    zero input at or above the layer: Theorem 5.3). `facts` records what the
    decision read off the network and the limit."""

    guarantee: str
    theorem: str
    counterexample: str | None
    reason: str
    layers: dict = field(default_factory=dict)
    facts: dict = field(default_factory=dict)

    @property
    def unguaranteed_layers(self) -> dict:
        depth = self.facts.get("depth", 0)
        return {l: "5.3" for l in range(1, depth + 1) if l not in self.layers}

    def at_least(self, guarantee: str) -> bool:
        """Whether this regime's guarantee is `guarantee` or stronger."""
        if guarantee not in GUARANTEES:
            raise ValueError(
                f"guarantee must be one of {GUARANTEES}, got {guarantee!r}"
            )
        return GUARANTEES.index(self.guarantee) <= GUARANTEES.index(guarantee)

    def to_json(self) -> dict:
        return {
            "guarantee": self.guarantee,
            "theorem": self.theorem,
            "counterexample": self.counterexample,
            "reason": self.reason,
            "layers": {str(k): list(v) for k, v in self.layers.items()},
            "unguaranteed_layers": {
                str(k): v for k, v in self.unguaranteed_layers.items()
            },
            "facts": self.facts,
        }


def classify(
    network: Network,
    theta_tilde: ArrayLike,
    X: ArrayLike,
    *,
    y: ArrayLike | None = None,
    tol: float = ZERO_INPUT_TOL,
) -> Regime:
    """The strongest guarantee the paper proves for the limit theta_tilde of GF on
    data X, and the theorems behind it (see the module docstring).

    The guarantees are about limits of GF, which are KKT points of Problem 2; the
    classifier reads only structure and zeros, so it cannot tell a limit from any
    other point. Pass the labels `y` to have it refuse a theta_tilde that is not a
    KKT point (`invariants.kkt.assert_kkt`), rather than classify it as if it were."""
    theta = check_theta(theta_tilde, network.num_parameters, "theta_tilde")
    if not np.any(theta):
        raise ValueError("theta_tilde = 0 has no direction: it is no GF limit")
    X = check_dataset(X, None, network.input_dim)[0]
    if y is not None:
        from invariants.kkt import kkt_point

        point = kkt_point(network, X, y, theta)
        if not point.residual <= KKT_TOL:
            raise ValueError(
                f"theta_tilde is not a KKT point of Problem 2 (kkt_residual "
                f"{point.residual:.3g} > {KKT_TOL:g}), so no theorem of the paper "
                "is about it; classify the limit of a converged flow"
            )
    m, relu = network.depth, network.activation == "relu"
    zeros = zero_inputs(network, theta, X, tol=tol)
    dead = _zero_neurons(network, theta, tol)
    facts = {
        "family": network.family,
        "depth": m,
        "activation": network.activation,
        "fully_connected": network.is_fully_connected,
        "no_share": network.is_no_share,
        "zero_neurons": dead,
        "zero_inputs": len(zeros),
        "zero_input_layers": sorted({l for l, _, _ in zeros}),
    }
    layers = _layer_guarantees(network, zeros)

    def regime(guarantee, theorem, counterexample, reason):
        return Regime(guarantee, theorem, counterexample, reason, layers, facts)

    depth2_no_share = m == 2 and network.is_no_share
    if not relu:
        if network.is_fully_connected:
            return regime("global", "3.1", None, "fully-connected linear network")
        if depth2_no_share and not dead:
            return regime(
                "global", "4.2 (1)", None, "depth-2 linear N_no-share, every w~_l != 0"
            )
        if depth2_no_share:
            why = "4.1", f"depth-2 linear N_no-share with zero neurons {dead}"
        elif m == 2:
            why = "4.4", "depth-2 linear network with shared weights"
        else:
            why = "5.1", f"depth-{m} linear network that is not fully connected"
        return regime("per-layer global", "5.2", *why)

    if depth2_no_share and not zeros:
        return regime(
            "local",
            "4.3",
            "Lemma C.6",
            "depth-2 ReLU N_no-share, every input to every neuron non-zero",
        )
    if depth2_no_share:
        if dead:
            why = (
                "3.2" if network.is_fully_connected else "4.1",
                f"depth-2 ReLU N_no-share with zero neurons {dead}",
            )
        else:
            why = "4.2 (2)", "depth-2 ReLU N_no-share with a zero input to a neuron"
    elif m == 2:
        why = "4.4", "depth-2 ReLU network with shared weights"
    else:
        why = "5.1", f"depth-{m} ReLU network"
    return regime("per-layer local", "5.4", *why)


def _layer_guarantees(network: Network, zeros) -> dict:
    m = network.depth
    if network.activation != "relu":
        return {l: ("global", "5.2") for l in range(1, m + 1)}
    lowest_blocked = max((l for l, _, _ in zeros), default=0)
    return {l: ("local", "5.4") for l in range(lowest_blocked + 1, m + 1)}


def _zero_neurons(network: Network, theta: np.ndarray, tol: float) -> list:
    """(layer, neuron) of hidden neurons whose incoming weights are zero against
    ||theta||: a neuron GF left behind."""
    size = float(np.linalg.norm(theta))
    out = []
    for l, W in enumerate(network.weight_matrices(theta)[:-1], start=1):
        rows = np.linalg.norm(W, axis=1)
        out.extend((l, int(a)) for a in np.flatnonzero(rows <= tol * size))
    return out
