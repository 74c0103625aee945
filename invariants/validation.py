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
