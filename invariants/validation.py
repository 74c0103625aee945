"""Checks of user input shared by every entry point: one place, one message shape.

Each check raises ValueError naming the argument, the value (or its shape) and the
rule, so a bad case fails before it reaches numerics that would abort or mislead.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

__all__ = [
    "check_activation",
    "check_dataset",
    "check_layer",
    "check_loss",
    "check_rays",
    "check_theta",
    "check_tolerance",
]

ACTIVATIONS = ("relu", "linear")
LOSSES = ("exponential", "logistic")


def check_activation(activation) -> str:
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation={activation!r} must be one of {ACTIVATIONS}")
    return activation


def check_loss(loss) -> str:
    if loss not in LOSSES:
        raise ValueError(f"loss={loss!r} must be one of {LOSSES}")
    return loss


def check_dataset(X, y, input_dim: int | None):
    """X as a finite (n, d) float array with n >= 1; y, if given, in {-1, +1}^n."""
    if np.iscomplexobj(X):
        raise ValueError("X must be real; got complex values")
    X = np.asarray(X, dtype=float)
    if X.size == 0:
        raise ValueError(
            f"X is empty (shape {X.shape}): a margin problem needs at least one point"
        )
    if X.ndim != 2:
        raise ValueError(f"X must be 2-D (n, d), got shape {X.shape}")
    if X.shape[0] == 0:
        raise ValueError(
            "X is empty (n = 0): a margin problem needs at least one point"
        )
    if input_dim is not None and X.shape[1] != input_dim:
        raise ValueError(
            f"X has {X.shape[1]} columns but the network's input dimension is "
            f"{input_dim}"
        )
    if not np.all(np.isfinite(X)):
        bad = np.argwhere(~np.isfinite(X))[0].tolist()
        raise ValueError(f"X must be finite; X{bad} = {X[tuple(bad)]}")
    if y is None:
        return X, None
    if np.iscomplexobj(y):
        raise ValueError("y must be real labels -1 or +1; got complex values")
    y = np.asarray(y, dtype=float)
    if y.ndim != 1 or y.shape[0] != X.shape[0]:
        raise ValueError(f"y must have shape ({X.shape[0]},) to match X, got {y.shape}")
    bad = ~np.isin(y, (-1.0, 1.0))
    if np.any(bad):
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"labels must be -1 or +1; y[{i}] = {float(y[i])!r}")
    return X, y


# Two unit directions closer than this are one ray: rounding of a point scaled by
# c > 0 moves its direction by ~1e-16.
SAME_RAY_TOL = 1e-12


def check_rays(X: np.ndarray, y: np.ndarray) -> None:
    """Refuse data that no network of the class N separates, whatever theta.

    A network without biases is positively homogeneous in its input, Phi(theta; c x)
    = c Phi(theta; x) for c > 0, so a point at the origin has margin 0 for every theta
    and two points on one ray from the origin with opposite labels always have margins
    of opposite signs. X, y as returned by `check_dataset`.
    """
    # Sizes by the largest coordinate: squaring would underflow below 1e-154.
    sizes = np.max(np.abs(X), axis=1)
    zero = np.flatnonzero(sizes == 0.0)
    if zero.size:
        raise ValueError(
            f"X[{int(zero[0])}] is the origin: a network without biases outputs 0 "
            "there for every theta, so no network of the class N separates the data"
        )
    tiny = np.flatnonzero(sizes < np.finfo(float).tiny)
    if tiny.size:
        i = int(tiny[0])
        raise ValueError(
            f"X[{i}] is subnormal (largest coordinate {sizes[i]:.3g} < "
            f"{np.finfo(float).tiny:.3g}): products through the layers underflow "
            "to 0 there; rescale the data"
        )
    U = X / sizes[:, None]
    norms = sizes * np.linalg.norm(U, axis=1)
    U /= np.linalg.norm(U, axis=1)[:, None]
    for i in range(len(U) - 1):
        close = np.linalg.norm(U[i + 1 :] - U[i], axis=1) <= SAME_RAY_TOL
        clash = np.flatnonzero(close & (y[i + 1 :] != y[i]))
        if clash.size:
            j = i + 1 + int(clash[0])
            raise ValueError(
                f"X[{i}] and X[{j}] lie on one ray from the origin (X[{j}] = "
                f"{norms[j] / norms[i]:.6g} X[{i}]) with opposite labels: a network "
                "without biases is positively homogeneous in its input, so no "
                "theta separates them"
            )


def check_theta(theta, num_parameters: int, name: str = "theta") -> np.ndarray:
    if np.iscomplexobj(theta):
        raise ValueError(f"{name} must be real; got complex values")
    theta = np.asarray(theta, dtype=float)
    if theta.shape != (num_parameters,):
        raise ValueError(
            f"{name} must have shape ({num_parameters},) for this network, "
            f"got {theta.shape}"
        )
    if not np.all(np.isfinite(theta)):
        i = int(np.flatnonzero(~np.isfinite(theta))[0])
        raise ValueError(f"{name} must be finite; {name}[{i}] = {theta[i]}")
    return theta


def check_tolerance(
    value, name: str, *, high: float, allow_zero: bool = False
) -> float:
    """A tolerance as a float: a real number (numpy scalars included, bool not:
    TypeError), finite, in (0, high] (or [0, high] with `allow_zero`: ValueError)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {name}={value!r}")
    v = float(value)
    low_ok = v >= 0 if allow_zero else v > 0
    if not (math.isfinite(v) and low_ok and v <= high):
        bracket = "[0" if allow_zero else "(0"
        raise ValueError(
            f"{name} must be in {bracket}, {high:g}], got {name}={value!r}"
        )
    return v


def check_layer(value, depth: int) -> int:
    """A layer index 1..depth as an int (numpy integers included, bool not)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"layer must be an integer in 1..{depth}, got layer={value!r}")
    if not 1 <= int(value) <= depth:
        raise ValueError(f"layer must be an integer in 1..{depth}, got layer={value!r}")
    return int(value)
