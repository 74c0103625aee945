"""The class N: bias-free networks whose layers are integer index maps.

Layer l owns a parameter vector u^(l) of length p_l and an index map P^(l) of shape
(d_l, d_{l-1}); its weight matrix is W^(l)[a, b] = u^(l)[P[a, b]], or 0 where
P[a, b] = -1. An index used twice is a shared weight; -1 is sparsity. Hidden layers
apply sigma (ReLU or identity), the output layer is linear and has width 1, so every
network here is m-homogeneous in theta = [u^(1), ..., u^(m)].

ReLU'(0) is taken as 0 on the forward path. Code that needs the whole Clarke interval
at a kink (the KKT checker, the simulator's kink handling) reads the pre-activations
and decides for itself.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike

from invariants.validation import (
    check_activation,
    check_dataset,
    check_theta,
)

__all__ = [
    "Forward",
    "Network",
    "convolutional",
    "diagonal",
    "from_index_maps",
    "fully_connected",
    "no_share",
]

Activation = Literal["relu", "linear"]

# Weights per layer beyond which a network is refused up front: the simulator forms
# per-sample Jacobians densely, and a mistyped width must fail with a message, not
# by exhausting memory.
MAX_ENTRIES = 1_000_000


@dataclass(frozen=True)
class Forward:
    """One forward pass over a dataset: pre-activations Z_l (n, d_l), l = 1..m."""

    preactivations: tuple[np.ndarray, ...]
    outputs: np.ndarray


@dataclass(frozen=True, eq=False)
class Network:
    """A depth-m network of the class N, described by its index maps.

    Build one with a family constructor (`fully_connected`, `diagonal`,
    `convolutional`, `no_share`) or with `from_index_maps`.
    """

    index_maps: tuple[np.ndarray, ...]
    activation: Activation
    family: str = "index_maps"
    _layer_sizes: tuple[int, ...] = field(init=False, repr=False)
    _gather: tuple[np.ndarray, ...] = field(init=False, repr=False)
    _scatter: tuple[object, ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        check_activation(self.activation)
        maps = _check_index_maps(self.index_maps)
        object.__setattr__(self, "index_maps", maps)
        sizes = tuple(int(P.max()) + 1 for P in maps)
        object.__setattr__(self, "_layer_sizes", sizes)
        gathers, scatters = [], []
        for P, p in zip(maps, sizes):
            # W^(l) = append(u, 0)[P'] where P' sends -1 to the appended zero.
            gathers.append(np.where(P >= 0, P, p))
            entries = np.flatnonzero(P.ravel() >= 0)
            targets = P.ravel()[entries]
            if len(np.unique(targets)) == len(targets):
                order = np.argsort(targets)
                scatters.append(entries[order])
            else:
                # Tied entries must accumulate: the gradient of a shared weight is the
                # sum over its uses, so the scatter is a 0/1 summation matrix.
                S = np.zeros((len(entries), p))
                S[np.arange(len(entries)), targets] = 1.0
                scatters.append((entries, S))
        object.__setattr__(self, "_gather", tuple(gathers))
        object.__setattr__(self, "_scatter", tuple(scatters))

    # -- shape -----------------------------------------------------------------------

    @property
    def depth(self) -> int:
        """m, the number of weight layers (the degree of homogeneity)."""
        return len(self.index_maps)

    @property
    def widths(self) -> tuple[int, ...]:
        """(d_0, d_1, ..., d_m) with d_m = 1."""
        return (self.index_maps[0].shape[1],) + tuple(
            P.shape[0] for P in self.index_maps
        )

    @property
    def input_dim(self) -> int:
        return self.widths[0]

    @property
    def layer_sizes(self) -> tuple[int, ...]:
        """(p_1, ..., p_m): the length of each layer's parameter vector u^(l)."""
        return self._layer_sizes

    @property
    def num_parameters(self) -> int:
        return int(sum(self._layer_sizes))

    @property
    def layer_slices(self) -> tuple[slice, ...]:
        """Where u^(l) sits inside theta."""
        ends = np.cumsum((0,) + self._layer_sizes)
        return tuple(slice(int(a), int(b)) for a, b in itertools.pairwise(ends))

    @property
    def shares_weights(self) -> bool:
        """True when some parameter is used by more than one entry of a W^(l)."""
        return any(isinstance(s, tuple) for s in self._scatter)

    @property
    def is_no_share(self) -> bool:
        """True for N_no-share: every parameter used exactly once."""
        return not self.shares_weights

    @property
    def is_fully_connected(self) -> bool:
        """True when every W^(l) is dense and read row by row from u^(l)."""
        return all(
            np.array_equal(P.ravel(), np.arange(P.size)) for P in self.index_maps
        )

    @property
    def is_linear(self) -> bool:
        return self.activation == "linear" or self.depth == 1

    def hidden_neurons(self) -> tuple[tuple[int, int], ...]:
        """(layer, row) of every hidden neuron, layers counted from 1."""
        return tuple(
            (l, a) for l in range(1, self.depth) for a in range(self.widths[l])
        )

    # -- parameters ------------------------------------------------------------------

    def layer_parameters(self, theta: np.ndarray) -> list[np.ndarray]:
        """The views u^(1), ..., u^(m) of theta."""
        theta = check_theta(theta, self.num_parameters)
        return [theta[s] for s in self.layer_slices]

    def weight_matrices(self, theta: np.ndarray) -> list[np.ndarray]:
        """W^(1), ..., W^(m) built from theta."""
        theta = check_theta(theta, self.num_parameters)
        return self._weights(theta)

    def _weights(self, theta: np.ndarray) -> list[np.ndarray]:
        out = []
        for s, G in zip(self.layer_slices, self._gather):
            out.append(np.append(theta[s], 0.0)[G])
        return out

    # -- evaluation ------------------------------------------------------------------

    def forward(self, theta: np.ndarray, X: np.ndarray) -> Forward:
        """Pre-activations of every layer and the outputs Phi(theta; x_i)."""
        theta = check_theta(theta, self.num_parameters)
        X = check_dataset(X, None, self.input_dim)[0]
        return self._forward(theta, X, self._weights(theta))

    def _forward(self, theta, X, Ws) -> Forward:
        H = X
        Zs = []
        for l, W in enumerate(Ws, start=1):
            Z = H @ W.T
            Zs.append(Z)
            H = self._sigma(Z) if l < self.depth else Z
        return Forward(tuple(Zs), Zs[-1][:, 0])

    def outputs(self, theta: np.ndarray, X: np.ndarray) -> np.ndarray:
        """Phi(theta; x_i) for every row of X."""
        return self.forward(theta, X).outputs

    def margins(self, theta: np.ndarray, X: np.ndarray, y: np.ndarray) -> np.ndarray:
        """q_i = y_i Phi(theta; x_i)."""
        X, y = check_dataset(X, y, self.input_dim)
        return y * self.outputs(theta, X)

    def preactivations(self, theta: np.ndarray, X: np.ndarray) -> list[np.ndarray]:
        """Inputs to the hidden neurons: Z_l of shape (n, d_l) for l = 1..m-1."""
        return list(self.forward(theta, X).preactivations[:-1])

    def normalized_margin(self, theta, X, y) -> float:
        """min_i q_i(theta) / ||theta||^m, the quantity GF maximises in the limit."""
        theta = check_theta(theta, self.num_parameters)
        norm = float(np.linalg.norm(theta))
        if norm == 0.0:
            raise ValueError("theta=0 has no normalized margin: ||theta|| = 0")
        return float(np.min(self.margins(theta, X, y))) / norm**self.depth

    def margin_jacobian(
        self, theta: np.ndarray, X: np.ndarray, y: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Margins q (n,) and their Jacobian dq/dtheta (n, P), by backpropagation.

        ReLU'(0) = 0. A shared parameter's column is the sum over its uses.
        """
        X, y = check_dataset(X, y, self.input_dim)
        theta = check_theta(theta, self.num_parameters)
        return self.unchecked_margin_jacobian(theta, X, y)

    def unchecked_margin_jacobian(self, theta, X, y, slopes=None):
        """`margin_jacobian` without argument checks, for inner loops.

        `slopes`, if given, maps (layer, sample, neuron) to the value used for ReLU'
        at that pre-activation instead of 0 or 1: a Clarke selection at a kink the
        caller holds at zero, whatever the sign rounding gives it.
        """
        Ws = self._weights(theta)
        Zs = self._forward(theta, X, Ws).preactivations
        q = y * Zs[-1][:, 0]
        G = y[:, None].astype(float)
        return q, self._backprop(Ws, X, Zs, self.depth, G, slopes, np.arange(len(X)))

    def batch_weight_matrices(self, thetas):
        """W^(l) of B parameter vectors at once: a list of (B, d_l, d_(l-1))."""
        B = len(thetas)
        Ws = []
        for s, G in zip(self.layer_slices, self._gather):
            u = np.concatenate([thetas[:, s], np.zeros((B, 1))], axis=1)
            Ws.append(u[:, G])
        return Ws

    def _pattern_masks(self, pattern, B, n):
        """An activation pattern (B, K) in the order of `invariants.kinks.all_kinks`
        as one (B, n, d_l) mask per hidden layer; None without one (or no ReLU)."""
        if pattern is None or self.activation != "relu":
            return None
        ends = np.cumsum([n * w for w in self.widths[1:-1]])[:-1]
        return [m.reshape(B, n, -1) for m in np.split(np.asarray(pattern), ends, 1)]

    def unchecked_margin_jacobians(self, thetas, X, y, pattern=None):
        """Margins (B, n), their Jacobians (B, n, P) and (z, scale), the hidden
        pre-activations (B, K) and their scales, of B parameter vectors at once,
        for the batch simulator.

        X is (n, d) shared by every row, or (B, n, d) one dataset per row (y then
        (B, n)). ReLU'(0) = 0, no slopes (the batch adds its pinned slopes
        itself). The hidden pre-activations are flattened in the order of
        `invariants.kinks.all_kinks` (layer, sample, neuron): none (K = 0) for a
        linear network, which has no kinks.

        `pattern`, if given, is the ReLU activation pattern to use instead of the
        signs of the pre-activations: (B, K) in the order above, 1.0 where a
        neuron counts as active. Margins and Jacobian are then those of the
        linear network that pattern selects, the smooth field of one region,
        which a difference Jacobian needs when the path runs along a kink; so are
        the pre-activations from the second hidden layer on.
        """
        thetas = np.asarray(thetas, dtype=float)
        B = thetas.shape[0]
        X = np.broadcast_to(X, (B,) + np.shape(X)[-2:])
        y = np.broadcast_to(y, (B, X.shape[1]))
        slices = self.layer_slices
        Ws = self.batch_weight_matrices(thetas)
        n = X.shape[1]
        masks = self._pattern_masks(pattern, B, n)
        H, Zs, Hs = X, [], []
        for l, W in enumerate(Ws, start=1):
            Z = H @ np.swapaxes(W, 1, 2)
            Zs.append(Z)
            if l < self.depth:
                H = self._sigma(Z) if masks is None else masks[l - 1] * Z
                Hs.append(H)
        q = y * Zs[-1][:, :, 0]
        J = np.zeros((B, n, self.num_parameters))
        G = y[:, :, None].astype(float)
        for l in range(self.depth, 0, -1):
            H_prev = X if l == 1 else Hs[l - 2]
            per_entry = (G[:, :, :, None] * H_prev[:, :, None, :]).reshape(B, n, -1)
            scatter = self._scatter[l - 1]
            if isinstance(scatter, tuple):
                entries, S = scatter
                J[:, :, slices[l - 1]] = per_entry[:, :, entries] @ S
            else:
                J[:, :, slices[l - 1]] = per_entry[:, :, scatter]
            if l > 1:
                active = self._sigma_prime(Zs[l - 2]) if masks is None else masks[l - 2]
                G = (G @ Ws[l - 1]) * active
        # Each pre-activation's scale, ||incoming weights|| ||layer input||, as in
        # `invariants.kinks.hidden_preactivations`, to judge zero against. A
        # linear network has no kinks: none are returned.
        zs, scales, H = [], [], X
        for W, Z in zip(Ws[:-1] if self.activation == "relu" else [], Zs[:-1]):
            zs.append(Z.reshape(B, -1))
            rows = (
                np.linalg.norm(W, axis=2)[:, None, :]
                * np.linalg.norm(H, axis=2)[:, :, None]
            )
            scales.append(rows.reshape(B, -1))
            H = self._sigma(Z)
        if not zs:
            return q, J, (np.empty((B, 0)), np.empty((B, 0)))
        return q, J, (np.concatenate(zs, axis=1), np.concatenate(scales, axis=1))

    def unchecked_weighted_gradients(self, thetas, X, y, weights, pattern=None):
        """sum_i weights[b, i] dq_i / dtheta (B, P) for B parameter vectors: the
        rows of `unchecked_margin_jacobians`'s J summed with the weights, by one
        backward pass that never forms J (n times less memory). X and `pattern`
        as there; X (n, d) only."""
        thetas = np.asarray(thetas, dtype=float)
        B, n = thetas.shape[0], np.shape(X)[0]
        slices = self.layer_slices
        Ws = self.batch_weight_matrices(thetas)
        masks = self._pattern_masks(pattern, B, n)
        H, Zs, Hs = np.broadcast_to(X, (B, n, np.shape(X)[1])), [], []
        for l, W in enumerate(Ws[:-1], start=1):
            Z = H @ np.swapaxes(W, 1, 2)
            Zs.append(Z)
            H = self._sigma(Z) if masks is None else masks[l - 1] * Z
            Hs.append(H)
        out = np.zeros((B, self.num_parameters))
        G = (np.asarray(y, float)[None, :] * weights)[:, :, None]
        for l in range(self.depth, 0, -1):
            H_prev = np.broadcast_to(X, (B, n, np.shape(X)[1])) if l == 1 else Hs[l - 2]
            per_entry = (np.swapaxes(G, 1, 2) @ H_prev).reshape(B, -1)
            scatter = self._scatter[l - 1]
            if isinstance(scatter, tuple):
                entries, S = scatter
                out[:, slices[l - 1]] = per_entry[:, entries] @ S
            else:
                out[:, slices[l - 1]] = per_entry[:, scatter]
            if l > 1:
                active = self._sigma_prime(Zs[l - 2]) if masks is None else masks[l - 2]
                G = (G @ Ws[l - 1]) * active
        return out

    def preactivation_gradients(self, theta, X, kinks, slopes=None):
        """Values z_k and gradients dz_k/dtheta (K, P) of hidden pre-activations.

        `kinks` lists (layer, sample, neuron) with layers counted from 1; `slopes`
        as in `unchecked_margin_jacobian` (it matters from depth 3 on, where a
        pre-activation depends on earlier kinks of the same sample).
        """
        Ws = self._weights(theta)
        values = np.empty(len(kinks))
        grads = np.empty((len(kinks), self.num_parameters))
        for k, (l, i, a) in enumerate(kinks):
            x = X[i : i + 1]
            Zs = self._forward(theta, x, Ws).preactivations
            values[k] = Zs[l - 1][0, a]
            seed = np.zeros((1, self.widths[l]))
            seed[0, a] = 1.0
            grads[k] = self._backprop(Ws, x, Zs, l, seed, slopes, np.array([i]))[0]
        return values, grads

    def _backprop(self, Ws, X, Zs, top, G, slopes, samples):
        """Rows d(G . Z_top)/dtheta: backpropagation from layer `top` down, with a
        scatter-add onto each layer's parameters (tied entries accumulate)."""
        n = X.shape[0]
        J = np.zeros((n, self.num_parameters))
        rows = {int(i): r for r, i in enumerate(samples)} if slopes else {}
        for l in range(top, 0, -1):
            H_prev = X if l == 1 else self._sigma(Zs[l - 2])
            per_entry = (G[:, :, None] * H_prev[:, None, :]).reshape(n, -1)
            sl = self.layer_slices[l - 1]
            scatter = self._scatter[l - 1]
            if isinstance(scatter, tuple):
                entries, S = scatter
                J[:, sl] = per_entry[:, entries] @ S
            else:
                J[:, sl] = per_entry[:, scatter]
            if l > 1:
                slope = self._sigma_prime(Zs[l - 2])
                if slopes and self.activation == "relu":
                    for (kl, ki, ka), value in slopes.items():
                        if kl == l - 1 and ki in rows:
                            slope[rows[ki], ka] = value
                G = (G @ Ws[l - 1]) * slope
        return J

    def _sigma(self, Z: np.ndarray) -> np.ndarray:
        return np.maximum(Z, 0.0) if self.activation == "relu" else Z

    def _sigma_prime(self, Z: np.ndarray) -> np.ndarray:
        if self.activation == "relu":
            return (Z > 0.0).astype(float)
        return np.ones_like(Z)

    # -- description -----------------------------------------------------------------

    def describe(self) -> str:
        kind = "shared" if self.shares_weights else "no-share"
        return (
            f"{self.family} {self.activation} depth={self.depth} "
            f"widths={list(self.widths)} P={self.num_parameters} ({kind})"
        )

    def __repr__(self) -> str:
        maps = [P.tolist() for P in self.index_maps]
        return (
            f"from_index_maps({maps!r}, activation={self.activation!r}, "
            f"family={self.family!r})"
        )

    def _repr_pretty_(self, printer, cycle) -> None:
        printer.text(repr(self))


# -- constructors ----------------------------------------------------------------------


def from_index_maps(
    layers: Sequence[ArrayLike],
    activation: Activation = "relu",
    *,
    family: str = "index_maps",
) -> Network:
    """A network of the class N from its index maps, first layer first."""
    return Network(tuple(np.asarray(P) for P in layers), activation, family)


def fully_connected(widths: Sequence[int], activation: Activation = "relu") -> Network:
    """Dense layers d_0 -> d_1 -> ... -> d_m = 1; u^(l) is W^(l) read row by row."""
    widths = _check_widths(widths, "widths")
    maps = [np.arange(b * a).reshape(b, a) for a, b in itertools.pairwise(widths)]
    return Network(tuple(maps), activation, "fully_connected")


def diagonal(dim: int, depth: int, activation: Activation = "relu") -> Network:
    """Layers 1..m-1 are dim x dim diagonal, the last layer a 1 x dim row."""
    dim = _check_positive_int(dim, "dim")
    depth = _check_positive_int(depth, "depth", minimum=2)
    if dim * dim > MAX_ENTRIES:
        raise ValueError(f"dim={dim} makes {dim}x{dim} layers, more than {MAX_ENTRIES}")
    diag = np.full((dim, dim), -1)
    diag[np.arange(dim), np.arange(dim)] = np.arange(dim)
    maps = [diag.copy() for _ in range(depth - 1)] + [np.arange(dim)[None, :]]
    return Network(tuple(maps), activation, "diagonal")


def convolutional(
    input_dim: int,
    kernel_size: int,
    stride: int = 1,
    activation: Activation = "relu",
    *,
    depth: int = 2,
) -> Network:
    """depth-1 single-channel convolutions, each with one shared filter, then a dense
    output layer. theta = [filter_1, ..., filter_{m-1}, output weights].

    With depth 2 this is the network of the shared-weights theorem: patches
    x[j*stride : j*stride + kernel_size], one filter, one output weight per patch.
    """
    d = _check_positive_int(input_dim, "input_dim")
    k = _check_positive_int(kernel_size, "kernel_size")
    s = _check_positive_int(stride, "stride")
    depth = _check_positive_int(depth, "depth", minimum=2)
    if d * d > MAX_ENTRIES:
        raise ValueError(f"input_dim={d} is larger than this exact simulator allows")
    maps = []
    for _ in range(depth - 1):
        if k > d:
            raise ValueError(
                f"kernel_size={k} is larger than the layer's input width {d}; "
                "use a smaller kernel or fewer convolutional layers"
            )
        out = (d - k) // s + 1
        P = np.full((out, d), -1)
        for j in range(out):
            P[j, j * s : j * s + k] = np.arange(k)
        maps.append(P)
        d = out
    maps.append(np.arange(d)[None, :])
    return Network(tuple(maps), activation, "convolutional")


def no_share(masks: Sequence[ArrayLike], activation: Activation = "relu") -> Network:
    """N_no-share from boolean masks (d_l, d_{l-1}): True entries become parameters,
    numbered row by row, so each parameter is used exactly once."""
    maps = []
    for l, M in enumerate(masks, start=1):
        M = np.asarray(M, dtype=bool)
        if M.ndim != 2:
            raise ValueError(f"masks[{l - 1}] must be 2-D, got shape {M.shape}")
        P = np.full(M.shape, -1)
        P[M] = np.arange(int(M.sum()))
        maps.append(P)
    return Network(tuple(maps), activation, "no_share")


# -- validation of structure ------------------------------------------------------


def _check_index_maps(maps) -> tuple[np.ndarray, ...]:
    if len(maps) == 0:
        raise ValueError("index_maps must hold at least one layer, got none")
    out = []
    for l, P in enumerate(maps, start=1):
        try:
            P = np.asarray(P)
        except ValueError as exc:
            raise ValueError(
                f"index map of layer {l} is not a 2-D array: {exc}"
            ) from None
        if not (
            np.issubdtype(P.dtype, np.integer) or np.issubdtype(P.dtype, np.floating)
        ):
            raise ValueError(
                f"index map of layer {l} must hold integers, got dtype {P.dtype}"
            )
        if P.size > MAX_ENTRIES:
            raise ValueError(
                f"index map of layer {l} has {P.size} entries, more than "
                f"{MAX_ENTRIES}: "
                "this exact simulator is meant for small networks"
            )
        if P.ndim != 2:
            raise ValueError(
                f"index map of layer {l} must be 2-D (d_l, d_(l-1)), "
                f"got shape {P.shape}"
            )
        if P.size == 0:
            raise ValueError(f"index map of layer {l} is empty, shape {P.shape}")
        if not np.issubdtype(P.dtype, np.integer):
            if not np.all(np.isfinite(P)) or not np.all(P == np.round(P)):
                raise ValueError(f"index map of layer {l} must hold integers")
            P = P.astype(np.int64)
        P = P.astype(np.int64)
        if P.min() < -1:
            raise ValueError(
                f"index map of layer {l} has entry {P.min()}; entries are -1 "
                "(no connection) or a parameter index >= 0"
            )
        used = np.unique(P[P >= 0])
        if used.size == 0:
            raise ValueError(f"index map of layer {l} uses no parameter")
        missing = np.setdiff1d(np.arange(used.max() + 1), used)
        if missing.size:
            raise ValueError(
                f"index map of layer {l} skips parameter(s) {missing.tolist()[:5]}: "
                f"indices must cover 0..{used.max()} without gaps"
            )
        if out and P.shape[1] != out[-1].shape[0]:
            raise ValueError(
                f"index map of layer {l} has {P.shape[1]} columns but layer {l - 1} "
                f"has {out[-1].shape[0]} rows"
            )
        P.setflags(write=False)
        out.append(P)
    if out[-1].shape[0] != 1:
        raise ValueError(
            f"the output layer must have one row (one output), got {out[-1].shape[0]}"
        )
    return tuple(out)


def _check_widths(widths, name: str) -> tuple[int, ...]:
    if not isinstance(widths, (list, tuple, np.ndarray)):
        # ValueError, as for every other bad argument of a case (one except clause).
        message = f"{name}={widths!r} must be a list of widths [d_0, ..., 1]"
        raise ValueError(message)  # noqa: TRY004
    w = tuple(widths)
    if len(w) < 2:
        raise ValueError(f"{name}={w!r} needs at least an input and an output width")
    for v in w:
        if isinstance(v, bool) or not isinstance(v, (int, float, np.integer)):
            message = f"{name}={w!r}: every width must be a positive integer"
            raise ValueError(message)  # noqa: TRY004
        if not (math.isfinite(v) and int(v) == v and v >= 1):
            raise ValueError(f"{name}={w!r}: every width must be a positive integer")
    for a, b in itertools.pairwise(w):
        if a * b > MAX_ENTRIES:
            raise ValueError(
                f"{name}={w!r}: a {b} x {a} layer has more than {MAX_ENTRIES} weights; "
                "this exact simulator is meant for small networks"
            )
    if w[-1] != 1:
        raise ValueError(f"{name}={w!r}: the last width must be 1 (one output)")
    return tuple(int(v) for v in w)


def _check_positive_int(v, name: str, minimum: int = 1) -> int:
    ok = not isinstance(v, bool) and isinstance(v, (int, float, np.integer))
    if not (ok and math.isfinite(v) and int(v) == v and v >= minimum):
        raise ValueError(f"{name}={v!r} must be an integer >= {minimum}")
    if v > MAX_ENTRIES:
        raise ValueError(f"{name}={v!r} is larger than this exact simulator allows")
    return int(v)
