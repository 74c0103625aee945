"""Phase 2 of a batch: the far regime on the clock s = log||theta||, with RODAS4
steps on the exact stiff Jacobian, until the margins are sharp enough to slide."""

from __future__ import annotations

import math

import numpy as np

from invariants.batch import events, steppers
from invariants.batch.results import trajectory
from invariants.batch.rows import (
    SLIDE,
    STIFF,
    first_step,
    give_up,
    record_grid,
    refreshed,
    to_grid,
    too_small,
)
from invariants.field import FlowError

# The stiff phase's tolerance, relative to rtol. The single run's BDF needs
# `flow.STIFF_RTOL_FACTOR` (1e-2) because its error estimate is loose; RODAS4's
# embedded estimate is not, and at rtol itself the limit directions of
# tests/test_batch.py agree with the single run's to 1e-13 in a third of the
# steps that 1e-2 rtol costs.
STIFF_FACTOR = 1.0


def enter_far(rows, idx):
    """Fit done: thin the fit checkpoints, set the far clock and the grid."""
    opts = rows.opts
    per_e, s_max = opts["checkpoints_per_e"], opts["max_log_norm"]
    s_target = math.log(opts["target_norm"])
    for r in idx:
        fit = np.asarray(rows.fit[r])
        most = opts["max_fit_checkpoints"]
        if len(fit) > most:
            keep = np.unique(np.linspace(0, len(fit) - 1, most).round().astype(int))
            fit = fit[keep]
        rows.fit[r] = fit
        s0 = float(np.log(np.linalg.norm(fit[-1])))
        if s_target <= s0:
            rows.finish(r, FlowError(
                f"target_norm={opts['target_norm']:.6g} is not beyond ||theta|| = "
                f"{math.exp(s0):.6g}, where the loss first fell below the threshold "
                "of Theorem 2.1 (batch)"))  # fmt: skip
            continue
        count = max(2, math.ceil((s_target - s0) * per_e) + 1)
        grid = np.linspace(s0, s_target, count)
        extra = (
            grid[-1] + np.arange(1, math.ceil((s_max - grid[-1]) * per_e) + 1) / per_e
        )
        grid = np.concatenate([grid, np.minimum(extra, s_max)])
        rows.set_grid(r, grid)
        rows.t[r], rows.y[r] = s0, fit[-1] / np.linalg.norm(fit[-1])
        rows.ss[r], rows.phis[r] = [s0], [rows.y[r].copy()]
        rows.phase[r], rows.fresh[r] = STIFF, True


def _sharp(rows, s, q):
    m, switch = rows.fld.m, rows.opts["sliding_margin"]
    return m * s + np.log(np.maximum(q.min(axis=1), 1e-300)) - math.log(switch)


def far_start(rows, idx):
    opts = rows.opts
    q, _, z = rows.fld.margins(idx, rows.y[idx])
    g = _sharp(rows, rows.t[idx], q)
    rows.z[idx], rows.g[idx] = z[0], g
    rows.fresh[idx] = False
    past = idx[g >= 0]
    # Margins already past the switch: slide from the start.
    rows.switch[past] = rows.t[past]
    rows.phase[past], rows.fresh[past] = SLIDE, True
    go = idx[g < 0]
    if not go.size:
        return
    s_target = math.log(opts["target_norm"])
    rows.bound[go] = s_target if opts["direction_tol"] is None else opts["max_log_norm"]
    rows.f[go] = rows.fld.log_norm_velocity(go, rows.t[go], rows.y[go])
    rows.alpha0[go] = rows.pins.free[go]
    rtol = opts["rtol"] * STIFF_FACTOR
    rows.h[go] = first_step(
        rows.y[go], rows.f[go], rtol, rtol, rows.bound[go] - rows.t[go]
    )


def stiff_step(rows, idx):
    fld = rows.fld
    rtol = rows.opts["rtol"] * STIFF_FACTOR
    refreshed(rows, idx, lambda sel, phi: fld.log_norm_velocity(sel, rows.t[sel], phi))
    t0, y0, f0 = rows.t[idx], rows.y[idx], rows.f[idx]
    h = to_grid(rows, idx, t0, rows.bound[idx])
    natural = rows.h[idx]
    y1, err = steppers.rodas4_step(
        lambda s, phi: fld.log_norm_velocity(idx, s, phi),
        lambda s, phi: fld.log_norm_jacobian(idx, s, phi),
        t0, y0, f0, h, rtol, rtol,
    )  # fmt: skip
    ok = err <= 1.0
    # A step cut short by the grid says nothing against the longer one.
    rows.h[idx] = np.where(
        ok & (h < natural),
        np.maximum(natural, h),
        steppers.next_steps(h, err, steppers.RODAS4_ORDER, ok),
    )
    too_small(rows, idx, ok, t0)
    if not ok.any():
        return
    idx, t0, y0, f0, y1, h = (a[ok] for a in (idx, t0, y0, f0, y1, h))
    t1 = t0 + h
    q, _, hidden = fld.margins(idx, y1)
    g1 = _sharp(rows, t1, q)
    g0 = rows.g[idx]
    held = rows.pins.held(idx)
    if held.any():
        fld.log_norm_velocity(idx[held], t1[held], y1[held])  # the slopes at y1
    keep, fire, z1, _ = events.screen(
        rows, idx, _stiff_velocity, t0, h, y1, g0, g1, (g0 < 0) & (g1 >= 0), hidden,
        (rows.alpha0[idx], rows.pins.free[idx].copy()),
    )  # fmt: skip
    idx, t0, y0, f0, t1, y1, g1, z1 = (
        a[keep] for a in (idx, t0, y0, f0, t1, y1, g1, z1)
    )
    fire = fire[keep]
    rows.steps[idx, 1] += 1
    if not idx.size:
        return
    f1 = fld.log_norm_velocity(idx, t1, y1)
    rows.alpha0[idx] = rows.pins.free[idx]
    record_grid(rows, idx, t1, y1)
    rows.t[idx], rows.y[idx], rows.f[idx], rows.g[idx], rows.z[idx] = t1, y1, f1, g1, z1
    for r in idx[fire]:
        if rows.ss[r][-1] < rows.t[r]:
            rows.ss[r].append(float(rows.t[r]))
            rows.phis[r].append(rows.y[r].copy())
        rows.switch[r] = rows.t[r]
        rows.phase[r], rows.fresh[r] = SLIDE, True
    end = idx[~fire & (t1 >= rows.bound[idx])]
    if rows.opts["direction_tol"] is None:
        rows.finish(end, lambda r: trajectory(rows, r))
    else:
        rows.finish(end, lambda r: give_up(rows, r))


def _stiff_velocity(fld, r, t, state, slopes):
    return fld.log_norm_velocity(t, state, slopes)
