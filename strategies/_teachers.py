"""Separable datasets by construction: the geometry behind `separable_datasets`.

Both constructions return the data and a teacher theta* (a parameter vector of the
network) with the contract, for every point i,

    y_i * Phi(theta*; x_i) >= min_margin * ||x_i||     and
    |Phi(theta*; x_i)| <= ||x_i|| (1 + 1e-9),

so min_margin is a margin relative to the teacher's largest gain on the sample (for a
linear teacher u.x with ||u|| = 1, the sine of the angle between x_i and the
hyperplane u.x = 0). Phi is positively homogeneous of degree 1 in x, so rescaling a
point keeps its relative margin; this is what lets every point be moved into the box
|x_ij| <= max_coordinate and above the norm floor without breaking the contract.
"""

from __future__ import annotations

import numpy as np

from invariants.networks import Network

__all__ = [
    "computes_every_direction",
    "direction_teacher",
    "fit_points",
    "input_path",
    "is_diagonal",
    "repair_teacher",
    "target_margin",
]

# Construction aims above min_margin by this fraction of (1 - min_margin), so that
# rounding in later rescalings (relative 1e-15) never takes a margin below the bound.
MARGIN_SLACK = 1e-3
# Points are scaled up to at least this fraction of max_coordinate (infinity norm):
# a point near 0 has a tiny absolute margin and would stall the flow.
NORM_FLOOR = 1.0 / 16.0
# Drawn coordinates below this fraction of max_coordinate are snapped to 0: products
# of such values could otherwise reach the subnormal range.
SNAP = 2.0**-40
# Fixing a point moves it along the segment towards the best point, in these steps.
SEGMENT_STEPS = 64


def target_margin(min_margin: float) -> float:
    return min_margin + (1.0 - min_margin) * MARGIN_SLACK


def snap(values: np.ndarray, max_coordinate: float) -> np.ndarray:
    values = np.array(values, dtype=float)
    values[np.abs(values) < max_coordinate * SNAP] = 0.0
    return values


def into_box(X: np.ndarray, max_coordinate: float) -> np.ndarray:
    """Scale each nonzero row into [floor, max_coordinate] in the infinity norm."""
    X = np.array(X, dtype=float)
    floor = max_coordinate * NORM_FLOOR
    for i, row in enumerate(X):
        top = float(np.max(np.abs(row)))
        # A few ulps inside each bound, so that rounding cannot land a row outside.
        if top > max_coordinate:
            X[i] = row * (max_coordinate / top * (1.0 - 1e-15))
        elif 0.0 < top < floor:
            X[i] = row * (floor / top * (1.0 + 1e-15))
    return X


# -- linear networks that can compute any u.x ------------------------------------------


def is_diagonal(net: Network) -> bool:
    d = net.input_dim
    diag = np.full((d, d), -1)
    diag[np.arange(d), np.arange(d)] = np.arange(d)
    hidden, last = net.index_maps[:-1], net.index_maps[-1]
    return (
        net.depth >= 2
        and all(np.array_equal(P, diag) for P in hidden)
        and np.array_equal(last, np.arange(d)[None, :])
    )


def computes_every_direction(net: Network) -> bool:
    """True when some theta gives Phi(theta; x) = u.x for every u."""
    return net.is_linear and (net.is_fully_connected or is_diagonal(net))


def direction_teacher(net: Network, u: np.ndarray) -> np.ndarray | None:
    """theta with Phi(theta; x) = u.x, for linear fully connected or diagonal nets."""
    if not net.is_linear:
        return None
    theta = np.zeros(net.num_parameters)
    slices = net.layer_slices
    if net.is_fully_connected:
        # Row 0 of W_1 is u; every later layer passes hidden neuron 0 through.
        theta[slices[0].start : slices[0].start + net.input_dim] = u
        for s in slices[1:]:
            theta[s.start] = 1.0
        return theta
    if is_diagonal(net):
        theta[slices[0]] = u
        for s in slices[1:]:
            theta[s] = 1.0
        return theta
    return None


def direction_point(
    u: np.ndarray, label: float, free: np.ndarray, margin: float
) -> np.ndarray:
    """A point x with label * u.x >= margin ||x||, keeping free's part orthogonal to u.

    With a = label * u.x and r = ||x - (u.x) u||, the bound is a >= margin sqrt(a^2 +
    r^2), that is a >= margin r / sqrt(1 - margin^2).
    """
    along = float(free @ u)
    across = free - along * u
    need = margin * float(np.linalg.norm(across)) / np.sqrt(1.0 - margin**2)
    a = max(abs(along), need)
    if a == 0.0:
        # free = 0: any positive multiple of u works.
        a = 1.0
    return label * a * u + across


# -- every network: a teacher on a path ------------------------------------------------


def input_path(net: Network) -> list[int] | None:
    """Neurons b_0 (an input), b_1, ..., b_m = 0 joined by entries of the index maps.

    Found backwards from the output, so every neuron on it reaches the output; None
    when no input reaches the output (the network computes 0 for every theta).
    """
    reach = [None] * (net.depth + 1)
    reach[net.depth] = {0}
    for l in range(net.depth, 0, -1):
        P = net.index_maps[l - 1]
        rows = sorted(reach[l])
        reach[l - 1] = {int(b) for b in np.nonzero((P[rows] >= 0).any(axis=0))[0]}
    if not reach[0]:
        return None
    path = [min(reach[0])]
    for l in range(1, net.depth + 1):
        P = net.index_maps[l - 1]
        path.append(min(a for a in reach[l] if P[a, path[-1]] >= 0))
    return path


def repair_teacher(net: Network, theta: np.ndarray, anchor: np.ndarray) -> bool:
    """Make Phi(theta; anchor) != 0 in place, anchor = c e_(b_0) on `input_path`.

    Layer by layer, the path neuron b_l gets a positive pre-activation: negate all of
    u^(l) if it is negative (this keeps the sharing pattern and the earlier layers),
    or raise the parameter on the path entry if it is exactly 0. The anchor is a
    nonnegative basis vector, so with ReLU every h >= 0 and that raise cannot cancel.
    Returns False only in cases of probability zero for a Gaussian theta (a linear
    layer whose inputs cancel exactly).
    """
    path = input_path(net)
    h = anchor
    for l in range(1, net.depth):
        s = net.layer_slices[l - 1]
        P = net.index_maps[l - 1]
        # At most: raise a zero, then negate a negative; the third look confirms.
        for _ in range(3):
            z = net.weight_matrices(theta)[l - 1] @ h
            if z[path[l]] > 0.0:
                break
            if z[path[l]] < 0.0:
                theta[s] *= -1.0
            else:
                theta[s.start + P[path[l], path[l - 1]]] += 1.0
        if not z[path[l]] > 0.0:
            return False
        h = np.maximum(z, 0.0) if net.activation == "relu" else z
    h = net.weight_matrices(theta)[-1] @ h
    if h[0] == 0.0:
        theta[net.layer_slices[-1].start + net.index_maps[-1][0, path[-2]]] += 1.0
        return bool(net.outputs(theta, anchor[None, :])[0] != 0.0)
    return True


def relative_margins(net: Network, theta: np.ndarray, X: np.ndarray) -> np.ndarray:
    """|Phi(theta; x_i)| / ||x_i||, and 0 for x_i = 0."""
    f = np.abs(net.outputs(theta, X))
    norms = np.linalg.norm(X, axis=1)
    return np.divide(f, norms, out=np.zeros_like(f), where=norms > 0)


def fit_points(
    net: Network, theta: np.ndarray, X: np.ndarray, margin: float
) -> np.ndarray:
    """Move every point whose relative margin is below `margin` * best towards the best.

    The best point x* (largest relative margin G) stays. Another point x_i becomes
    the first of (1 - t) x_i + t x*, t = k / SEGMENT_STEPS, whose relative margin lies
    in [margin * G, G]; t = 1 gives x* exactly, so one always exists, and the cap at G
    keeps x* the best point. Phi is continuous, so most points move only a little.
    """
    X = np.array(X, dtype=float)
    ratios = relative_margins(net, theta, X)
    best = int(np.argmax(ratios))
    G = float(ratios[best])
    t = np.arange(1, SEGMENT_STEPS + 1)[:, None] / SEGMENT_STEPS
    for i in np.flatnonzero(ratios < margin * G):
        candidates = (1.0 - t) * X[i] + t * X[best]
        r = relative_margins(net, theta, candidates)
        # The cap allows for the last bit: a batch of another size may round the
        # same dot product differently.
        ok = np.flatnonzero((r >= margin * G) & (r <= G * (1.0 + 1e-12)))
        X[i] = candidates[ok[0]] if ok.size else X[best]
    return X
