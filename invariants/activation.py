"""Where inputs to neurons are zero: the activation pattern of a ReLU network.

The paper's guarantees for ReLU networks hold where every input to a neuron is
non-zero at the limit; where one is zero, ReLU' ranges over the whole Clarke
interval [0, 1]. A limit reached numerically is never exactly on a kink, so zero is
judged against the layer's own scale: |z| <= tol * ||h|| * ||W^(l)||_F, with h the
sample's input to the layer. The layer's scale, not the neuron's, because a neuron
that GF leaves behind (frozen near its initial size while ||theta|| grows) has
inputs that are tiny against the network although not against its own weights.
"""

from __future__ import annotations

import numpy as np

from invariants.networks import Network

__all__ = ["ZERO_INPUT_TOL", "activation_pattern", "input_scales", "zero_inputs"]

# A GF limit is read off at ||theta|| around 1e8, where a neuron left behind has
# relative size ~1e-8 and a converged direction is accurate to far better than 1e-6;
# 1e-6 sits between the two.
ZERO_INPUT_TOL = 1e-6


def input_scales(network: Network, theta: np.ndarray, X: np.ndarray):
    """Pre-activations Z_l (n, d_l) of the hidden layers and the scale each is judged
    against, ||h_{l-1, i}|| * ||W^(l)||_F, for l = 1..m-1."""
    Ws = network.weight_matrices(theta)
    Zs = network.forward(theta, X).preactivations[:-1]
    H = X
    out = []
    for W, Z in zip(Ws[:-1], Zs):
        scale = np.linalg.norm(H, axis=1)[:, None] * np.linalg.norm(W)
        out.append((Z, np.broadcast_to(scale, Z.shape)))
        H = np.maximum(Z, 0.0) if network.activation == "relu" else Z
    return out


def activation_pattern(
    network: Network, theta: np.ndarray, X: np.ndarray, *, tol: float = ZERO_INPUT_TOL
) -> list[np.ndarray]:
    """Per hidden layer, an int array (n, d_l): +1 where the input to the neuron is
    positive, -1 where negative, 0 where it is zero within `tol` of the layer's
    scale. Linear networks have no pattern to speak of and get all +1."""
    if not tol >= 0:
        raise ValueError(f"tol must be >= 0, got tol={tol!r}")
    pattern = []
    for Z, scale in input_scales(network, np.asarray(theta, float), X):
        if network.activation != "relu":
            pattern.append(np.ones(Z.shape, dtype=np.int8))
            continue
        p = np.sign(Z).astype(np.int8)
        p[np.abs(Z) <= tol * scale] = 0
        pattern.append(p)
    return pattern


def zero_inputs(
    network: Network, theta: np.ndarray, X: np.ndarray, *, tol: float = ZERO_INPUT_TOL
) -> list[tuple[int, int, int]]:
    """(layer, sample, neuron) of every zero input to a neuron of a ReLU network,
    layers counted from 1. Empty for linear networks."""
    if network.activation != "relu":
        return []
    found = []
    for l, p in enumerate(activation_pattern(network, theta, X, tol=tol), start=1):
        for i, a in zip(*np.nonzero(p == 0)):
            found.append((l, int(i), int(a)))
    return found
