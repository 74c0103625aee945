"""Argument checks for the public strategies: one place, one message shape.

Every check raises `hypothesis.errors.InvalidArgument` with a message that names the
argument as ``name=value`` and states the rule or the fix.

When errors surface: every public strategy function returns a lazy strategy (see
`lazy_strategy`), and its arguments are checked the first time the strategy is drawn
from or `.validate()` is called, as Hypothesis' own strategies do. A bad argument in a
``@given(...)`` decorator therefore fails that one test, not the collection of the whole
module. Values drawn from strategy-valued arguments (an activation, an initialisation
kind, a loss) can only be checked when they are drawn, and are.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Sequence

import numpy as np
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument

from invariants.networks import Network
from invariants.validation import check_dataset, check_theta

__all__ = [
    "check_choice",
    "check_integer",
    "check_le",
    "check_network",
    "check_number",
    "check_one_of",
    "check_strategy",
    "checked_dataset",
    "checked_theta",
    "lazy_strategy",
]


def lazy_strategy(
    name: str, build: Callable[[], st.SearchStrategy], **arguments
) -> st.SearchStrategy:
    """A strategy that runs `build` (checks, then construction) on first use.

    The pending strategy prints as the call that made it, e.g.
    ``deferred(architectures(max_depth=3))``.
    """
    shown = ", ".join(f"{k}={v!r}" for k, v in arguments.items())

    def definition() -> st.SearchStrategy:
        return build()

    # st.deferred prints a pending definition by its __name__.
    definition.__name__ = definition.__qualname__ = f"{name}({shown})"
    return st.deferred(definition)


def check_integer(value, name: str, minimum: int) -> int:
    """An integer (bools excluded) >= minimum."""
    if isinstance(value, bool):
        raise InvalidArgument(f"{name}={value!r} must be an integer >= {minimum}")
    try:
        as_int = operator.index(value)
    except TypeError:
        raise InvalidArgument(
            f"{name}={value!r} must be an integer >= {minimum}, got "
            f"{type(value).__name__}"
        ) from None
    if as_int < minimum:
        raise InvalidArgument(f"{name}={value!r} must be an integer >= {minimum}")
    return int(as_int)


def check_le(low_name: str, low, high_name: str, high) -> None:
    """low <= high, for a pair of bounds."""
    if low > high:
        raise InvalidArgument(
            f"{low_name}={low!r} must be <= {high_name}={high!r}; "
            f"raise {high_name} or lower {low_name}"
        )


def check_number(
    value, name: str, *, low: float, high: float, low_open: bool = False
) -> float:
    """A finite real number in [low, high], or (low, high] when low_open."""
    left = "(" if low_open else "["
    rule = f"a finite number in {left}{low!r}, {high!r}]"
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
        raise InvalidArgument(f"{name}={value!r} must be {rule}")
    as_float = float(value)
    below = as_float <= low if low_open else as_float < low
    if not math.isfinite(as_float) or below or as_float > high:
        raise InvalidArgument(f"{name}={value!r} must be {rule}")
    return as_float


def check_strategy(value, name: str) -> st.SearchStrategy:
    """A strategy; a fixed value is refused with the `st.just` spelling of it."""
    if not isinstance(value, st.SearchStrategy):
        raise InvalidArgument(
            f"{name}={value!r} must be a SearchStrategy, got {type(value).__name__}; "
            f"for a fixed value pass {name}=st.just({value!r})"
        )
    return value


def check_choice(value, name: str, choices: Sequence[str]) -> str:
    """A value drawn from a strategy-valued argument must be one of `choices`."""
    if not isinstance(value, str) or value not in choices:
        raise InvalidArgument(
            f"{name} drew {value!r}; every value it draws must be one of "
            f"{tuple(choices)!r}"
        )
    return value


def check_one_of(value, name: str, choices: Sequence[str]) -> str:
    """A fixed argument that must be one of `choices`."""
    if not isinstance(value, str) or value not in choices:
        raise InvalidArgument(f"{name}={value!r} must be one of {tuple(choices)!r}")
    return value


def check_network(value, name: str = "network") -> Network:
    if not isinstance(value, Network):
        raise InvalidArgument(
            f"{name}={value!r:.80} must be an invariants.networks.Network, got "
            f"{type(value).__name__}; build one with invariants.networks or draw one "
            "from strategies.architectures()"
        )
    return value


def checked_dataset(network: Network, X, y) -> tuple[np.ndarray, np.ndarray]:
    """(X, y) as float arrays fitting `network`; the library's rule, our error type."""
    try:
        return check_dataset(X, y, network.input_dim)
    except ValueError as exc:
        raise InvalidArgument(f"(X, y) do not fit network={network!r}: {exc}") from None


def checked_theta(network: Network, theta, name: str) -> np.ndarray:
    try:
        return check_theta(theta, network.num_parameters, name)
    except ValueError as exc:
        raise InvalidArgument(str(exc)) from None
