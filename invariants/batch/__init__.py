"""Gradient flow for many initialisations (or many small datasets) at once.

`gradient_flows(network, X, y, thetas0, loss, **options)` returns, for each row of
thetas0, what `invariants.flow.gradient_flow` returns for it: a `Trajectory`, or
the exception it raises (returned, not raised). Each row runs the single run's
three phases on its own clock, with its own adaptive step and its own stopping
point, but every array operation covers all rows of a phase at once:

1. Fit, arc length: Dormand-Prince 8(5,3) (SciPy's DOP853 tableau), events on the
   loss threshold located by shortening the step to the secant estimate.
2. Stiff, s = log||theta||: RODAS4, a linearly-implicit Rosenbrock method, with the
   exact stiff Jacobian of `Field.log_norm_jacobian` (batched; curvature by
   central differences), one (P, P) inverse per row and step.
3. Sliding: the minimal-norm point of the active margins' gradients in closed form
   on their affine hull when every multiplier is positive (else NNLS for that
   row), active sets frozen per segment as in the single run, DOP853 again.

Why hand-written: SciPy's `solve_ivp` and its steppers advance one state with one
step size; vectorising them over a batch forces one step size on every row
(`vectorized=True` only batches the evaluation points of one trajectory), and no
maintained Python library offers per-trajectory step control over a numpy batch
with an exact-Jacobian Rosenbrock method.

ReLU kinks: a step across which a hidden pre-activation changes sign is taken
again up to the crossing; there the field on both sides decides, as in the single
run's driver. A kink GF crosses is crossed; a kink GF is pushed onto from both
sides is pinned, as the single run pins it, for up to two kinks a row, not two
of one sample in different layers (`invariants.batch.pins`: the slopes solve a
small linear system per row, in every phase), and released when its slope leaves
[0, 1], located like a crossing (at the step's start when it is already there).

A neuron pushed onto kinks on samples that span its own incoming weights is at
their origin: the batch sets them to exactly 0 and lets the neuron go, where the
single run's slope solve fails and chatters (`invariants.batch.pins`).

What the batch does not do, it hands off: a row at an attracting kink it cannot
pin (a third kink, two of one sample in different layers, proportional samples,
one dataset per row, pin_kinks=False), whose step
control fails, whose fit looks stiff, that exceeds max_evaluations (not counting
the Jacobian's difference columns), is re-run from its theta0 by
`gradient_flow` itself, so its answer
is exactly the single run's. `stats` (a dict, if given) receives the handoff
counts by reason and the batch's own evaluation counts. The batch never returns a
trajectory it did not follow to the end with its error control.

Known difference: the batch's budget is not the single run's, so it can finish a
row on which the single run raises FlowError for its evaluation budget (seen once
in 20 random ReLU rows; the single run with a larger budget then agreed with the
batch to 1.5e-14). The common case is a pinned one: on Theorem 3.2's sweep, paths
that slide along a kink into a point with a margin stuck at 0 end in the batch as
StationaryPointError (the single run's own test, on the pinned field) while the
single run's LSODA chatters there and spends its whole budget (row k = 14 still
did with 600,000 evaluations): verdict "no fit" against "simulator failed".
pin_kinks=False hands such rows off instead. `invariants.batch.agreement`
compares answers row by row.

Known: a row's path can differ at rounding level with the rows batched with it
(numpy's kernels differ between a stack of one and a stack of several). Where a
row meets a kink at the edge of what its step control resolves, that difference
decides between finishing in the batch and a handoff (seen on 1 of 3 depth-3
ReLU rows tried alone and in pairs); the answer is the single run's either way
wherever the two agree.
"""

from __future__ import annotations

import time

import numpy as np

from invariants.batch.fields import BatchField
from invariants.batch.runner import OUT, Rows, run_rows
from invariants.flow import check_options, gradient_flow
from invariants.validation import check_dataset, check_loss, check_rays, check_theta

__all__ = ["HandoffRequired", "gradient_flows"]


class HandoffRequired(RuntimeError):
    """With handoff=False: this row needs the single run (the reason is given)."""


def gradient_flows(
    network,
    X,
    y,
    thetas0,
    loss: str = "exponential",
    *,
    target_norm: float = 1e8,
    rtol: float = 1e-10,
    sliding_margin: float = 1e6,
    active_tol: float = 1e-12,
    checkpoints_per_e: int = 4,
    max_fit_length: float | None = None,
    max_evaluations: int = 50_000,
    max_fit_checkpoints: int = 200,
    direction_tol: float | None = None,
    max_log_norm: float | None = None,
    handoff: bool = True,
    pin_kinks: bool = True,
    stats: dict | None = None,
) -> list:
    """`gradient_flow` for every row of thetas0 (B, P); see the module docstring.

    X, y: one dataset (n, d), (n,) shared by every row, or one per row (B, n, d),
    (B, n). Options as in `gradient_flow`. With handoff=False, rows the batch
    cannot finish come back as `HandoffRequired` instead of being re-run. With
    pin_kinks=False, every row at an attracting kink is handed off.
    """
    thetas0 = np.atleast_2d(np.asarray(thetas0, dtype=float))
    B = thetas0.shape[0]
    for b in range(B):
        check_theta(thetas0[b], network.num_parameters, f"thetas0[{b}]")
    X, y = np.asarray(X, dtype=float), np.asarray(y, dtype=float)
    if X.ndim == 3:
        if X.shape[0] != B or y.shape[:1] != (B,):
            raise ValueError(
                f"per-row datasets need X (B, n, d) and y (B, n) with B = {B}, "
                f"got X {X.shape} and y {y.shape}"
            )
        for b in range(B):
            check_rays(*check_dataset(X[b], y[b], network.input_dim))
    else:
        X, y = check_dataset(X, y, network.input_dim)
        check_rays(X, y)
    check_loss(loss)
    opts = {
        "target_norm": target_norm,
        "rtol": rtol,
        "sliding_margin": sliding_margin,
        "active_tol": active_tol,
        "checkpoints_per_e": checkpoints_per_e,
        "max_fit_length": max_fit_length,
        "max_evaluations": max_evaluations,
        "max_fit_checkpoints": max_fit_checkpoints,
        "direction_tol": direction_tol,
        "max_log_norm": max_log_norm,
    }
    opts["max_log_norm"] = check_options(network, **opts)
    started = time.perf_counter()

    fld = BatchField(network, X, y, loss, B)
    rows = Rows(fld, thetas0, opts)
    rows.pins.able &= bool(pin_kinks)
    with np.errstate(over="ignore", under="ignore"):
        run_rows(rows)
    batch_seconds = time.perf_counter() - started

    out = list(rows.outcome)
    handed = np.flatnonzero(rows.phase == OUT)
    single = {k: v for k, v in opts.items() if k != "max_log_norm"}
    single["max_log_norm"] = max_log_norm
    for r in handed:
        if not handoff:
            out[r] = HandoffRequired(f"row {r}: {rows.why[int(r)]}")
            continue
        Xr, yr = (X[r], y[r]) if X.ndim == 3 else (X, y)
        try:
            out[r] = gradient_flow(network, Xr, yr, thetas0[r], loss, **single)
        except Exception as exc:  # noqa: BLE001 - returned, as for batch rows
            out[r] = exc
    if stats is not None:
        reasons: dict[str, int] = {}
        for r in handed:
            reasons[rows.why[int(r)]] = reasons.get(rows.why[int(r)], 0) + 1
        stats.update(
            rows=B,
            handoffs=int(handed.size),
            handoff_reasons=reasons,
            batch_seconds=batch_seconds,
            seconds=time.perf_counter() - started,
            batch_evaluations=fld.evaluations.copy(),
            # Rows the batch finished itself that held a kink on the way.
            pinned_rows=int(np.sum((rows.pins.pins > 0) & (rows.phase != OUT))),
            # Rows that let a neuron go at the origin of its incoming weights.
            collapsed_rows=int(np.sum(getattr(rows.pins, "collapses", 0) > 0)),
            steps=rows.steps.copy(),
        )
    return out
