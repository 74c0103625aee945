"""Conservation laws of gradient flow (Lemmas C.1-C.4), measured on plain arrays.

Every checker takes a network of the class N and a sequence of parameter vectors
`thetas` of shape (K, P), checkpoints of one path from anyone's trainer, and never
calls the simulator. Each conserved quantity Q comes back as a `Drift`: its values
Q_k, the scale S_k it is judged against, and

    relative_drift = max_k |Q_k - Q_0| / max(S_0, S_k).

The laws (m = depth, u^(l) the parameters of layer l, W_l its weight matrix):

- C.2, any network in N, l = 1..m-1: ||u^(l)||^2 - ||u^(l+1)||^2.
- C.1, fully-connected: ||W_l||_F^2 - ||W_{l+1}||_F^2 (the same numbers as C.2 there)
  and, per hidden neuron i of layer l, ||W_l[i, :]||^2 - ||W_{l+1}[:, i]||^2.
- C.3, depth-2 N_no-share: ||w_j||^2 - v_j^2 per hidden neuron j. `neuron_balance`
  measures the per-neuron law of C.1/C.3, ||incoming||^2 - ||outgoing||^2, on any
  N_no-share network of any depth: the proof is one neuron at a time and needs only
  that each parameter feeds one entry of one W_l. A shared parameter couples every
  neuron that uses it, so the per-neuron law fails there and is refused.
- C.4, depth-2 N_no-share, in the limit: ||w~_j|| = |v~_j|.

Why the laws hold for more than plain GF. Layer by layer, and neuron by neuron
without sharing, <u, dq_i/du> is the same for both sides of each law (Euler's
identity, with sigma'(z) z = sigma(z) for every Clarke selection at z = 0). So any
velocity sum_i c_i grad q_i conserves them, whatever the c_i >= 0 and whatever the
positive change of time: the simulator's normalised weights, its sliding limit and
its sliding-mode velocity all keep them. A KKT polish that jumps to a solution does
not move along a flow; checkpoints it produced are not a path to judge.

Naming. Layers count from 1 as in the paper; neurons count from 1 within a layer, so
"C.3 neuron j" is row j - 1 of W_1, and "C.1 neuron (l, j)" is row j - 1 of W_l.

Scales. A conserved difference is tiny next to ||theta||^2 far out, so it is judged
against the magnitudes being subtracted (for example ||w_j||^2 + v_j^2). That sum is
floored at SCALE_FLOOR * ||theta_k||^2: a dead or frozen neuron (Thm 3.2's neuron 2
freezes while ||theta|| grows without bound) would otherwise turn the integrator's
errors, which are controlled relative to ||theta||, into huge ratios, or give 0/0.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from invariants.networks import Network
from invariants.validation import check_theta

__all__ = [
    "SCALE_FLOOR",
    "TOLERANCES",
    "Drift",
    "Tolerance",
    "assert_balanced",
    "assert_limit_balanced",
    "balance_drifts",
    "default_rtol",
    "frobenius_balance",
    "largest_drift",
    "layer_balance",
    "limit_balance",
    "neuron_balance",
]

log = logging.getLogger(__name__)

# A neuron carrying less than 0.1 % of ||theta||^2 is judged against 0.1 % of
# ||theta||^2: integration errors are ~rtol * ||theta|| per coordinate whatever the
# neuron's size, so a smaller floor would flag accurate paths whose small neurons
# carry errors of the whole vector's size; a larger one would blur real drift of
# small neurons.
SCALE_FLOOR = 1e-3


@dataclass(frozen=True)
class Tolerance:
    """A relative tolerance and the numerical reason for its value."""

    rtol: float
    reason: str


_EPS32 = float(np.finfo(np.float32).eps)

# Every tolerance of this module, with its reason. A test or caller that needs a
# different value adds an entry here instead of writing a literal at the call site.
TOLERANCES: dict[str, Tolerance] = {
    "gradient_flow": Tolerance(
        1e-6,
        "default for float64 paths of the simulator: it integrates with relative "
        "tolerance 1e-10 per step, so each step moves a quadratic Q by at most "
        "~2e-10 of its scale ||theta||^2; over the O(1e3) steps of a run, added up "
        "in the worst (linear) way, ~2e-7; 1e-6 leaves a factor 5 of headroom and "
        "is far above 4 sqrt(eps64) ~ 6e-8, the rounding of Q itself.",
    ),
    "float32": Tolerance(
        4 * _EPS32**0.5,
        "default for float32 (or lower) paths: 4 sqrt(eps32) ~ 1.4e-3, SciPy's "
        "convention; each float32 step rounds theta at eps32 ~ 1.2e-7 relative and "
        "a trainer takes 1e3-1e4 of them, so 1e-6 would flag rounding, not drift.",
    ),
    "reference_dop853": Tolerance(
        1e-8,
        "paths integrated with solve_ivp DOP853 at rtol 1e-12, atol 1e-14 (the "
        "suite's reference flows): local errors ~1e-12 over a few hundred steps, "
        "also across ReLU kinks where the step is cut back; 1e-8 leaves margin.",
    ),
    "limit": Tolerance(
        1e-6,
        "C.4 at a point read off a finite path: with Q = ||w||^2 - v^2 conserved, "
        "| ||w|| - |v| | / ||theta|| = |Q| / (||theta|| (||w|| + |v|)), which is at "
        "most sqrt|Q| / ||theta|| ~ 1e-8 at the simulator's ||theta|| = 1e8 for "
        "Q = O(1), plus the direction's own error ~1e-7 (see gradient_flow).",
    ),
}
# Plain gradient descent has no default: each step changes a C.2 quantity by exactly
# eta^2 (||g^(l)||^2 - ||g^(l+1)||^2), an O(eta) relative drift per unit of time, so
# a GD trainer must pass rtol ~ eta * integral ||g||^2 dt / scale explicitly.


def default_rtol(dtype) -> float:
    """The default relative tolerance for paths stored in `dtype` (see TOLERANCES)."""
    dtype = np.dtype(dtype)
    if np.issubdtype(dtype, np.floating) and np.finfo(dtype).eps > _EPS32 / 2:
        return TOLERANCES["float32"].rtol
    return TOLERANCES["gradient_flow"].rtol


# -- the measured quantity -------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Drift:
    """One conserved quantity Q along a path: Q_k, its scale S_k and how far it moved.

    `relative_drifts[k]` = |Q_k - Q_0| / max(S_0, S_k); `relative_drift` is their
    maximum, reached at `worst_checkpoint`.
    """

    name: str
    formula: str
    values: np.ndarray
    scales: np.ndarray

    def __post_init__(self) -> None:
        values = np.array(self.values, dtype=float)
        scales = np.array(self.scales, dtype=float)
        if values.ndim != 1 or values.shape != scales.shape or values.size == 0:
            raise ValueError(
                f"Drift {self.name!r}: values and scales must be non-empty 1-D arrays "
                f"of one length, got shapes {values.shape} and {scales.shape}"
            )
        values.setflags(write=False)
        scales.setflags(write=False)
        object.__setattr__(self, "values", values)
        object.__setattr__(self, "scales", scales)

    @property
    def absolute_drifts(self) -> np.ndarray:
        return np.abs(self.values - self.values[0])

    @property
    def relative_drifts(self) -> np.ndarray:
        denominator = np.maximum(self.scales[0], self.scales)
        # Zero only where theta_0 = theta_k = 0, so Q_0 = Q_k = 0: no drift at all.
        return np.divide(
            self.absolute_drifts,
            denominator,
            out=np.zeros_like(denominator),
            where=denominator > 0,
        )

    @property
    def relative_drift(self) -> float:
        return float(self.relative_drifts.max())

    @property
    def absolute_drift(self) -> float:
        return float(self.absolute_drifts.max())

    @property
    def worst_checkpoint(self) -> int:
        return int(np.argmax(self.relative_drifts))

    def summary(self) -> dict:
        """Plain floats and ints for a JSON report."""
        k = self.worst_checkpoint
        return {
            "formula": self.formula,
            "relative_drift": self.relative_drift,
            "absolute_drift": self.absolute_drift,
            "worst_checkpoint": k,
            "checkpoints": int(self.values.size),
            "initial_value": float(self.values[0]),
            "scale_at_worst": float(max(self.scales[0], self.scales[k])),
        }

    def __repr__(self) -> str:
        return (
            f"Drift({self.name!r}, relative_drift={self.relative_drift:.3e}, "
            f"worst_checkpoint={self.worst_checkpoint}, K={self.values.size})"
        )


def largest_drift(drifts: Mapping[str, Drift] | Iterable[Drift]) -> Drift:
    """The Drift with the largest relative drift (a dict's values or any iterable)."""
    items = list(drifts.values() if isinstance(drifts, Mapping) else drifts)
    if not items:
        raise ValueError("drifts is empty: no conserved quantity to compare")
    return max(items, key=lambda d: d.relative_drift)


# -- the laws --------------------------------------------------------------------------


def layer_balance(network: Network, thetas: ArrayLike) -> dict[str, Drift]:
    """Lemma C.2, any network in N: ||u^(l)||^2 - ||u^(l+1)||^2, l = 1..m-1."""
    _check_network(network)
    thetas = _check_thetas(network, thetas)
    if network.depth < 2:
        raise ValueError(
            f"layer_balance needs depth >= 2 (two layers to balance), got depth="
            f"{network.depth} for {network.describe()}"
        )
    floor = _floor(thetas)
    sq = [np.sum(thetas[:, s] ** 2, axis=1) for s in network.layer_slices]
    out = {}
    for l in range(1, network.depth):
        a, b = sq[l - 1], sq[l]
        out[f"C.2 layers {l}-{l + 1}"] = Drift(
            f"C.2 layers {l}-{l + 1}",
            f"||u^({l})||^2 - ||u^({l + 1})||^2",
            a - b,
            np.maximum(a + b, floor),
        )
    return out


def frobenius_balance(network: Network, thetas: ArrayLike) -> dict[str, Drift]:
    """Lemma C.1, fully-connected only: ||W_l||_F^2 - ||W_{l+1}||_F^2 per pair of
    layers and ||W_l[i, :]||^2 - ||W_{l+1}[:, i]||^2 per hidden neuron."""
    _check_network(network)
    thetas = _check_thetas(network, thetas)
    if not network.is_fully_connected:
        raise ValueError(
            "frobenius_balance (Lemma C.1) requires a fully-connected network "
            f"(network.is_fully_connected), got {network.describe()}; "
            "use layer_balance (C.2) for any network in N"
        )
    if network.depth < 2:
        raise ValueError(
            f"frobenius_balance needs depth >= 2, got {network.describe()}"
        )
    Ws = _weights_along(network, thetas)
    floor = _floor(thetas)
    out = _frobenius_layers(network, Ws, floor)
    out.update(_per_neuron(network, Ws, floor, "C.1 neuron ({l}, {j})"))
    return out


def neuron_balance(network: Network, thetas: ArrayLike) -> dict[str, Drift]:
    """The per-neuron law of C.1/C.3 on N_no-share, any depth: for hidden neuron j of
    layer l, ||W_l[j-1, :]||^2 - ||W_{l+1}[:, j-1]||^2 (||w_j||^2 - v_j^2 at depth 2).

    Valid exactly when no parameter is shared; a shared network raises ValueError.
    Names: "C.3 neuron j" at depth 2, "C.1 neuron (l, j)" deeper and fully-connected,
    "C.1/C.3 neuron (l, j)" deeper with sparsity (the same proof, neuron by neuron).
    """
    _check_network(network)
    thetas = _check_thetas(network, thetas)
    if not network.is_no_share:
        raise ValueError(
            "neuron_balance (Lemmas C.1/C.3, per neuron) requires N_no-share "
            "(network.is_no_share: no parameter used twice), got "
            f"{network.describe()}; "
            "a shared parameter couples the neurons that use it, and only the layer "
            "law C.2 (layer_balance) holds"
        )
    if network.depth < 2:
        raise ValueError(f"neuron_balance needs depth >= 2, got {network.describe()}")
    if network.depth == 2:
        template = "C.3 neuron {j}"
    elif network.is_fully_connected:
        template = "C.1 neuron ({l}, {j})"
    else:
        template = "C.1/C.3 neuron ({l}, {j})"
    Ws = _weights_along(network, thetas)
    return _per_neuron(network, Ws, _floor(thetas), template)


def balance_drifts(network: Network, thetas: ArrayLike) -> dict[str, Drift]:
    """Every law that applies to `network`, each quantity once, keyed by name.

    C.2 for depth >= 2; C.1's Frobenius pairs if fully-connected; the per-neuron law
    if N_no-share (from `neuron_balance`, which is C.1's per-neuron law on a
    fully-connected net, so it is not listed twice). Depth 1 has no law: {}.
    """
    _check_network(network)
    thetas = _check_thetas(network, thetas)
    if network.depth < 2:
        log.info("no balance law for depth 1: %s", network.describe())
        return {}
    out = layer_balance(network, thetas)
    if network.is_fully_connected:
        Ws = _weights_along(network, thetas)
        out.update(_frobenius_layers(network, Ws, _floor(thetas)))
    if network.is_no_share:
        out.update(neuron_balance(network, thetas))
    log.debug("%d balance quantities for %s", len(out), network.describe())
    return out


def assert_balanced(
    network: Network, thetas: ArrayLike, *, rtol: float | None = None, context: str = ""
) -> dict[str, Drift]:
    """Raise AssertionError unless every law that applies holds to `rtol` relative.

    rtol defaults to `default_rtol(thetas.dtype)` (TOLERANCES). The message names
    the worst quantity, its relative drift, the tolerance, the network and the
    checkpoint. Returns the drifts when they pass.
    """
    _check_network(network)
    dtype = _input_dtype(thetas)
    thetas = _check_thetas(network, thetas)
    rtol = default_rtol(dtype) if rtol is None else _check_rtol(rtol)
    drifts = balance_drifts(network, thetas)
    failing = [d for d in drifts.values() if not d.relative_drift <= rtol]
    if failing:
        worst = largest_drift(failing)
        k = worst.worst_checkpoint
        others = sorted(d.name for d in failing if d is not worst)
        where = (
            f"checkpoint {k} of {len(thetas)} (Q_0 = {worst.values[0]:.6g}, "
            f"Q_{k} = {worst.values[k]:.6g}, scale = "
            f"{max(worst.scales[0], worst.scales[k]):.6g})"
        )
        if others:
            where += f"; also over tolerance: {', '.join(others)}"
        raise AssertionError(
            _message(
                f"relative drift of {worst.name} [{worst.formula}]",
                worst.relative_drift,
                rtol,
                network,
                where,
                context,
            )
        )
    return drifts


# -- the limit -------------------------------------------------------------------------


def limit_balance(network: Network, theta_tilde: ArrayLike) -> dict[str, float]:
    """Lemma C.4, depth-2 N_no-share: | ||w~_j|| - |v~_j| | / ||theta~|| per neuron j,
    keyed "C.4 neuron j". Scale-free: any positive multiple of theta~ gives the same."""
    _check_network(network)
    _require_depth2_no_share(network, "limit_balance (Lemma C.4)")
    theta = check_theta(theta_tilde, network.num_parameters, "theta_tilde")
    norm = float(np.linalg.norm(theta))
    if norm == 0.0:
        raise ValueError("theta_tilde = 0 has no direction: ||theta_tilde|| = 0")
    W1, W2 = network.weight_matrices(theta)
    incoming = np.linalg.norm(W1, axis=1)
    outgoing = np.abs(W2[0])
    return {
        f"C.4 neuron {j}": float(abs(a - b) / norm)
        for j, (a, b) in enumerate(zip(incoming, outgoing), start=1)
    }


def assert_limit_balanced(
    network: Network,
    theta_tilde: ArrayLike,
    *,
    rtol: float | None = None,
    context: str = "",
) -> dict[str, float]:
    """Raise AssertionError unless every neuron satisfies C.4 to `rtol` relative to
    ||theta~|| (default TOLERANCES["limit"]). Returns the imbalances when they pass."""
    rtol = TOLERANCES["limit"].rtol if rtol is None else _check_rtol(rtol)
    imbalance = limit_balance(network, theta_tilde)
    failing = {k: v for k, v in imbalance.items() if not v <= rtol}
    if failing:
        name = max(failing, key=failing.get)
        others = sorted(k for k in failing if k != name)
        where = "at theta_tilde"
        if others:
            where += f"; also over tolerance: {', '.join(others)}"
        raise AssertionError(
            _message(
                f"relative imbalance of {name} [| ||w~_j|| - |v~_j| | / ||theta~||]",
                failing[name],
                rtol,
                network,
                where,
                context,
            )
        )
    return imbalance


# -- helpers ---------------------------------------------------------------------------


def _message(quantity, value, rtol, network, where, context) -> str:
    # One shape for every failure of this module: quantity, value, what it should
    # be, then the context, so logs from any checker read (and grep) alike.
    text = (
        f"{quantity} = {value:.3e}, should be <= {rtol:.1e}; "
        f"network: {network.describe()}; {where}"
    )
    return f"{text}; {context}" if context else text


def _frobenius_layers(network, Ws, floor) -> dict[str, Drift]:
    out = {}
    for l in range(1, network.depth):
        a = np.sum(Ws[l - 1] ** 2, axis=(1, 2))
        b = np.sum(Ws[l] ** 2, axis=(1, 2))
        out[f"C.1 layers {l}-{l + 1}"] = Drift(
            f"C.1 layers {l}-{l + 1}",
            f"||W_{l}||_F^2 - ||W_{l + 1}||_F^2",
            a - b,
            np.maximum(a + b, floor),
        )
    return out


def _per_neuron(network, Ws, floor, template: str) -> dict[str, Drift]:
    """One Drift per hidden neuron; `template` names it from l and j (1-based)."""
    out = {}
    for l, row in network.hidden_neurons():
        a = np.sum(Ws[l - 1][:, row, :] ** 2, axis=1)
        b = np.sum(Ws[l][:, :, row] ** 2, axis=1)
        name = template.format(l=l, j=row + 1)
        formula = (
            f"||w_{row + 1}||^2 - v_{row + 1}^2"
            if network.depth == 2
            else f"||W_{l}[{row}, :]||^2 - ||W_{l + 1}[:, {row}]||^2"
        )
        out[name] = Drift(name, formula, a - b, np.maximum(a + b, floor))
    return out


def _weights_along(network: Network, thetas: np.ndarray) -> list[np.ndarray]:
    """W_l at every checkpoint: a list over layers of (K, d_l, d_{l-1}) arrays."""
    per_checkpoint = [network.weight_matrices(theta) for theta in thetas]
    return [np.stack(layer) for layer in zip(*per_checkpoint)]


def _floor(thetas: np.ndarray) -> np.ndarray:
    return SCALE_FLOOR * np.sum(thetas**2, axis=1)


def _require_depth2_no_share(network: Network, what: str) -> None:
    if network.depth != 2 or not network.is_no_share:
        raise ValueError(
            f"{what} requires a depth-2 N_no-share network (network.depth == 2 and "
            f"network.is_no_share), got {network.describe()}"
        )


def _check_network(network) -> None:
    if not isinstance(network, Network):
        raise TypeError(
            f"network must be an invariants.networks.Network, got "
            f"{type(network).__name__}"
        )


def _input_dtype(thetas) -> np.dtype:
    return getattr(thetas, "dtype", np.dtype(float))


def _check_thetas(network: Network, thetas) -> np.ndarray:
    """thetas as a finite float (K, P) array, K >= 1, P = network.num_parameters."""
    P = network.num_parameters
    try:
        arr = np.asarray(thetas)
    except ValueError as exc:  # ragged nested sequences
        raise ValueError(f"thetas must be a (K, {P}) array: {exc}") from None
    if arr.dtype.kind not in "biuf":
        raise ValueError(f"thetas must hold real numbers, got dtype {arr.dtype}")
    if arr.ndim != 2:
        raise ValueError(
            f"thetas must be 2-D (K, P) with P = {P} for this network, one row per "
            f"checkpoint, got shape {arr.shape}"
        )
    if arr.shape[0] == 0:
        raise ValueError(
            f"thetas is empty (K = 0, shape {arr.shape}): pass at least one checkpoint"
        )
    if arr.shape[1] != P:
        raise ValueError(
            f"thetas has P = {arr.shape[1]} columns (shape {arr.shape}) but the "
            f"network has {P} parameters: {network.describe()}"
        )
    arr = arr.astype(float)
    if not np.all(np.isfinite(arr)):
        k, i = np.argwhere(~np.isfinite(arr))[0].tolist()
        raise ValueError(f"thetas must be finite; thetas[{k}, {i}] = {arr[k, i]}")
    return arr


def _check_rtol(rtol) -> float:
    try:
        value = float(rtol)
    except (TypeError, ValueError):
        raise ValueError(f"rtol={rtol!r} must be a positive finite number") from None
    if not (value > 0 and np.isfinite(value)):
        raise ValueError(f"rtol={rtol!r} must be a positive finite number")
    return value
