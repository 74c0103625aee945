"""Do two simulators give the same answers? The batch against the single run.

A verdict (the sweep's "local" / "not local" / "no fit" / "simulator failed")
reads the outcome's kind, the limit direction and which hidden neurons are zero at
the limit; `answer` extracts exactly those, `answer_gaps` measures how far two
lists of outcomes are apart, and `assert_same_answers` fails with one message per
disagreeing row. Plain data in, no simulator called.
"""

from __future__ import annotations

import numpy as np

from invariants.field import FlowError, StationaryPointError

__all__ = ["answer", "answer_gaps", "assert_same_answers"]

# A neuron is zero at the limit when its incoming and outgoing weights are this
# small against ||theta~||: a neuron GF leaves alone (Theorem 3.2's) keeps its
# initial size, which is 1e-9 of ||theta|| at ||theta|| = 1e9.
ZERO_NEURON_TOL = 1e-6


def answer(network, result) -> dict:
    """The verdict inputs of one outcome: kind, limit direction, zero neurons."""
    if isinstance(result, StationaryPointError):
        return {"kind": "no fit"}
    if isinstance(result, FlowError):
        return {"kind": "simulator failed"}
    if isinstance(result, Exception):
        return {"kind": type(result).__name__}
    Ws = network.weight_matrices(result.theta_tilde)
    scale = ZERO_NEURON_TOL * float(np.linalg.norm(result.theta_tilde))
    zero = []
    for l in range(network.depth - 1):
        incoming = np.linalg.norm(Ws[l], axis=1)
        outgoing = np.linalg.norm(Ws[l + 1], axis=0)
        zero += [
            (l + 1, a)
            for a in range(len(incoming))
            if max(incoming[a], outgoing[a]) < scale
        ]
    return {"kind": "limit", "direction": np.asarray(result.direction), "zero": zero}


def answer_gaps(network, batch, single) -> list[dict]:
    """Per row: both kinds, the distance of the limit directions (nan unless both
    are limits) and whether the zero neurons agree."""
    rows = []
    for a, b in zip(batch, single, strict=True):
        x, y = answer(network, a), answer(network, b)
        gap = np.nan
        same_zero = True
        if x["kind"] == y["kind"] == "limit":
            gap = float(np.linalg.norm(x["direction"] - y["direction"]))
            same_zero = x["zero"] == y["zero"]
        rows.append(
            {"batch": x["kind"], "single": y["kind"], "gap": gap, "zero": same_zero}
        )
    return rows


def assert_same_answers(network, batch, single, *, direction_tol: float) -> None:
    """Every row has the same kind, directions within direction_tol, same zero
    neurons; otherwise AssertionError naming every disagreeing row."""
    bad = []
    for r, g in enumerate(answer_gaps(network, batch, single)):
        if g["batch"] != g["single"]:
            bad.append(f"row {r}: batch {g['batch']!r} but single {g['single']!r}")
        elif not (np.isnan(g["gap"]) or g["gap"] <= direction_tol):
            bad.append(
                f"row {r}: limit directions {g['gap']:.3g} apart, should be <= "
                f"{direction_tol:g}"
            )
        elif not g["zero"]:
            bad.append(f"row {r}: different zero neurons at the limit")
    if bad:
        raise AssertionError(
            f"batch and single runs disagree on {len(bad)} of {len(batch)} rows:\n"
            + "\n".join(bad)
        )
