"""The JSON report of `python -m invariants examine`: one case's limit, its cost,
its conserved quantities, its KKT conditions and what the certificates prove."""

from __future__ import annotations

import logging
import math

import numpy as np

__all__ = ["balance", "jsonable", "judgement", "report"]

log = logging.getLogger("invariants")


def balance(network, thetas) -> dict:
    """Largest relative drift of each conserved quantity that applies (Lemmas C.1 to
    C.3), or a note saying why it could not be measured."""
    try:
        from invariants.balance import balance_drifts
    except ImportError as exc:
        # The checker is optional for the report: the flow's own result stands
        # without it, so say what is missing rather than fail the examination.
        log.warning("balance drifts unavailable: %s", exc)
        return {"available": False, "reason": f"invariants.balance: {exc}"}
    drifts = balance_drifts(network, thetas)
    out = {}
    for name, drift in drifts.items():
        value = np.max(np.abs(np.asarray(drift.relative_drift, dtype=float)))
        out[str(name)] = float(value)
    return out


def jsonable(value):
    """numpy scalars and arrays as Python floats/ints/lists; non-finite as None
    (strict JSON has no NaN)."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return value if math.isfinite(value) else None
    return value


def report(case, trajectory, construction=None) -> dict:
    net = case.network
    direction = np.asarray(trajectory.direction, dtype=float)
    direction = direction / np.linalg.norm(direction)
    margins = net.margins(direction, case.X, case.y)
    report = {
        "theta_tilde": trajectory.theta_tilde,
        "norm_squared": trajectory.norm_squared,
        "min_margin_direction": float(np.min(margins)),
        "direction": direction,
        "log_norm": trajectory.log_norm,
        "jacobian_evaluations": trajectory.jacobian_evaluations,
        "seconds": trajectory.seconds,
        "steps": dict(trajectory.steps),
        "checkpoints": len(trajectory.thetas),
        "settings": dict(trajectory.settings),
        "balance": balance(net, trajectory.thetas),
        "case": {
            "name": case.name,
            "family": net.family,
            "depth": net.depth,
            "activation": net.activation,
            "widths": list(net.widths),
            "num_parameters": net.num_parameters,
            "shares_weights": net.shares_weights,
            "n": int(case.X.shape[0]),
            "d": int(case.X.shape[1]),
            "loss": case.loss,
        },
    }
    if construction is not None:
        expected = construction.direction
        report["construction"] = {
            "name": construction.name,
            "theorem": construction.theorem,
            "limit": construction.limit,
            "norm_squared": construction.norm_squared,
            "direction_error": float(np.linalg.norm(direction - expected)),
            "note": construction.note,
        }
    return jsonable(report)


def judgement(case, trajectory, *, exact: bool, search: bool) -> dict:
    """The limit's KKT conditions and what the certificates prove about it."""
    from invariants.certify import optimality
    from invariants.kkt import kkt_point

    args = (case.network, case.X, case.y, trajectory.theta_tilde)
    point = kkt_point(*args)
    log.info("kkt_residual %.3g; certifying", point.residual)
    verdict = optimality(*args, exact=exact, search=search)
    return {
        "kkt_residual": point.residual,
        "multipliers": point.multipliers,
        "active_set": list(point.active_set),
        "kkt": point.to_json(),
        "optimality": verdict.to_json(),
    }
