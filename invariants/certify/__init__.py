"""Optimality certificates for GF limits, and the verdict they support.

- `invariants.certify.record`: the `Certificate` record every solver fills in;
- `invariants.certify.linear`: least-distance certificates (Theorems 3.1, 5.2, 5.4);
- `invariants.certify.conic`: group-norm SOCPs (Theorems 4.2 (1) and 4.3);
- `invariants.certify.exact`: the exact global optimum of small depth-2 ReLU nets.

`optimality` runs every certificate whose hypotheses hold and says what they prove:
`True` only with a certificate that holds, `False` only with a verified better point,
and `None` where nothing was proved either way.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike

from invariants.certify.record import (
    CERTIFICATE_TOL,
    MAX_CERTIFICATE_TOL,
    Certificate,
    CertificateError,
    NotApplicableError,
    assert_certified,
)
from invariants.kkt import rescale
from invariants.networks import Network
from invariants.validation import check_dataset, check_theta, check_tolerance

# Radius of the local witness search, relative to ||theta~||: the paper's
# improvements gain ~radius^2 relative, 1e-4 here, far above rounding.
LOCAL_RADIUS = 1e-2

__all__ = [
    "CERTIFICATE_TOL",
    "Certificate",
    "CertificateError",
    "NotApplicableError",
    "Optimality",
    "assert_certified",
    "certify_global_depth2_relu",
    "certify_layer",
    "certify_problem_8",
    "certify_theorem_3_1",
    "certify_theorem_4_2",
    "certify_theorem_4_3",
    "optimality",
    "verified_better_point",
]

# The certificates, loaded on first use: the conic ones import cvxpy.
_LAZY = {
    "certify_theorem_3_1": "linear",
    "certify_layer": "linear",
    "certify_theorem_4_2": "conic",
    "certify_theorem_4_3": "conic",
    "certify_problem_8": "conic",
    "certify_global_depth2_relu": "exact",
}


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'invariants.certify' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f"invariants.certify.{module}"), name)
    globals()[name] = value
    return value


@dataclass
class Optimality:
    """What the certificates prove about one limit theta~ of Problem 2.

    `local` / `global_`: True (a certificate holds), False (a verified feasible point
    with a smaller norm; for `local`, arbitrarily close), None (not proved). `layers`
    holds the per-layer certificates of Problem 4 (Theorems 5.2 and 5.4)."""

    local: bool | None = None
    global_: bool | None = None
    evidence: list = field(default_factory=list)
    layers: list = field(default_factory=list)

    def to_json(self) -> dict:
        return {
            "local": self.local,
            "global": self.global_,
            "evidence": self.evidence,
            "layers": self.layers,
        }


def verified_better_point(
    network: Network,
    X: ArrayLike,
    y: ArrayLike,
    theta_prime: ArrayLike,
    limit_value: float,
    tol: float,
) -> dict | None:
    """theta' as evidence that the limit is not a global optimum, if it verifies:
    made exactly feasible (every margin >= 1 in rational arithmetic,
    `invariants.exact_check`), its squared norm is below limit_value by more than tol
    relative. None otherwise."""
    from invariants.exact_check import exact_margins, exactly_feasible

    try:
        point = exactly_feasible(network, X, y, rescale(network, X, y, theta_prime))
    except (ValueError, ArithmeticError):
        return None
    smallest = min(exact_margins(network, X, y, point))
    value = float(point @ point)
    if not (smallest >= 1 and value < limit_value * (1.0 - tol)):
        return None
    return {
        "kind": "better_point",
        "theta": point.tolist(),
        "norm_squared": value,
        "limit_value": limit_value,
        "smallest_margin": float(smallest),
        "verified_by": "margins >= 1 in exact rational arithmetic; norm recomputed",
    }


def optimality(
    network: Network,
    X: ArrayLike,
    y: ArrayLike,
    theta: ArrayLike,
    *,
    tol: float = CERTIFICATE_TOL,
    exact: bool = True,
    search: bool = True,
) -> Optimality:
    """Run every applicable certificate on theta's direction (see module).

    `exact=False` skips the pattern enumeration for depth-2 ReLU networks (it solves
    up to `exact.MAX_CONVEX_PROBLEMS` conic problems). With `search`, a limit that no
    certificate proves locally optimal gets a local witness search
    (`invariants.witness.find_local_improvement`, radius LOCAL_RADIUS ||theta~||);
    a verified witness makes `local` (and `global_`) False, and finding none
    leaves them None."""
    from invariants.certify import conic, linear
    from invariants.certify import exact as exact_module

    tol = check_tolerance(tol, "tol", high=MAX_CERTIFICATE_TOL)
    X, y = check_dataset(X, y, network.input_dim)
    theta = check_theta(theta, network.num_parameters)
    theta_t = rescale(network, X, y, theta)
    limit_value = float(theta_t @ theta_t)
    out = Optimality()

    def attempt(make, *, decides_global, decides_local, name):
        try:
            cert = make()
        except NotApplicableError as exc:
            out.evidence.append(
                {"kind": "not_applicable", "theorem": name, "reason": str(exc)}
            )
            return None
        except (CertificateError, ValueError) as exc:
            out.evidence.append({"kind": "failed", "theorem": name, "reason": str(exc)})
            return None
        out.evidence.append({"kind": "certificate", **cert.to_json()})
        if cert.holds:
            if decides_global:
                out.global_ = True
            if decides_local or decides_global:
                out.local = True
        return cert

    depth2_no_share = network.depth == 2 and network.is_no_share
    # 1. Whole-network certificates, by regime.
    if network.is_fully_connected and network.is_linear:
        cert = attempt(
            lambda: linear.certify_theorem_3_1(network, X, y, theta_t, tol=tol),
            decides_global=True, decides_local=True, name="3.1",
        )  # fmt: skip
        if cert is not None and not cert.holds:
            u = np.asarray(cert.residuals["svm_direction"])
            _refute(out, network, X, y, _lift_linear(network, u), limit_value, tol)
    elif depth2_no_share and network.is_linear:
        cert = attempt(
            lambda: conic.certify_theorem_4_2(network, X, y, theta_t, tol=tol),
            decides_global=True, decides_local=True, name="4.2 (1)",
        )  # fmt: skip
        if cert is None:
            # Some w~_l = 0: the theorem is silent, but Problem 8 still bounds
            # every point of the network, so the bound may still prove optimality.
            cert = attempt(
                lambda: conic.certify_problem_8(network, X, y, theta_t, tol=tol),
                decides_global=True, decides_local=True, name="Problem 8 bound",
            )  # fmt: skip
        if cert is not None and not cert.holds:
            better = cert.residuals.get("better_point")
            if better is not None:
                _refute(out, network, X, y, np.asarray(better), limit_value, tol)
    elif depth2_no_share:
        attempt(
            lambda: conic.certify_theorem_4_3(network, X, y, theta_t, tol=tol),
            decides_global=False, decides_local=True, name="4.3",
        )  # fmt: skip
        if exact:
            cert = attempt(
                lambda: exact_module.certify_global_depth2_relu(
                    network, X, y, theta_t, tol=tol
                ),
                decides_global=True, decides_local=False,
                name="exact (pattern enumeration)",
            )  # fmt: skip
            if cert is not None and not cert.holds:
                better = exact_module.better_point(cert, network, X, y)
                if better is not None:
                    _refute(out, network, X, y, better, limit_value, tol)

    if not out.evidence:
        out.evidence.append(
            {
                "kind": "none",
                "reason": (
                    "no whole-network certificate covers a "
                    f"{network.describe()}: the paper's guarantees are for "
                    "fully-connected linear nets (3.1) and depth-2 N_no-share "
                    "nets (4.2 (1), 4.3)"
                ),
            }
        )

    if search and out.local is None:
        _search_local(out, network, X, y, theta_t)

    # 2. Per-layer certificates of Problem 4, for any network in N.
    for layer in range(1, network.depth + 1):
        try:
            cert = linear.certify_layer(network, X, y, theta_t, layer, tol=tol)
        except NotApplicableError as exc:
            out.layers.append({"layer": layer, "kind": "not_applicable",
                               "reason": str(exc)})  # fmt: skip
        except CertificateError as exc:
            out.layers.append({"layer": layer, "kind": "failed", "reason": str(exc)})
        else:
            out.layers.append({"layer": layer, "kind": "certificate", **cert.to_json()})
    return out


def _search_local(out, network, X, y, theta_t) -> None:
    from invariants.witness import find_local_improvement

    radius = LOCAL_RADIUS * float(np.linalg.norm(theta_t))
    witness = find_local_improvement(network, X, y, theta_t, radius)
    if witness is None:
        out.evidence.append(
            {
                "kind": "search",
                "radius": radius,
                "found": None,
                "note": "no local witness found; this proves nothing",
            }
        )
    elif witness.verify():
        out.local = out.global_ = False
        out.evidence.append({"kind": "local_witness", **witness.to_dict()})


def _refute(out, network, X, y, theta_prime, limit_value, tol) -> None:
    evidence = verified_better_point(network, X, y, theta_prime, limit_value, tol)
    if evidence is not None:
        out.global_ = False
        out.evidence.append(evidence)


def _lift_linear(network: Network, u: np.ndarray) -> np.ndarray:
    """A fully-connected linear network computing x -> u.x along its first hidden
    unit of every layer, balanced across layers."""
    r = float(np.linalg.norm(u)) ** (1.0 / network.depth)
    theta = np.zeros(network.num_parameters)
    sl = network.layer_slices
    theta[sl[0].start : sl[0].start + network.input_dim] = u / np.linalg.norm(u) * r
    for l in range(1, network.depth):
        theta[sl[l].start] = r
    return theta
