"""The conformance properties as plain functions: (case, checkpoints, claims) -> Check.

Each reuses the checker of `python -m invariants check` (`invariants.checkpoints`)
and sets its tolerance from what the trainer claims (`invariants.trainer.Claims`);
only gradient descent's balance bound is computed here, because it depends on every
step the trainer took. A Check with ``passed=None`` is a case the property says
nothing about (depth 1 has no conserved quantity, a regime without a guarantee has
nothing to certify); `skip_reason` names the properties a trainer's claims rule out.
"""

from __future__ import annotations

import math

import numpy as np

from invariants.balance import SCALE_FLOOR, balance_drifts, default_rtol
from invariants.checkpoints import (
    Check,
    check_balance,
    check_certificate,
    check_direction,
    check_kkt,
    check_loss_monotone,
)
from invariants.conformance._update import TOLERANCE_REASON as UPDATE_TOLERANCE
from invariants.conformance._update import update
from invariants.trainer import Claims

__all__ = [
    "LABELS",
    "PROPERTIES",
    "certificate_tol",
    "judge_case",
    "kkt_tol",
    "skip_reason",
    "tolerance_reason",
]

# The KKT residual of a point whose direction still moves at rate delta per unit of
# log||theta|| is about delta: in log-norm time the velocity is theta~ minus a
# non-negative combination of the active margins' gradients (measured: 3-4 delta on
# the simulator's paths). 1e3 delta is the margin the suite itself uses
# (tests/limits.py: direction_tol 1e-9 against checkers at 1e-6).
LIMIT_FACTOR = 1e3
KKT_FLOOR = 1e-6
# The direction's change is formed from two normalised checkpoints: rounding moves it
# by a few eps whatever the claimed rate.
DIRECTION_ROUNDING = 64 * np.finfo(float).eps

LABELS = {
    "balance": "balancedness (Lemmas C.1-C.3)",
    "loss_decrease": "loss decrease",
    "update": "gradient step of the declared loss",
    "direction": "convergence in direction (Theorem 2.1)",
    "kkt": "KKT point of Problem 2 (Theorem 2.1)",
    "certificate": "certificate of the regime (Theorems 3.1, 4.2, 4.3, 5.2, 5.4)",
}
_LIMIT_PROPERTIES = ("direction", "kkt", "certificate")


def skip_reason(name: str, spec: str, claims: Claims) -> str | None:
    """Why property `name` does not apply to a trainer with these claims, or None."""
    if name == "update":
        if claims.method == "gradient_descent":
            return None
        return (
            f"{spec!r} is a gradient-flow trainer: it returns checkpoints of a "
            "continuous path, not steps, so there is no declared step to check "
            "(balance and loss decrease judge its path)"
        )
    if name not in _LIMIT_PROPERTIES or claims.direction_tol is not None:
        return None
    if claims.method == "gradient_descent":
        who = f"a gradient-descent trainer with step {claims.step_size:g}"
    else:
        who = "a gradient-flow trainer"
    return (
        f"{spec!r} is {who} that claims no direction_tol: it stops at a finite norm "
        f"with its direction still moving, and {LABELS[name]} is a statement about "
        "the limit. Declare direction_tol once the trainer runs until its direction "
        "has converged"
    )


def kkt_tol(claims: Claims) -> float:
    return max(KKT_FLOOR, LIMIT_FACTOR * claims.direction_tol)


def certificate_tol(claims: Claims) -> float:
    from invariants.certify import CERTIFICATE_TOL

    return max(CERTIFICATE_TOL, LIMIT_FACTOR * claims.direction_tol)


def tolerance_reason(name: str, claims: Claims) -> str:
    """Where the tolerance of property `name` comes from, for failure reports."""
    if name == "balance":
        if claims.method == "gradient_descent":
            return (
                "gradient descent moves each conserved Q = ||a||^2 - ||b||^2 by "
                "exactly eta^2 (||g_a||^2 - ||g_b||^2) per step (the first-order "
                "terms cancel by Euler's identity), so |Q_k - Q_0| <= sum_{j<k} "
                "||theta_{j+1} - theta_j||^2; that bound over Q's scale, plus "
                "default_rtol of the dtype for rounding"
            )
        if claims.balance_tol is not None:
            return f"the trainer's declared balance_tol={claims.balance_tol:g}"
        return "invariants.balance.default_rtol of the returned dtype (TOLERANCES)"
    if name == "loss_decrease":
        return "LOSS_RTOL of invariants.checkpoints (rounding of log L only)"
    if name == "update":
        return UPDATE_TOLERANCE
    if name == "direction":
        return "the trainer's own direction_tol, per unit of log||theta||"
    if name == "kkt":
        return f"max({KKT_FLOOR:g}, {LIMIT_FACTOR:g} x the trainer's direction_tol)"
    return f"max(CERTIFICATE_TOL, {LIMIT_FACTOR:g} x the trainer's direction_tol)"


# -- the properties --------------------------------------------------------------------


def balance(case, checkpoints, claims: Claims) -> Check:
    net, thetas = case.network, checkpoints.thetas
    if claims.method != "gradient_descent":
        return check_balance(
            net, thetas, tol=claims.balance_tol, dtype=checkpoints.dtype
        )
    return _descent_balance(net, thetas, default_rtol(checkpoints.dtype))


def _descent_balance(net, thetas: np.ndarray, rounding: float) -> Check:
    """Every quantity against its own bound at every iterate (see tolerance_reason):
    the bound is sound for exact gradient steps and nearly attained by them."""
    drifts = balance_drifts(net, thetas)
    if not drifts:
        return Check("balance", None, None, None, "depth 1: no conserved quantity")
    step_sq = np.sum(np.diff(thetas, axis=0) ** 2, axis=1)
    moved = np.concatenate([[0.0], np.cumsum(step_sq)])
    worst = None
    for drift in drifts.values():
        scale = np.maximum(drift.scales[0], drift.scales)
        with np.errstate(divide="ignore", invalid="ignore"):
            allowed = np.where(scale > 0, moved / scale, math.inf) + rounding
        ratio = drift.relative_drifts / allowed
        k = int(np.argmax(ratio))
        if worst is None or ratio[k] > worst[0]:
            worst = (float(ratio[k]), drift, k, float(allowed[k]))
    _, drift, k, allowed = worst
    value = float(drift.relative_drifts[k])
    passed = bool(value <= allowed)
    reason = "" if passed else f"{drift.name} [{drift.formula}] at iterate {k}"
    details = {
        "name": drift.name,
        "quantities": len(drifts),
        "iterate": k,
        "scale_floor": SCALE_FLOOR,
        **drift.summary(),
    }
    return Check("balance", value, allowed, passed, reason, details)


def loss_decrease(case, checkpoints, claims: Claims) -> Check:
    check = check_loss_monotone(
        case.network, case.X, case.y, checkpoints.thetas, case.loss
    )
    check = Check("loss_decrease", *_fields(check))
    if check.passed is False:
        return _count_rises(case, checkpoints.thetas, check)
    if check.passed and not (
        check.details["log_loss_last"] < check.details["log_loss_first"]
    ):
        # Monotone but flat: a trainer that never moves must not pass.
        return Check(
            "loss_decrease",
            check.value,
            check.threshold,
            False,
            "log L never decreased from theta0 to the last checkpoint",
            check.details,
        )
    return check


def _count_rises(case, thetas, check: Check) -> Check:
    """The failed check, its reason saying at how many steps log L rose (by more
    than the same LOSS_RTOL), not only where it rose most."""
    from invariants.losses import log_loss

    margins = (case.network.margins(t, case.X, case.y) for t in thetas)
    logs = np.array([log_loss(q, case.loss) for q in margins])
    rises = np.diff(logs) / np.maximum(1.0, np.abs(logs[:-1])) > check.threshold
    reason = (
        f"log L rose at {int(rises.sum())} of {len(thetas) - 1} steps, most from "
        f"checkpoint {check.details['worst_step'][0]} to "
        f"{check.details['worst_step'][1]}"
    )
    details = {**check.details, "rises": int(rises.sum())}
    return Check(check.name, check.value, check.threshold, False, reason, details)


def direction(case, checkpoints, claims: Claims) -> Check:
    thetas = checkpoints.thetas
    norms = np.linalg.norm(thetas[-2:], axis=1)
    if not np.all(norms > 0):
        return Check(
            "direction", None, claims.direction_tol, False, "theta = 0 at the end"
        )
    gain = float(math.log(norms[1]) - math.log(norms[0]))
    if not gain > 0:
        return Check(
            "direction",
            None,
            claims.direction_tol,
            False,
            f"||theta|| did not grow over the last interval (log-norm gain "
            f"{gain:.3g}): no rate per unit of log||theta|| to compare with "
            "direction_tol",
        )
    check = check_direction(
        thetas, tol=claims.direction_tol * gain + DIRECTION_ROUNDING
    )
    rate = check.value / gain
    reason = (
        ""
        if check.passed
        else "the direction moved faster over the last interval than direction_tol"
    )
    return Check(
        "direction", rate, claims.direction_tol, check.passed, reason, check.details
    )


def kkt(case, checkpoints, claims: Claims) -> Check:
    theta = checkpoints.thetas[-1]
    return check_kkt(case.network, case.X, case.y, theta, tol=kkt_tol(claims))


def certificate(case, checkpoints, claims: Claims) -> Check:
    from invariants.certify import CertificateError

    theta = checkpoints.thetas[-1]
    tol = certificate_tol(claims)
    try:
        return check_certificate(case.network, case.X, case.y, theta, tol=tol)
    except CertificateError as exc:
        # A solver's failure says nothing about the trainer.
        return Check("certificate", None, tol, None, f"solver failed: {exc}")


PROPERTIES = {
    "balance": balance,
    "loss_decrease": loss_decrease,
    "update": update,
    "direction": direction,
    "kkt": kkt,
    "certificate": certificate,
}


def judge_case(case, checkpoints, spec: str, claims: Claims) -> list[Check]:
    """Every property on one case, claim-level skips included (for the replay)."""
    checks = []
    for name, prop in PROPERTIES.items():
        reason = skip_reason(name, spec, claims)
        if reason is None:
            checks.append(prop(case, checkpoints, claims))
        else:
            checks.append(Check(name, None, None, None, reason))
    return checks


def _fields(check: Check) -> tuple:
    return check.value, check.threshold, check.passed, check.reason, check.details
