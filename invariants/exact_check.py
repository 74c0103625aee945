"""Witnesses of non-optimality as data, checked in exact rational arithmetic.

A witness against a limit theta~ of Problem 2 is a point theta' with every margin
>= 1 and ||theta'|| < ||theta~||, sometimes also within a radius of theta~ (not a
local optimum) or differing from theta~ in one layer only (Problem 4). The norm
gaps worth checking are second order in the distance, so at a radius of 1e-3 they
are ~1e-6 of ||theta~||^2 and, for the paper's own families at small eps, ~1e-13:
the size of the rounding in a floating-point margin. So nothing here is decided in
floating point. Every float given (theta', theta~, X, y, the radius) is read as the
rational number it is (`fractions.Fraction` is exact on floats), and the forward
pass, ReLU included, the squared norms and the squared distance are computed
without rounding. theta~ is taken as given: its exact squared norm is the bar, and
its own margins, which may be 1 - ulp after the rescaling that produced it, are
reported but not required.

`Witness` keeps one witness as a frozen record that round-trips through JSON bit
for bit; `Witness.verify()` (a bool) and `Witness.report()` (the measured
quantities and the reasons) re-check it here from scratch. The searches that
propose witnesses (`invariants.witness`) share no code with this module beyond the
network's index maps, so a bug there cannot vouch for itself, and checking a stored
witness needs neither them nor an optimiser.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
from numpy.typing import ArrayLike

from invariants.casefile import network_from_spec, network_to_spec
from invariants.networks import Network
from invariants.validation import check_dataset, check_layer, check_theta

__all__ = [
    "CLAIM_RTOL",
    "Witness",
    "WitnessError",
    "assert_witness",
    "check_radius",
    "exact_margins",
    "exactly_feasible",
    "verify_witness",
]

# Relative agreement required between a witness's claimed norm gap and the exact
# one: the claim is the exact gap rounded once, or a float computation of it.
CLAIM_RTOL = 1e-9
_FIELDS = ("network", "X", "y", "theta", "theta_tilde", "norm_gap", "search")


class WitnessError(AssertionError):
    """A proposed witness that exact arithmetic does not confirm."""


@dataclass(frozen=True, eq=False)
class Witness:
    """theta' (`theta`) against the limit `theta_tilde` on (network, X, y).

    `norm_gap` is the claimed ||theta~||^2 - ||theta'||^2; `radius` the distance
    bound it was found under (None for a global claim); `layer` the only layer it
    changes (None when it may change all); `search` says which search found it.
    Arrays are kept as tuples of Python floats, so the record is plain data.
    """

    network: Network
    X: tuple
    y: tuple
    theta: tuple
    theta_tilde: tuple
    norm_gap: float
    search: str
    radius: float | None = None
    layer: int | None = None

    def __post_init__(self) -> None:
        X, y = check_dataset(self.X, self.y, self.network.input_dim)
        P = self.network.num_parameters
        theta = check_theta(self.theta, P, "theta")
        theta_tilde = check_theta(self.theta_tilde, P, "theta_tilde")
        set_ = object.__setattr__
        set_(self, "X", tuple(tuple(float(v) for v in row) for row in X))
        set_(self, "y", tuple(float(v) for v in y))
        set_(self, "theta", tuple(float(v) for v in theta))
        set_(self, "theta_tilde", tuple(float(v) for v in theta_tilde))
        if not _is_number(self.norm_gap) or not math.isfinite(self.norm_gap):
            raise ValueError(f"norm_gap={self.norm_gap!r} must be a finite float")
        set_(self, "norm_gap", float(self.norm_gap))
        if not isinstance(self.search, str):
            # ValueError, as for every other bad field (one except clause).
            raise ValueError(f"search={self.search!r} must be a string")  # noqa: TRY004
        if self.radius is not None:
            set_(self, "radius", check_radius(self.radius))
        if self.layer is not None:
            set_(self, "layer", check_layer(self.layer, self.network.depth))

    @property
    def relative_gap(self) -> float:
        """The claimed gap relative to ||theta~||^2."""
        return self.norm_gap / float(np.dot(self.theta_tilde, self.theta_tilde))

    @property
    def distance(self) -> float:
        """||theta' - theta~||, in floating point (for reading, not for proof)."""
        return float(np.linalg.norm(np.subtract(self.theta, self.theta_tilde)))

    def verify(self) -> bool:
        """True only if `report()` finds every condition holds, in exact arithmetic."""
        return self.report()["verified"]

    def report(self) -> dict:
        """`verify_witness` on this record, recomputed from scratch, plus its claimed
        gap against the exact one (relative agreement `CLAIM_RTOL`)."""
        report = verify_witness(
            self.network,
            self.X,
            self.y,
            self.theta_tilde,
            self.theta,
            radius=self.radius,
            layer=self.layer,
        )
        exact = report["norm_gap"]
        if not abs(self.norm_gap - exact) <= CLAIM_RTOL * abs(exact):
            report["reasons"].append(
                f"claimed norm_gap {self.norm_gap!r} differs from the exact {exact!r}"
            )
            report["verified"] = False
        return report

    def to_dict(self) -> dict:
        return {
            "network": network_to_spec(self.network),
            "X": [list(row) for row in self.X],
            "y": list(self.y),
            "theta": list(self.theta),
            "theta_tilde": list(self.theta_tilde),
            "norm_gap": self.norm_gap,
            "search": self.search,
            "radius": self.radius,
            "layer": self.layer,
        }

    def to_json(self) -> str:
        # json writes floats with repr, which reads back bit for bit.
        return json.dumps(self.to_dict(), allow_nan=False)

    @classmethod
    def from_dict(cls, data: dict) -> Witness:
        if not isinstance(data, dict):
            message = f"a witness must be a dict, got {type(data).__name__}"
            raise ValueError(message)  # noqa: TRY004
        missing = [k for k in _FIELDS if k not in data]
        unknown = set(data) - set(_FIELDS) - {"radius", "layer"}
        if missing or unknown:
            raise ValueError(
                f"witness has missing key(s) {missing} and unknown key(s) "
                f"{sorted(unknown)}; the keys are {list(_FIELDS)} + radius, layer"
            )
        for key in ("X", "y", "theta", "theta_tilde"):
            _check_numbers(data[key], key)
        return cls(
            network_from_spec(data["network"]),
            data["X"],
            data["y"],
            data["theta"],
            data["theta_tilde"],
            data["norm_gap"],
            data["search"],
            data.get("radius"),
            data.get("layer"),
        )

    @classmethod
    def from_json(cls, text: str) -> Witness:
        return cls.from_dict(json.loads(text))

    def __eq__(self, other) -> bool:
        if not isinstance(other, Witness):
            return NotImplemented
        return self.to_json() == other.to_json()

    def __hash__(self) -> int:
        return hash(self.to_json())

    def __repr__(self) -> str:
        return f"Witness.from_dict({self.to_dict()!r})"

    def _repr_pretty_(self, printer, cycle) -> None:
        printer.text(repr(self))


# -- exact arithmetic ---------------------------------------------------------------


def _exact(values) -> list[Fraction]:
    return [Fraction(float(v)) for v in np.ravel(values)]


def exact_margins(network: Network, X, y, theta) -> list[Fraction]:
    """q_i = y_i Phi(theta; x_i) for every sample, as exact rationals.

    The weight matrices are read from the index maps (-1 is a zero entry, an index
    used twice is a shared weight) and hidden layers apply max(z, 0) exactly, or
    the identity for linear networks.
    """
    X, y = check_dataset(X, y, network.input_dim)
    theta = check_theta(theta, network.num_parameters)
    u = [_exact(theta[s]) for s in network.layer_slices]
    zero = Fraction(0)
    Ws = [
        [[u_l[j] if j >= 0 else zero for j in row] for row in P.tolist()]
        for u_l, P in zip(u, network.index_maps)
    ]
    relu = network.activation == "relu"
    out = []
    for x, label in zip(X, y):
        h = _exact(x)
        for l, W in enumerate(Ws, start=1):
            z = [sum((w * v for w, v in zip(row, h) if w and v), zero) for row in W]
            h = [max(v, zero) for v in z] if relu and l < len(Ws) else z
        out.append(Fraction(float(label)) * h[0])
    return out


def _squared(values) -> Fraction:
    return sum((v * v for v in values), Fraction(0))


def verify_witness(
    network: Network,
    X: ArrayLike,
    y: ArrayLike,
    theta_tilde: ArrayLike,
    theta_prime: ArrayLike,
    *,
    radius: float | None = None,
    layer: int | None = None,
) -> dict:
    """Check in exact arithmetic that theta' is a witness against theta~.

    The conditions: every margin of theta' is >= 1; ||theta'||^2 < ||theta~||^2
    (theta~'s exact squared norm as given); ||theta' - theta~||^2 <= radius^2 when
    `radius` is given; and theta' equals theta~ outside layer `layer` (counted from
    1) when it is given. Returns a dict with `verified` (True only when every
    condition holds exactly), `reasons` (one line per failed condition, empty when
    verified) and the measured quantities, each the exact value rounded once to a
    float: `smallest_margin`, `sample`, `norm_squared`, `limit_norm_squared`,
    `norm_gap`, `relative_gap`, `changed_layers`, `limit_smallest_margin`, and
    `distance` (the square root of the rounded exact squared distance). Malformed
    input raises ValueError (shapes, non-finite values, a radius <= 0, a layer out
    of range) or TypeError (a radius or layer that is not a number).
    """
    X, y = check_dataset(X, y, network.input_dim)
    theta_tilde = check_theta(theta_tilde, network.num_parameters, "theta_tilde")
    theta_prime = check_theta(theta_prime, network.num_parameters, "theta_prime")
    if radius is not None:
        radius = check_radius(radius)
    if layer is not None:
        layer = check_layer(layer, network.depth)

    # 1. Feasibility of theta', and theta~'s own margins for the record.
    q = exact_margins(network, X, y, theta_prime)
    i_min = min(range(len(q)), key=q.__getitem__)
    q_tilde = min(exact_margins(network, X, y, theta_tilde))
    reasons = []
    if q[i_min] < 1:
        reasons.append(
            f"margin of sample {i_min} is {float(q[i_min])!r} (exactly 1 - "
            f"{float(1 - q[i_min]):.3e}), should be >= 1"
        )

    # 2. The norm, against theta~'s exact norm.
    a, b = _exact(theta_prime), _exact(theta_tilde)
    value, bar = _squared(a), _squared(b)
    if not value < bar:
        reasons.append(
            f"||theta'||^2 = {float(value)!r} is not below ||theta~||^2 = "
            f"{float(bar)!r} (exact difference {float(value - bar):.3e})"
        )

    # 3. The radius and the layer.
    dist2 = _squared(p - t for p, t in zip(a, b))
    if radius is not None and dist2 > Fraction(float(radius)) ** 2:
        reasons.append(
            f"||theta' - theta~|| = {math.sqrt(float(dist2))!r}, should be <= "
            f"radius {radius!r}"
        )
    changed = [
        l
        for l, s in enumerate(network.layer_slices, start=1)
        if a[s] != b[s]  # Fraction equality: -0.0 and 0.0 are the same number
    ]
    if layer is not None and any(l != layer for l in changed):
        reasons.append(
            f"theta' changes layer(s) {changed}, should change only layer {layer}"
        )

    return {
        "verified": not reasons,
        "reasons": reasons,
        "smallest_margin": float(q[i_min]),
        "sample": i_min,
        "norm_squared": float(value),
        "limit_norm_squared": float(bar),
        "norm_gap": float(bar - value),
        "relative_gap": float((bar - value) / bar) if bar else 0.0,
        "distance": math.sqrt(float(dist2)),
        "changed_layers": changed,
        "limit_smallest_margin": float(q_tilde),
        "radius": radius,
        "layer": layer,
        "arithmetic": "exact (fractions.Fraction)",
    }


def assert_witness(
    network: Network, X, y, theta_tilde, theta_prime, *, context: str = "", **options
) -> dict:
    """`verify_witness`, raising WitnessError with every failed condition."""
    report = verify_witness(network, X, y, theta_tilde, theta_prime, **options)
    if not report["verified"]:
        where = f" [{context}]" if context else ""
        raise WitnessError(
            f"not a witness against theta~ ({network.describe()}): "
            + "; ".join(report["reasons"])
            + where
        )
    return report


def exactly_feasible(
    network: Network, X, y, theta, *, layer: int | None = None, max_steps: int = 64
) -> np.ndarray:
    """theta grown along its ray (or layer `layer`'s parameters along theirs, the
    rest fixed) until every margin is >= 1 in exact arithmetic.

    Margins are homogeneous of degree m in theta and of degree 1 in one layer's
    parameters, so the scale starts at q_min^(-1/degree) and grows by a relative
    step that doubles while the exact smallest margin is still below 1. ValueError
    when some margin is <= 0 (no scale helps) or the steps run out.
    """
    theta = check_theta(theta, network.num_parameters).copy()
    sl = slice(None) if layer is None else network.layer_slices[layer - 1]
    degree = network.depth if layer is None else 1
    base = theta[sl].copy()
    c, step = 1.0, 2.0 * np.finfo(float).eps
    for _ in range(max_steps):
        theta[sl] = c * base
        q_min = min(exact_margins(network, X, y, theta))
        if q_min >= 1:
            return theta
        if not q_min > 0:
            raise ValueError(
                f"smallest margin {float(q_min)!r} <= 0: no scale makes theta feasible"
            )
        c *= max(float(1 / q_min) ** (1.0 / degree), 1.0) * (1.0 + step)
        step *= 2.0
    raise ValueError("the exact margins stay below 1 after every scale tried")


# -- argument checks -------------------------------------------------------------------


def _is_number(v) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(
        v, bool
    )


def check_radius(radius) -> float:
    """radius as a float: a real number (TypeError otherwise), finite and > 0
    (ValueError otherwise)."""
    if not _is_number(radius):
        raise TypeError(f"radius must be a positive finite float, got {radius!r}")
    if not (math.isfinite(radius) and radius > 0):
        raise ValueError(f"radius={radius!r} must be a positive finite float")
    return float(radius)


def _check_numbers(value, name) -> None:
    # JSON numbers only: numpy would quietly read "1" or true as 1.0.
    if isinstance(value, list):
        for item in value:
            _check_numbers(item, name)
    elif not _is_number(value):
        raise ValueError(f"{name} must hold numbers only, found {value!r:.40}")
