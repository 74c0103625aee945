"""How each architecture family is drawn: the composites behind `architectures`.

Each family has a feasibility check (a message when the bounds rule it out, else None)
and a composite that builds a valid network by construction. Draw order is shrink
order: depth first, then widths, then structure, then the activation.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from hypothesis import strategies as st

from invariants import networks
from invariants.networks import Network
from strategies._validation import check_choice

__all__ = ["ACTIVATIONS", "FAMILIES", "Bounds", "canonical_family"]

ACTIVATIONS = ("linear", "relu")


@dataclass(frozen=True)
class Bounds:
    min_depth: int
    max_depth: int
    min_width: int
    max_width: int
    min_input_dim: int
    max_input_dim: int

    def __repr__(self) -> str:
        # Shown inside the repr of every built strategy: keep it one short line.
        return (
            f"Bounds(depth={self.min_depth}..{self.max_depth}, "
            f"width={self.min_width}..{self.max_width}, "
            f"input_dim={self.min_input_dim}..{self.max_input_dim})"
        )

    def _repr_pretty_(self, printer, cycle) -> None:
        printer.text(repr(self))


def draw_activation(draw, activations: st.SearchStrategy) -> str:
    return check_choice(draw(activations), "activations", ACTIVATIONS)


def no_problem(bounds: Bounds) -> None:
    return None


# -- fully connected ------------------------------------------------------------------


@st.composite
def draw_fully_connected(draw, b: Bounds, activations) -> Network:
    widths = draw_widths(draw, b)
    return networks.fully_connected(widths, draw_activation(draw, activations))


def draw_widths(draw, b: Bounds) -> list[int]:
    """(d_0, ..., d_(m-1), 1) within the bounds, depth first so it shrinks first."""
    depth = draw(st.integers(b.min_depth, b.max_depth))
    return draw_widths_for_depth(draw, b, depth)


def draw_widths_for_depth(
    draw, b: Bounds, depth: int, wide_input_of: int = 0
) -> list[int]:
    """The widths for a given depth; `wide_input_of` = L > 0 forces the input side
    of layer L to width >= 2 (the weight-sharing family needs two entries there)."""
    low_in = max(b.min_input_dim, 2) if wide_input_of == 1 else b.min_input_dim
    widths = [draw(st.integers(low_in, b.max_input_dim))]
    # Widths are drawn for the deepest network and the extra ones ignored: then the
    # draws after these (masks, data, theta0) keep their places when depth shrinks,
    # and the shrinker can lower the depth alone.
    for layer in range(1, b.max_depth):
        low = max(b.min_width, 2) if wide_input_of == layer + 1 else b.min_width
        widths.append(draw(st.integers(low, b.max_width)))
    return widths[:depth] + [1]


# -- no-share: sparsity masks --------------------------------------------------------


@st.composite
def draw_no_share(draw, b: Bounds, activations) -> Network:
    widths = draw_widths(draw, b)
    masks = [
        draw(draw_masks(widths[l], widths[l - 1], cover_columns=l > 1))
        for l in range(1, len(widths))
    ]
    return networks.no_share(masks, draw_activation(draw, activations))


@st.composite
def draw_masks(draw, rows: int, cols: int, *, cover_columns: bool) -> np.ndarray:
    """A (rows, cols) boolean mask with an entry in every row (and column, if asked).

    The offsets shrink to 0, giving the staircase a -> a mod cols; extra entries
    shrink to absent.
    """
    mask = np.zeros((rows, cols), dtype=bool)
    for a in range(rows):
        mask[a, (a + draw(st.integers(0, cols - 1))) % cols] = True
    if cover_columns:
        for c in range(cols):
            if not mask[:, c].any():
                mask[(c + draw(st.integers(0, rows - 1))) % rows, c] = True
    free = np.flatnonzero(~mask.ravel())
    if free.size:
        # One draw for all extra entries (bit i: the i-th free entry) rather than one
        # per entry: every draw costs time in generation, shrinking and explaining.
        bits = draw(st.integers(0, 2 ** int(free.size) - 1))
        chosen = [(bits >> i) & 1 for i in range(free.size)]
        mask.ravel()[free[np.flatnonzero(chosen)]] = True
    return mask


# -- diagonal ------------------------------------------------------------------------


def diagonal_dims(b: Bounds) -> tuple[int, int]:
    return max(b.min_input_dim, b.min_width), min(b.max_input_dim, b.max_width)


def diagonal_problem(b: Bounds) -> str | None:
    if b.max_depth < 2:
        return (
            f"max_depth={b.max_depth} must be >= 2: a diagonal network has depth >= 2"
        )
    low, high = diagonal_dims(b)
    if low > high:
        return (
            f"dim must lie in [min_input_dim, max_input_dim] = "
            f"[{b.min_input_dim}, {b.max_input_dim}] and in [min_width, max_width] = "
            f"[{b.min_width}, {b.max_width}], which do not overlap; widen one range"
        )
    return None


@st.composite
def draw_diagonal(draw, b: Bounds, activations) -> Network:
    depth = draw(st.integers(max(b.min_depth, 2), b.max_depth))
    dim = draw(st.integers(*diagonal_dims(b)))
    return networks.diagonal(dim, depth, draw_activation(draw, activations))


# -- convolutional -------------------------------------------------------------------


@functools.lru_cache(maxsize=64)
def conv_table(b: Bounds) -> dict[int, dict[int, dict[int, tuple[int, ...]]]]:
    """depth -> input_dim -> kernel_size -> strides, for every valid combination."""
    table: dict = {}
    for d0 in range(b.min_input_dim, b.max_input_dim + 1):
        for k in range(1, d0 + 1):
            for s in range(1, k + 1):
                d = d0
                # Widths never grow along the network, so the first layer out of
                # bounds rules out every deeper network with these (d0, k, s).
                for depth in range(2, b.max_depth + 1):
                    if k > d:
                        break
                    d = (d - k) // s + 1
                    if not b.min_width <= d <= b.max_width:
                        break
                    if depth >= b.min_depth:
                        strides = table.setdefault(depth, {}).setdefault(d0, {})
                        strides.setdefault(k, []).append(s)
    return {
        m: {d0: {k: tuple(v) for k, v in ks.items()} for d0, ks in d0s.items()}
        for m, d0s in table.items()
    }


def conv_problem(b: Bounds) -> str | None:
    if conv_table(b):
        return None
    return (
        f"no (depth, input_dim, kernel_size, stride) with depth in "
        f"[{b.min_depth}, {b.max_depth}] (and >= 2), input_dim in "
        f"[{b.min_input_dim}, {b.max_input_dim}] gives hidden widths in "
        f"[{b.min_width}, {b.max_width}]; widen the width or input_dim range"
    )


@st.composite
def draw_convolutional(draw, b: Bounds, activations) -> Network:
    table = conv_table(b)
    depth = draw(st.sampled_from(sorted(table)))
    input_dim = _draw_option(draw, sorted(table[depth]), _widest(b, 1))
    kernels = table[depth][input_dim]
    kernel = _draw_option(draw, sorted(kernels), _widest(b, 2))
    stride = _draw_option(draw, kernels[kernel], _widest(b, 3))
    activation = draw_activation(draw, activations)
    return networks.convolutional(input_dim, kernel, stride, activation, depth=depth)


@functools.lru_cache(maxsize=64)
def _widest(b: Bounds, level: int) -> int:
    """The most options any node at this level (1: input_dim, 2: kernel_size,
    3: stride) of the conv table offers."""
    nodes = [conv_table(b)]
    for _ in range(level):
        nodes = [child for node in nodes for child in node.values()]
    return max(len(node) for node in nodes)


def _draw_option(draw, options, width: int):
    # One draw over the same range whatever the branch: Hypothesis shrinks shorter
    # choice sequences first, so a branch with fewer options must not cost fewer
    # draws (a deeper network with one kernel choice would beat a shallower one).
    return options[draw(st.integers(0, width - 1)) % len(options)]


# -- general weight sharing ----------------------------------------------------------


def sharing_layers(b: Bounds, depth: int) -> list[int]:
    """Layers whose input side can be made >= 2 wide within the bounds."""
    first = [1] if b.max_input_dim >= 2 else []
    later = list(range(2, depth + 1)) if b.max_width >= 2 else []
    return first + later


def shared_depths(b: Bounds) -> list[int]:
    depths = range(b.min_depth, b.max_depth + 1)
    return [m for m in depths if sharing_layers(b, m)]


def shared_problem(b: Bounds) -> str | None:
    if shared_depths(b):
        return None
    return (
        f"sharing needs a layer with two entries: max_input_dim={b.max_input_dim} "
        f"or (max_width={b.max_width} with max_depth={b.max_depth} >= 2) must allow "
        "a width >= 2"
    )


@st.composite
def draw_shared(draw, b: Bounds, activations) -> Network:
    depths = shared_depths(b)
    depth = draw(st.sampled_from(depths))
    sharing = draw(st.sampled_from(sharing_layers(b, depth)))
    widths = draw_widths_for_depth(draw, b, depth, wide_input_of=sharing)
    maps = []
    for l in range(1, depth + 1):
        mask = draw(
            draw_masks(widths[l], widths[l - 1], cover_columns=l > 1 or l == sharing)
        )
        maps.append(draw(draw_index_map(mask, min_reuses=1 if l == sharing else 0)))
    activation = draw_activation(draw, activations)
    return networks.from_index_maps(maps, activation, family="shared")


@st.composite
def draw_index_map(draw, mask: np.ndarray, *, min_reuses: int) -> np.ndarray:
    """Entries of `mask` onto parameters 0..p-1, every parameter used (surjective).

    The first p entries of a drawn order introduce the parameters 0..p-1; each later
    entry reuses one of them.
    """
    entries = np.flatnonzero(mask.ravel())
    reuses = draw(st.integers(min_reuses, len(entries) - 1))
    fresh = len(entries) - reuses
    order = draw(st.permutations(range(len(entries))))
    index = np.empty(len(entries), dtype=np.int64)
    for rank, e in enumerate(order):
        index[e] = rank if rank < fresh else draw(st.integers(0, fresh - 1))
    P = np.full(mask.shape, -1, dtype=np.int64)
    P.ravel()[entries] = index
    return P


# -- every family ----------------------------------------------------------------------

# Public strategy name -> (feasibility check, composite), in shrink order.
FAMILIES = {
    "fully_connected_networks": (no_problem, draw_fully_connected),
    "diagonal_networks": (diagonal_problem, draw_diagonal),
    "no_share_networks": (no_problem, draw_no_share),
    "convolutional_networks": (conv_problem, draw_convolutional),
    "shared_weight_networks": (shared_problem, draw_shared),
}


def canonical_family(net: Network) -> Network:
    # Hypothesis shrinks by the length of the choice sequence before the branch index,
    # so a family with fewer choices (diagonal) can win a tie on structure; the label
    # follows the structure instead, which keeps the shrink target fully connected.
    if net.is_fully_connected and net.family != "fully_connected":
        return networks.fully_connected(net.widths, net.activation)
    return net
