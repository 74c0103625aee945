"""Phase 1 of a batch: the fit, on the arc-length clock, with DOP853 steps, until
the loss falls below the threshold of Theorem 2.1."""

from __future__ import annotations

import numpy as np

from invariants.batch import events, steppers
from invariants.batch.far import enter_far
from invariants.batch.rows import first_step, refreshed, too_small
from invariants.field import FlowError, StationaryPointError
from invariants.flow import ORIGIN_TOL
from invariants.losses import log_loss_threshold

# Accepted steps of the fitting phase beyond which it counts as stiff: the single
# run's LSODA switches to BDF there, the batch's explicit pair would crawl.
MAX_FIT_STEPS = 5_000


def _fit_goal(rows):
    return log_loss_threshold(rows.fld.loss) - 1e-3


def fit_start(rows, idx):
    fld, opts = rows.fld, rows.opts
    th = rows.y[idx]
    q, _, z = fld.margins(idx, th)
    g = fld.log_loss(q) - _fit_goal(rows)
    rows.z = np.zeros((len(rows.y), z[0].shape[1])) if rows.z is None else rows.z
    rows.z[idx] = z[0]
    rows.g[idx] = g
    rows.fresh[idx] = False
    fitted = idx[g < 0]
    if fitted.size:
        enter_far(rows, fitted)
    go = idx[g >= 0]
    if not go.size:
        return
    f, stationary = fld.unit_velocity(go, rows.y[go])
    rows.finish(go[stationary], lambda r: StationaryPointError(
        "the gradient of the loss vanishes at theta0 (batch)"))  # fmt: skip
    go = go[~stationary]
    rows.f[go] = f[~stationary]
    size0 = np.linalg.norm(rows.theta0[go], axis=1)
    length = opts["max_fit_length"]
    rows.bound[go] = 100.0 * (1.0 + size0) if length is None else length
    rtol = opts["rtol"]
    rows.h[go] = first_step(rows.y[go], rows.f[go], rtol, rtol, rows.bound[go])


def fit_step(rows, idx):
    fld, rtol = rows.fld, rows.opts["rtol"]
    refreshed(rows, idx, lambda sel, th: fld.unit_velocity(sel, th)[0])
    t0, y0, f0 = rows.t[idx], rows.y[idx], rows.f[idx]
    h = np.minimum(rows.h[idx], rows.bound[idx] - t0)
    flags = {}

    def fun(_, th):
        v, flags["stationary"] = fld.unit_velocity(idx, th)
        return v

    y1, f1, err = steppers.dop853_step(fun, t0, y0, f0, h, rtol, rtol)
    stationary = flags["stationary"]
    alpha1 = rows.pins.free[idx].copy()  # the last stage is at y1
    ok = err <= 1.0
    rows.h[idx] = steppers.next_steps(h, err, steppers.DOP853_ORDER, ok)
    too_small(rows, idx, ok, t0)
    if not ok.any():
        return
    idx, t0, y0, f0, y1, f1, h = (a[ok] for a in (idx, t0, y0, f0, y1, f1, h))
    stationary, alpha1 = stationary[ok], alpha1[ok]
    t1 = t0 + h
    q, _, hidden = fld.margins(idx, y1)
    g1 = fld.log_loss(q) - _fit_goal(rows)
    g0 = rows.g[idx]
    keep, fire, z1, changed = events.screen(
        rows, idx, _fit_velocity, t0, h, y1, g0, g1, (g0 > 0) & (g1 <= 0), hidden,
        (rows.alpha0[idx], alpha1),
    )  # fmt: skip
    idx, t1, y1, f1, g1, z1 = (a[keep] for a in (idx, t1, y1, f1, g1, z1))
    stationary, fire, changed = stationary[keep], fire[keep], changed[keep]
    if changed.any():
        # A kink pinned or released at y1: the field there is another one.
        f1[changed], stationary[changed] = fld.unit_velocity(idx[changed], y1[changed])
    rows.alpha0[idx] = rows.pins.free[idx]

    # Where the single run would stop too: origin, stationary point, arc length.
    size = np.linalg.norm(y1, axis=1)
    rows.steps[idx, 0] += 1
    stiff = rows.steps[idx, 0] > MAX_FIT_STEPS
    rows.hand_off(idx[stiff], "stiff fit")
    alive = ~stiff
    origin = alive & (size < ORIGIN_TOL * np.linalg.norm(rows.theta0[idx], axis=1))
    rows.finish(idx[origin], lambda r: StationaryPointError(
        "GF converges to the origin (batch): this initialisation never fits"
    ))  # fmt: skip
    alive &= ~origin
    still = alive & stationary & ~fire
    rows.finish(idx[still], lambda r: StationaryPointError(
        "the gradient of the loss vanishes relative to the Jacobian (batch): GF "
        "converges to a point that does not fit the data"))  # fmt: skip
    alive &= ~still
    for k in np.flatnonzero(alive):
        rows.fit[idx[k]].append(y1[k])
    rows.t[idx[alive]], rows.y[idx[alive]], rows.f[idx[alive]] = (
        t1[alive],
        y1[alive],
        f1[alive],
    )
    rows.z[idx[alive]], rows.g[idx[alive]] = z1[alive], g1[alive]
    fired = alive & fire
    if fired.any():
        enter_far(rows, idx[fired])
    long = alive & ~fire & (t1 >= rows.bound[idx])
    rows.finish(idx[long], lambda r: FlowError(
        f"the loss did not fall below the threshold of Theorem 2.1 within arc "
        f"length {rows.bound[r]:.4g} (batch)"))  # fmt: skip


def _fit_velocity(fld, r, t, state, slopes):
    return fld.unit_velocity(state, slopes)
