"""Strategies for networks of the class N, one per family, and `architectures()`.

Every network is valid by construction (nothing is filtered): index maps cover their
parameters without gaps, every hidden neuron has an input and feeds the next layer, and
the family's defining property holds. All strategies share the keyword-only options

- ``min_depth``/``max_depth``: the number m of weight layers (default 2..3);
- ``min_width``/``max_width``: the width of every hidden layer (default 1..4);
- ``min_input_dim``/``max_input_dim``: d_0 (default 1..4);
- ``activations``: a strategy of ``"linear"``/``"relu"`` (fixed: ``st.just("relu")``).

The defaults are small because the gradient-flow simulator is exact, not cheap. A family
that cannot meet the bounds (a diagonal network needs depth >= 2, a weight-sharing one
a layer with two entries) raises InvalidArgument from its own strategy and is left out
of `architectures()`. Arguments are checked on first draw (see `_validation`).
"""

from __future__ import annotations

from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument

from invariants.networks import Network
from strategies._families import ACTIVATIONS, FAMILIES, Bounds, canonical_family
from strategies._validation import (
    check_integer,
    check_le,
    check_strategy,
    lazy_strategy,
)

__all__ = [
    "architectures",
    "convolutional_networks",
    "diagonal_networks",
    "fully_connected_networks",
    "no_share_networks",
    "shared_weight_networks",
]

# Linear first, so that every family shrinks towards a linear network.
DEFAULT_ACTIVATIONS = st.sampled_from(ACTIVATIONS)
_DEFAULTS = {
    "min_depth": 2,
    "max_depth": 3,
    "min_width": 1,
    "max_width": 4,
    "min_input_dim": 1,
    "max_input_dim": 4,
    "activations": DEFAULT_ACTIVATIONS,
}


def _check_bounds(options: dict) -> tuple[Bounds, st.SearchStrategy]:
    values = {
        name: check_integer(options[name], name, 1)
        for name in _DEFAULTS
        if name != "activations"
    }
    for low, high in (
        ("min_depth", "max_depth"),
        ("min_width", "max_width"),
        ("min_input_dim", "max_input_dim"),
    ):
        check_le(low, values[low], high, values[high])
    activations = check_strategy(options["activations"], "activations")
    return Bounds(**values), activations


def _options(scope: dict) -> dict:
    return {name: scope[name] for name in _DEFAULTS}


def _shown(options: dict) -> dict:
    """The arguments that differ from the defaults, for the pending strategy's repr."""
    return {k: v for k, v in options.items() if v is not _DEFAULTS[k]}


def _family_strategy(name: str, options: dict) -> st.SearchStrategy[Network]:
    """Check the options, then the family's feasibility, then build, lazily."""

    def build() -> st.SearchStrategy[Network]:
        bounds, activations = _check_bounds(options)
        problem, make = FAMILIES[name]
        message = problem(bounds)
        if message:
            raise InvalidArgument(f"{name}: {message}")
        return make(bounds, activations)

    return lazy_strategy(name, build, **_shown(options))


def fully_connected_networks(
    *,
    min_depth: int = 2,
    max_depth: int = 3,
    min_width: int = 1,
    max_width: int = 4,
    min_input_dim: int = 1,
    max_input_dim: int = 4,
    activations: st.SearchStrategy[str] = DEFAULT_ACTIVATIONS,
) -> st.SearchStrategy[Network]:
    """Dense networks d_0 -> d_1 -> ... -> d_(m-1) -> 1 (`networks.fully_connected`).

    Shrinks towards the smallest depth, then the smallest widths and input dimension,
    then a linear activation: with the defaults, widths (1, 1, 1), linear.
    """
    return _family_strategy("fully_connected_networks", _options(locals()))


def no_share_networks(
    *,
    min_depth: int = 2,
    max_depth: int = 3,
    min_width: int = 1,
    max_width: int = 4,
    min_input_dim: int = 1,
    max_input_dim: int = 4,
    activations: st.SearchStrategy[str] = DEFAULT_ACTIVATIONS,
) -> st.SearchStrategy[Network]:
    """N_no-share: sparse layers, each parameter used once (`networks.no_share`).

    Every row of every mask has an entry (each neuron has an input) and every column of
    layers 2..m has one (each hidden neuron feeds the next layer); input coordinates
    may be unused. Masks are built valid: a spanning assignment first, then extra
    entries. Shrinks like `fully_connected_networks`, with the sparsest masks: row a
    of a layer uses column a mod d_(l-1) only, plus what the column cover needs (so a
    square layer shrinks to the identity pattern and the output layer is dense).
    """
    return _family_strategy("no_share_networks", _options(locals()))


def diagonal_networks(
    *,
    min_depth: int = 2,
    max_depth: int = 3,
    min_width: int = 1,
    max_width: int = 4,
    min_input_dim: int = 1,
    max_input_dim: int = 4,
    activations: st.SearchStrategy[str] = DEFAULT_ACTIVATIONS,
) -> st.SearchStrategy[Network]:
    """Diagonal networks (`networks.diagonal`): layers 1..m-1 are dim x dim diagonal.

    dim is both the input dimension and every hidden width, so it lies in both
    ranges; depth is at least 2. Shrinks to the smallest depth and dim, linear.
    """
    return _family_strategy("diagonal_networks", _options(locals()))


def convolutional_networks(
    *,
    min_depth: int = 2,
    max_depth: int = 3,
    min_width: int = 1,
    max_width: int = 4,
    min_input_dim: int = 1,
    max_input_dim: int = 4,
    activations: st.SearchStrategy[str] = DEFAULT_ACTIVATIONS,
) -> st.SearchStrategy[Network]:
    """Single-channel convolutions then a dense output (`networks.convolutional`).

    Depth >= 2, kernel_size <= input_dim, 1 <= stride <= kernel_size (consecutive
    patches overlap or touch, so no coordinate between two patches is skipped), and
    every hidden width (the number of patches) lies in [min_width, max_width]. The
    combinations are enumerated once per bounds, so nothing is filtered. Draws depth,
    input_dim, kernel_size, stride in that order; shrinks to the smallest of each
    (kernel 1, stride 1), linear. A layer with two or more patches shares its filter.
    """
    return _family_strategy("convolutional_networks", _options(locals()))


def shared_weight_networks(
    *,
    min_depth: int = 2,
    max_depth: int = 3,
    min_width: int = 1,
    max_width: int = 4,
    min_input_dim: int = 1,
    max_input_dim: int = 4,
    activations: st.SearchStrategy[str] = DEFAULT_ACTIVATIONS,
) -> st.SearchStrategy[Network]:
    """General networks of N with shared weights (family ``"shared"``).

    Each layer is a mask (as in `no_share_networks`) plus a surjective assignment of
    its entries to parameters 0..p_l-1, so indices never have gaps. One drawn layer
    L reuses at least one index (its input side has width >= 2 and its mask covers
    every column, so it has two entries to tie); other layers may reuse too. Shrinks
    to the smallest depth and widths, L = 1 where the input range allows, exactly one
    reuse, in the last entries, of parameter 0, and no reuse elsewhere, linear.
    """
    return _family_strategy("shared_weight_networks", _options(locals()))


def architectures(
    *,
    min_depth: int = 2,
    max_depth: int = 3,
    min_width: int = 1,
    max_width: int = 4,
    min_input_dim: int = 1,
    max_input_dim: int = 4,
    activations: st.SearchStrategy[str] = DEFAULT_ACTIVATIONS,
) -> st.SearchStrategy[Network]:
    """Networks of every family: fully connected, diagonal, no-share, convolutional,
    shared weights, in that order (`st.one_of`), each with the options above.

    Families the bounds rule out are left out. A network whose index maps are those of
    a dense network (a dim-1 diagonal net, a no-share net with full masks) is labelled
    ``fully_connected``, so `Network.family` and the events it feeds name the structure.
    Shrinks towards fully connected, then as that family does: with the defaults,
    widths (1, 1, 1), linear.
    """
    options = _options(locals())

    def build() -> st.SearchStrategy:
        bounds, activations_ = _check_bounds(options)
        # FAMILIES is ordered: the branch order of one_of is the shrink order.
        families = [
            make(bounds, activations_)
            for problem, make in FAMILIES.values()
            if problem(bounds) is None
        ]
        return st.one_of(families).map(canonical_family)

    return lazy_strategy("architectures", build, **_shown(options))
