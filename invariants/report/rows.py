"""The rows of the report, one per lemma and theorem of THEOREMS.md, in the paper's
order, and how each is run (positive rows by `properties`, negative ones by
`constructions`)."""

from __future__ import annotations

import time
from dataclasses import dataclass

from invariants.report import outcome as o

__all__ = ["ROWS", "Row", "run_row", "select"]


@dataclass(frozen=True)
class Row:
    """`key` selects the row (`--only`); `sign` is "+" for a guarantee, "-" for a
    counterexample; `constructions` names the cases of `invariants.cases` that a
    negative row reproduces. `perturb`, for the report's own tests, breaks what a
    positive row feeds its checker (see `properties`)."""

    key: str
    title: str
    sign: str
    claim: str
    constructions: tuple[str, ...] = ()
    perturb: object = None


_5_1 = tuple(f"thm5.1-m{m}-{a}" for m in (3, 4, 5) for a in ("linear", "relu"))

ROWS: tuple[Row, ...] = (
    Row("C.1", "Lemma C.1", "+", "Fully-connected: ||W_j||_F^2 - ||W_j+1||_F^2 and "
        "each neuron's ||in||^2 - ||out||^2 are constant along GF"),
    Row("C.2", "Lemma C.2", "+", "Any network in N: ||u^(j)||^2 - ||u^(j+1)||^2 is "
        "constant along GF"),
    Row("C.3", "Lemma C.3", "+", "Depth-2 N_no-share: ||w_j||^2 - v_j^2 is constant "
        "along GF"),
    Row("C.4", "Lemma C.4", "+", "Depth-2 N_no-share, at the limit: ||w~_l|| = "
        "|v~_l| for every neuron"),
    Row("C.5", "Lemma C.5", "+", "If prod a_j >= C^m then sum a_j^2 >= m C^2"),
    Row("2.1", "Theorem 2.1", "+", "Past the loss threshold, GF converges in "
        "direction to a KKT point of Problem 2"),
    Row("3.1", "Theorem 3.1", "+", "Fully-connected linear, any depth: the limit is "
        "a global optimum of Problem 2"),
    Row("3.2", "Theorem 3.2", "-", "Fully-connected ReLU, depth 2, 2 neurons: GF can "
        "reach a KKT point that is not a local optimum", ("thm3.2",)),
    Row("4.1", "Theorem 4.1", "-", "Diagonal depth 2, linear or ReLU: the limit can "
        "be a KKT point that is not a local optimum",
        ("thm4.1-linear", "thm4.1-relu")),
    Row("4.2.1", "Theorem 4.2 (1)", "+", "Depth-2 linear N_no-share, every w~_l != "
        "0: the limit is a global optimum"),
    Row("4.2.2", "Theorem 4.2 (2)", "-", "Fully-connected ReLU, depth 2, 4 neurons: "
        "all w~_l != 0 and still not a local optimum", ("thm4.2.2",)),
    Row("4.3", "Theorem 4.3", "+", "Depth-2 ReLU N_no-share, every input to a "
        "neuron non-zero: the limit is a local optimum"),
    Row("C.6", "Lemma C.6", "-", "Theorem 4.3's local optimum need not be global, "
        "even fully-connected", ("lemmaC.6",)),
    Row("4.4", "Theorem 4.4", "-", "Shared weights (convolutional), every input "
        "non-zero: still not a local optimum", ("thm4.4-relu", "thm4.4-linear")),
    Row("5.1", "Theorem 5.1", "-", "Diagonal, depth >= 3, every input non-zero: "
        "still not a local optimum", _5_1),
    Row("5.2", "Theorem 5.2", "+", "Linear, any network in N: every layer of the "
        "limit is a global optimum of Problem 4"),
    Row("5.3", "Theorem 5.3", "-", "Fully-connected ReLU, depth 2: a layer need not "
        "be a local optimum of Problem 4", ("thm5.3",)),
    Row("5.4", "Theorem 5.4", "+", "ReLU in N, no zero input in layers l..m-1: "
        "layer l is a local optimum of Problem 4"),
    Row("5.4-not-global", "Theorem 5.4 (not global)", "-", "That layer need not be "
        "a global optimum of Problem 4", ("thm5.4-not-global",)),
)  # fmt: skip

KEYS = tuple(r.key for r in ROWS)


def select(only) -> tuple[Row, ...]:
    """The rows named in `only`, in the paper's order, or every row. A name is a
    row's key ("4.2.1"), the start of keys ("4.2" selects 4.2.1 and 4.2.2; "5.4"
    also selects 5.4-not-global), or a construction of `invariants.cases`
    ("thm3.2"). ValueError naming the unknown names and listing the keys."""
    if not only:
        return ROWS
    chosen, unknown = set(), []
    for name in only:
        hits = {r.key for r in ROWS if _names(r, name)}
        chosen |= hits
        if not hits:
            unknown.append(name)
    if unknown:
        raise ValueError(
            f"unknown row(s) {', '.join(unknown)}; the rows are {', '.join(KEYS)} "
            "(a prefix such as 4.2, or a construction name such as thm3.2, also works)"
        )
    return tuple(r for r in ROWS if r.key in chosen)


def _names(row: Row, name: str) -> bool:
    return (
        row.key == name
        or row.key.startswith((name + ".", name + "-"))
        or name in row.constructions
    )


def run_row(row: Row, *, examples: int, seed: int) -> o.Outcome:
    """Run one row and judge it (see `invariants.report.outcome`)."""
    started = time.perf_counter()
    result = _negative(row, seed) if row.sign == "-" else _positive(row, examples, seed)
    result.seconds = time.perf_counter() - started
    return result


def _outcome(row: Row, **fields) -> o.Outcome:
    return o.Outcome(row.key, row.title, row.sign, row.claim, **fields)


def _positive(row: Row, examples: int, seed: int) -> o.Outcome:
    from invariants.report import properties

    measure, quantity = properties.MEASURES[row.key]
    if row.perturb is not None:
        base, perturb = measure, row.perturb

        def measure(case):
            return base(case, perturb)

    measured, rejected = properties.sample(
        properties.strategy_for(row.key), measure, examples=examples, seed=seed
    )
    failures = [m for m in measured if not m.ok]
    worst = max(failures or measured, key=lambda m: m.ratio, default=None)
    if failures:
        status = o.FAILED
    elif measured:
        status = o.HOLDS
    else:
        status = o.INCONCLUSIVE
    witness = "" if worst is None else worst.where
    if failures:
        witness = f"{len(failures)} of {len(measured)} cases fail; worst: {witness}"
    return _outcome(
        row,
        status=status,
        examples=len(measured),
        quantity=quantity,
        worst=worst,
        witness=witness,
        measurements=measured,
        rejected=rejected,
    )


def _negative(row: Row, seed: int) -> o.Outcome:
    from invariants import cases
    from invariants.report.constructions import describe, reproduce

    reproductions = [reproduce(cases.get(n), seed=seed) for n in row.constructions]
    failed = [r for r in reproductions if not r.ok]
    gaps = [(r.witness_gap, r) for r in reproductions if r.witness_gap is not None]
    errors = [r.direction_error for r in reproductions if r.direction_error is not None]
    worst = None
    if errors:
        # The simulator's accuracy is the measured quantity that could break the
        # reproduction; the witnesses are all-or-nothing, in exact arithmetic.
        from invariants.report.constructions import DIRECTION_TOL

        worst = o.Measurement(max(errors), DIRECTION_TOL, not failed, "")
    if failed:
        bad = next(s for s in failed[0].steps if not s.ok)
        witness = f"{failed[0].construction.name}: {bad.name} failed: {bad.detail}"
    elif gaps:
        _, r = min(gaps, key=lambda g: g[0])
        witness = f"{r.construction.name}: {describe(r.witness)}"
    else:
        witness = ""
    return _outcome(
        row,
        status=o.FAILED if failed or not reproductions else o.REPRODUCED,
        examples=len(reproductions),
        quantity="direction error",
        worst=worst,
        witness=witness,
        reproductions=reproductions,
    )
