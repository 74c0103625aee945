"""Phase 3 of a batch: sliding, the limit of infinite sharpness, in segments with
their active sets frozen, until the direction converges."""

from __future__ import annotations

import math

import numpy as np

from invariants.batch import events, steppers
from invariants.batch.results import trajectory
from invariants.batch.rows import (
    OUT,
    first_step,
    give_up,
    record_grid,
    refreshed,
    to_grid,
    too_small,
)


def slide_start(rows, idx):
    """Start a segment: re-read the active sets, set the segment's end."""
    fld, opts = rows.fld, rows.opts
    s = rows.t[idx]
    q, _, z = fld.margins(idx, rows.y[idx])
    if rows.active is None:
        rows.active = np.zeros((len(rows.y), q.shape[1]), bool)
    previous = rows.active[idx] & (rows.segments[idx] > 0)[:, None]
    active = fld.active_sets(s, q, opts["active_tol"], previous)
    rows.active[idx] = active
    s_target = math.log(opts["target_norm"])
    end = np.where(s < s_target, s_target, opts["max_log_norm"])
    rows.seg_end[idx] = np.minimum(end, s + 1.0)
    rows.g[idx] = _joins(rows, idx, s, q)
    rows.z[idx] = z[0]
    f, failed = fld.sliding_velocity(idx, rows.y[idx], active)
    rows.hand_off(idx[failed | ~np.all(np.isfinite(f), axis=1)], "sliding velocity")
    rows.f[idx] = f
    rows.alpha0[idx] = rows.pins.free[idx]
    rows.fresh[idx] = False
    rtol = opts["rtol"]
    first = rows.segments[idx] == 0
    room = rows.seg_end[idx] - s
    h0 = first_step(rows.y[idx], np.nan_to_num(f), rtol, rtol, room)
    rows.h[idx] = np.where(first, h0, np.minimum(np.maximum(rows.h[idx], h0), room))


def _joins(rows, idx, s, q):
    """Distance of the nearest outside margin to the boundary layer (inf if none)."""
    active = rows.active[idx]
    q_min = np.where(active, q, np.inf).min(axis=1)
    gap = np.where(active, np.inf, q - q_min[:, None]).min(axis=1)
    with np.errstate(invalid="ignore"):
        return gap - rows.fld.layer_width(s, q_min, rows.opts["active_tol"])


def slide_step(rows, idx):
    fld, rtol = rows.fld, rows.opts["rtol"]

    def field(sel, phi):
        v, bad = fld.sliding_velocity(sel, phi, rows.active[sel])
        rows.hand_off(sel[bad | ~np.all(np.isfinite(v), axis=1)], "sliding velocity")
        return v

    refreshed(rows, idx, field)
    idx = idx[rows.phase[idx] != OUT]
    if not idx.size:
        return
    t0, y0, f0 = rows.t[idx], rows.y[idx], rows.f[idx]
    h = to_grid(rows, idx, t0, rows.seg_end[idx])
    natural = rows.h[idx]
    failed = np.zeros(idx.size, bool)
    active = rows.active[idx]

    def fun(_, phi):
        v, bad = fld.sliding_velocity(idx, phi, active)
        failed[:] |= bad
        return v

    y1, f1, err = steppers.dop853_step(fun, t0, y0, f0, h, rtol, rtol)
    alpha1 = rows.pins.free[idx].copy()  # the last stage is at y1
    rows.hand_off(idx[failed], "sliding velocity")
    ok = (err <= 1.0) & ~failed
    rows.h[idx] = np.where(
        ok & (h < natural),
        np.maximum(natural, h),
        steppers.next_steps(h, err, steppers.DOP853_ORDER, ok),
    )
    too_small(rows, idx, ok & ~failed, t0)
    if not ok.any():
        return
    idx, t0, y0, f0, y1, f1, h = (a[ok] for a in (idx, t0, y0, f0, y1, f1, h))
    alpha1 = alpha1[ok]
    t1 = t0 + h
    q, _, hidden = fld.margins(idx, y1)
    g1 = _joins(rows, idx, t1, q)
    g0 = rows.g[idx]
    velocity = _sliding_velocity(rows)
    keep, fire, z1, changed = events.screen(
        rows, idx, velocity, t0, h, y1, g0, g1, (g0 > 0) & (g1 <= 0), hidden,
        (rows.alpha0[idx], alpha1),
    )  # fmt: skip
    idx, t0, y0, f0, t1, y1, f1, g1, z1 = (
        a[keep] for a in (idx, t0, y0, f0, t1, y1, f1, g1, z1)
    )
    fire, changed = fire[keep], changed[keep]
    if changed.any():
        # A kink pinned or released at y1: the field there is another one.
        ch = idx[changed]
        f1[changed], bad = fld.sliding_velocity(ch, y1[changed], rows.active[ch])
        rows.hand_off(ch[bad | ~np.all(np.isfinite(f1[changed]), axis=1)],
                      "sliding velocity")  # fmt: skip
    rows.alpha0[idx] = rows.pins.free[idx]
    rows.steps[idx, 2] += 1
    record_grid(rows, idx, t1, y1)
    rows.t[idx], rows.y[idx], rows.f[idx], rows.g[idx], rows.z[idx] = t1, y1, f1, g1, z1
    for r in idx[fire | (t1 >= rows.seg_end[idx])]:
        _segment_end(rows, r)


def _sliding_velocity(rows):
    def velocity(fld, r, t, state, slopes):
        return fld.sliding_velocity(state, np.flatnonzero(rows.active[r]), slopes)

    return velocity


def _segment_end(rows, r):
    """The single run's loop test: another segment, done, or give up."""
    opts = rows.opts
    rows.segments[r] += 1
    s1 = rows.t[r]
    if s1 < math.log(opts["target_norm"]) or not _converged(rows, r):
        if s1 >= opts["max_log_norm"]:
            rows.finish(r, give_up(rows, r))
        else:
            rows.fresh[r] = True
        return
    rows.finish(r, trajectory(rows, r))


def _converged(rows, r) -> bool:
    tol = rows.opts["direction_tol"]
    if tol is None:
        return True
    ss, phis = rows.ss[r], rows.phis[r]
    if len(ss) >= 2 and ss[-1] > ss[-2]:
        a, b = (p / np.linalg.norm(p) for p in phis[-2:])
        rows.rate[r] = float(np.linalg.norm(b - a)) / (ss[-1] - ss[-2])
    return rows.rate[r] <= tol
