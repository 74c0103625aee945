"""A training case as data: network, dataset, initialisation and loss.

The JSON form is the case-file schema of `python -m invariants examine`:
``{"network": {...}, "X": [[...]], "y": [...], "theta0": [...], "loss": ...}`` where
``network`` names a family (``fully_connected``, ``diagonal``, ``convolutional``,
``no_share``) with its sizes, or gives ``index_maps`` directly. Floats are written with
``repr`` so a case read back is bit-for-bit the case written.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from invariants import networks
from invariants.networks import Network
from invariants.validation import check_dataset, check_loss, check_rays, check_theta

__all__ = ["Case", "CaseError", "network_from_spec", "network_to_spec"]


class CaseError(ValueError):
    """A case file or case dictionary that does not describe a valid case."""


@dataclass(frozen=True, eq=False)
class Case:
    """network, X (n, d), y in {-1, +1}^n, theta0 and the loss, validated together."""

    network: Network
    X: np.ndarray
    y: np.ndarray
    theta0: np.ndarray
    loss: str = "exponential"
    name: str = ""

    def __post_init__(self) -> None:
        X, y = check_dataset(self.X, self.y, self.network.input_dim)
        check_rays(X, y)
        theta0 = check_theta(self.theta0, self.network.num_parameters, "theta0")
        check_loss(self.loss)
        for a in (X, y, theta0):
            a.setflags(write=False)
        object.__setattr__(self, "X", X)
        object.__setattr__(self, "y", y)
        object.__setattr__(self, "theta0", theta0)

    def to_dict(self) -> dict:
        return {
            "network": network_to_spec(self.network),
            "X": self.X.tolist(),
            "y": [int(v) for v in self.y],
            "theta0": self.theta0.tolist(),
            "loss": self.loss,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, data: dict, name: str = "") -> Case:
        if not isinstance(data, dict):
            raise CaseError(f"a case must be a JSON object, got {type(data).__name__}")
        missing = [k for k in ("network", "X", "y", "theta0") if k not in data]
        if missing:
            raise CaseError(f"case is missing key(s) {missing}")
        unknown = set(data) - {"network", "X", "y", "theta0", "loss", "name"}
        if unknown:
            raise CaseError(f"case has unknown key(s) {sorted(unknown)}")
        if not isinstance(data.get("name", ""), str):
            raise CaseError(f'case "name" must be a string, got {data["name"]!r:.40}')
        try:
            net = network_from_spec(data["network"])
            return cls(
                net,
                _float_array(data["X"], "X"),
                _float_array(data["y"], "y"),
                _float_array(data["theta0"], "theta0"),
                data.get("loss", "exponential"),
                name or str(data.get("name", "")),
            )
        except CaseError:
            raise
        except (ValueError, TypeError, OverflowError) as exc:
            raise CaseError(str(exc)) from None

    def __repr__(self) -> str:
        return f"Case.from_dict({self.to_dict()!r})"

    def _repr_pretty_(self, printer, cycle) -> None:
        # Hypothesis prints through this protocol; without it a failing example shows
        # the arrays with numpy's eight digits and cannot be pasted back.
        printer.text(repr(self))


def _float_array(value, name: str) -> np.ndarray:
    # JSON numbers only: numpy would quietly read "1" or true as 1.0.
    bad = _first_non_number(value)
    if bad is not None:
        raise CaseError(f"{name} must hold numbers only, found {bad!r:.40}")
    try:
        return np.asarray(value, dtype=float)
    except (ValueError, TypeError, OverflowError) as exc:
        raise CaseError(f"{name} must be numbers (nested lists): {exc}") from None


def _first_non_number(value):
    if isinstance(value, list):
        for item in value:
            bad = _first_non_number(item)
            if bad is not None:
                return bad
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return value
    return None


def network_from_spec(spec: dict) -> Network:
    """Build a network from the case file's ``network`` object."""
    if not isinstance(spec, dict) or "family" not in spec:
        raise CaseError('"network" must be an object with a "family" key')
    family = spec["family"]
    activation = spec.get("activation", "relu")
    if not isinstance(family, str):
        raise CaseError(f'network "family" must be a string, got {family!r:.60}')
    keys = {
        "fully_connected": ("widths",),
        "diagonal": ("dim", "depth"),
        "convolutional": ("input_dim", "kernel_size", "stride"),
        "no_share": ("masks",),
        "index_maps": ("layers",),
    }
    if family not in keys:
        raise CaseError(f"network family {family!r} must be one of {sorted(keys)}")
    required = keys[family]
    optional = {"activation", "family"} | (
        {"depth"} if family == "convolutional" else set()
    )
    missing = [k for k in required if k not in spec]
    if missing:
        raise CaseError(f"network family {family!r} needs key(s) {missing}")
    unknown = set(spec) - set(required) - optional
    for key in required:
        if key in ("widths", "masks", "layers") and not isinstance(spec[key], list):
            raise CaseError(f'network "{key}" must be a list, got {spec[key]!r:.40}')
    if unknown:
        raise CaseError(f"network has unknown key(s) {sorted(unknown)} for {family!r}")
    if family == "fully_connected":
        return networks.fully_connected(spec["widths"], activation)
    if family == "diagonal":
        return networks.diagonal(spec["dim"], spec["depth"], activation)
    if family == "convolutional":
        return networks.convolutional(
            spec["input_dim"],
            spec["kernel_size"],
            spec["stride"],
            activation,
            depth=spec.get("depth", 2),
        )
    if family == "no_share":
        return networks.no_share(spec["masks"], activation)
    return networks.from_index_maps(spec["layers"], activation)


def network_to_spec(net: Network) -> dict:
    """The most specific ``network`` object that rebuilds `net` exactly."""
    spec = {
        "family": "index_maps",
        "layers": [P.tolist() for P in net.index_maps],
        "activation": net.activation,
    }
    if net.family == "fully_connected":
        spec = {"family": "fully_connected", "widths": list(net.widths)}
    elif net.family == "diagonal":
        spec = {"family": "diagonal", "dim": net.input_dim, "depth": net.depth}
    elif net.family == "convolutional":
        first = net.index_maps[0]
        starts = [int(np.flatnonzero(row >= 0)[0]) for row in first]
        spec = {
            "family": "convolutional",
            "input_dim": net.input_dim,
            "kernel_size": int(np.sum(first[0] >= 0)),
            "stride": starts[1] - starts[0] if len(starts) > 1 else 1,
            "depth": net.depth,
        }
    elif net.family == "no_share":
        spec = {
            "family": "no_share",
            "masks": [(P >= 0).tolist() for P in net.index_maps],
        }
    spec["activation"] = net.activation
    if spec["family"] != "index_maps":
        rebuilt = network_from_spec(spec)
        same = len(rebuilt.index_maps) == len(net.index_maps) and all(
            np.array_equal(a, b) for a, b in zip(rebuilt.index_maps, net.index_maps)
        )
        if not same:
            spec = {
                "family": "index_maps",
                "layers": [P.tolist() for P in net.index_maps],
                "activation": net.activation,
            }
    return spec
