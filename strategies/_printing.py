"""Lossless reprs for generated values, so a failing example can be pasted back.

NumPy prints eight significant digits, and Hypothesis prints a dataclass field by
field. An `ExactArray` prints as ``np.array([...])`` through Python floats, whose repr
round-trips bit for bit; the records here print through their exact reprs.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = ["Dataset", "ExactArray", "exact"]


class ExactArray(np.ndarray):
    """A float64 ndarray whose repr is exact. Arithmetic on it returns plain arrays."""

    def __repr__(self) -> str:
        return f"np.array({self.tolist()!r})"

    def _repr_pretty_(self, printer, cycle) -> None:
        # Hypothesis' pretty-printer (IPython's protocol) would not call __repr__.
        printer.text(repr(self))

    def __array_wrap__(self, array, context=None, return_scalar=False):
        # Results of computations are the caller's arrays, not generated values: keep
        # the subclass from spreading through user code.
        if return_scalar:
            return array[()]
        return np.asarray(array).view(np.ndarray)


def exact(values) -> ExactArray:
    """A float64 copy of `values` with an exact repr."""
    return np.array(values, dtype=np.float64).view(ExactArray)


class Dataset(NamedTuple):
    """A dataset (X, y): X (n, d) float64, y (n,) in {-1.0, +1.0}. Unpacks as a pair."""

    X: np.ndarray
    y: np.ndarray

    def __repr__(self) -> str:
        return f"Dataset(X={self.X!r}, y={self.y!r})"

    def _repr_pretty_(self, printer, cycle) -> None:
        printer.text(repr(self))
