"""The batch state machine: every row runs the single run's three phases on its own
clock, step size and stopping point; one array step per phase per sweep.

A row leaves the batch when it is done (a `Trajectory`), when the single run would
have raised at the same point of the path (`StationaryPointError`, or `FlowError`
for a fit that never reaches the threshold, a target below the fitted norm, or a
direction that does not converge by max_log_norm), or when it needs what only the
single run has: a ReLU kink GF would slide along that the batch cannot pin (see
`invariants.batch.events` and `invariants.batch.pins`),
a step size or evaluation budget the batch cannot meet, or a sliding velocity its
solvers cannot give. Those rows are handed off. The slowest rows of a batch stay
in it to the end: on Theorem 3.2's sweep (1000 rows) its last 1% cost the batch about
8 s more, where a single run of one of the sweep's slow rows takes 6-16 s.
"""

from __future__ import annotations

import math

import numpy as np

from invariants import kinks as kinkmod
from invariants.batch import events, steppers
from invariants.batch.fields import BatchField
from invariants.batch.pins import MAX_PINS, Pins
from invariants.batch.results import trajectory as _trajectory
from invariants.field import FlowError, StationaryPointError
from invariants.flow import ORIGIN_TOL
from invariants.losses import log_loss_threshold

FIT, STIFF, SLIDE, DONE, OUT = range(5)
# A step this small against the clock means the step control has failed.
MIN_STEP = 1e-13
# Accepted steps of the fitting phase beyond which it counts as stiff: the single
# run's LSODA switches to BDF there, the batch's explicit pair would crawl.
MAX_FIT_STEPS = 5_000
# The stiff phase's tolerance, relative to rtol. The single run's BDF needs
# `flow.STIFF_RTOL_FACTOR` (1e-2) because its error estimate is loose; RODAS4's
# embedded estimate is not, and at rtol itself the limit directions of
# tests/test_batch.py agree with the single run's to 1e-13 in a third of the
# steps that 1e-2 rtol costs.
STIFF_FACTOR = 1.0


class Rows:
    """Per-row state of a batch; arrays indexed by row, lists of checkpoints."""

    def __init__(self, field: BatchField, thetas0, opts):
        B, P = thetas0.shape
        self.fld, self.opts = field, opts
        self.theta0 = thetas0
        self.phase = np.full(B, FIT)
        self.fresh = np.ones(B, bool)  # needs its phase's first evaluation
        self.t = np.zeros(B)
        self.y = thetas0.copy()
        self.f = np.zeros((B, P))
        self.h = np.zeros(B)
        self.bound = np.zeros(B)
        self.landing = np.zeros(B, bool)
        self.land_kind = np.zeros(B, dtype=np.int8)
        self.crossings = np.zeros(B, dtype=np.int64)
        self.kinks = kinkmod.all_kinks(field.network, field.X.shape[-2])
        self.pins = field.pins = Pins(field.network, field.X, field.y, B)
        self.alpha0 = np.zeros((B, MAX_PINS))  # slopes at the row's current point
        self._fields: dict[int, object] = {}
        self.g = np.zeros(B)
        self.z = None
        self.active = None
        self.seg_end = np.zeros(B)
        self.steps = np.zeros((B, 3), dtype=np.int64)
        self.segments = np.zeros(B, dtype=np.int64)
        self.switch = np.full(B, np.nan)
        self.rate = np.full(B, np.nan)
        self.fit = [[th] for th in thetas0]
        self.ss = [[] for _ in range(B)]
        self.phis = [[] for _ in range(B)]
        self.grid_points = np.full((B, 2), np.inf)  # padded with inf
        self.grid_next = np.ones(B, dtype=np.int64)
        self.outcome: list = [None] * B
        self.why: dict[int, str] = {}

    def set_grid(self, r, grid):
        """Row r's checkpoint clock values; the next one to reach is grid[1]."""
        if grid.size + 1 > self.grid_points.shape[1]:
            extra = grid.size + 1 - self.grid_points.shape[1]
            self.grid_points = np.pad(
                self.grid_points, ((0, 0), (0, extra)), constant_values=np.inf
            )
        self.grid_points[r, : grid.size] = grid
        self.grid_next[r] = 1

    def single_field(self, r):
        """The single run's `Field` for row r, for the rare per-row questions."""
        if r not in self._fields:
            self._fields[r] = events.single_field(self.fld, r)
        return self._fields[r]

    # -- leaving the batch -------------------------------------------------------

    def finish(self, rows, outcome):
        for r in np.atleast_1d(rows):
            self.phase[r] = DONE
            self.outcome[r] = outcome(r) if callable(outcome) else outcome

    def hand_off(self, rows, reason):
        for r in np.atleast_1d(rows):
            if self.phase[r] not in (DONE, OUT):
                self.phase[r] = OUT
                self.why[int(r)] = reason


def run_rows(rows: Rows) -> None:
    """Advance every row until it is done or handed off."""
    stepping = {FIT: _fit_step, STIFF: _stiff_step, SLIDE: _slide_step}
    starting = {FIT: _fit_start, STIFF: _far_start, SLIDE: _slide_start}
    budget = rows.opts["max_evaluations"]
    while True:
        live = np.isin(rows.phase, (FIT, STIFF, SLIDE))
        if not live.any():
            return
        # The Jacobian's difference columns are not counted: BDF reuses one
        # Jacobian over many steps, the Rosenbrock method needs one per step.
        over = live & (rows.fld.evaluations - rows.fld.columns > budget)
        rows.hand_off(np.flatnonzero(over), "budget")
        rows.hand_off(np.flatnonzero(live & rows.pins.singular), "pinned kink")
        for phase in (FIT, STIFF, SLIDE):
            idx = np.flatnonzero((rows.phase == phase) & rows.fresh)
            if idx.size:
                starting[phase](rows, idx)
            idx = np.flatnonzero((rows.phase == phase) & ~rows.fresh)
            if idx.size:
                stepping[phase](rows, idx)


# -- shared pieces ------------------------------------------------------------------


def _first_step(y, f, rtol, atol, room):
    scale = atol + rtol * np.abs(y)
    d0 = np.sqrt(np.mean((y / scale) ** 2, axis=1))
    d1 = np.sqrt(np.mean((f / scale) ** 2, axis=1))
    with np.errstate(all="ignore"):
        h = np.where((d0 > 1e-5) & (d1 > 1e-5), 0.01 * d0 / d1, 1e-6)
    return np.minimum(np.nan_to_num(h, nan=1e-6), room)


def _to_grid(rows, idx, t0, end):
    """Steps end on the checkpoint grid: checkpoints are then step ends, never
    interpolated (a cubic interpolant of the long sliding steps moved a parameter
    that GF leaves alone by 3e-3 of its size)."""
    nxt = rows.grid_points[idx, rows.grid_next[idx]]
    return np.minimum(np.minimum(rows.h[idx], end - t0), nxt - t0)


def _record_grid(rows, idx, t1, y1):
    """Record the step ends that sit on a row's checkpoint grid."""
    nxt = rows.grid_points[idx, rows.grid_next[idx]]
    hit = t1 >= nxt - 1e-12 * np.maximum(1.0, np.abs(nxt))
    for k in np.flatnonzero(hit):
        r = idx[k]
        rows.ss[r].append(float(t1[k]))
        rows.phis[r].append(y1[k].copy())
    rows.grid_next[idx[hit]] += 1


# -- phase 1: fit, arc length ---------------------------------------------------


def _fit_goal(rows):
    return log_loss_threshold(rows.fld.loss) - 1e-3


def _fit_start(rows, idx):
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
        _enter_far(rows, fitted)
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
    rows.h[go] = _first_step(rows.y[go], rows.f[go], rtol, rtol, rows.bound[go])


def _fit_step(rows, idx):
    fld, rtol = rows.fld, rows.opts["rtol"]
    t0, y0, f0 = rows.t[idx], rows.y[idx], rows.f[idx]
    h = np.minimum(rows.h[idx], rows.bound[idx] - t0)
    flags = {}

    def fun(_, th):
        v, flags["stationary"] = fld.unit_velocity(idx, th)
        return v

    y1, f1, err = steppers.dop853_step(fun, t0, y0, f0, h, rtol, rtol)
    stationary = flags["stationary"]
    alpha1 = rows.pins.alpha[idx].copy()  # the last stage is at y1
    ok = err <= 1.0
    rows.h[idx] = steppers.next_steps(h, err, steppers.DOP853_ORDER, ok)
    _too_small(rows, idx, ok, t0)
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
    rows.alpha0[idx] = rows.pins.alpha[idx]

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
        _enter_far(rows, idx[fired])
    long = alive & ~fire & (t1 >= rows.bound[idx])
    rows.finish(idx[long], lambda r: FlowError(
        f"the loss did not fall below the threshold of Theorem 2.1 within arc "
        f"length {rows.bound[r]:.4g} (batch)"))  # fmt: skip


def _fit_velocity(fld, r, t, state, slopes):
    return fld.unit_velocity(state, slopes)


def _too_small(rows, idx, ok, t0):
    tiny = ~ok & (rows.h[idx] < MIN_STEP * np.maximum(1.0, np.abs(t0)))
    rows.hand_off(idx[tiny], "step size")


# -- phase 2: far regime, log-norm clock ---------------------------------------------


def _enter_far(rows, idx):
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


def _far_start(rows, idx):
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
    rows.alpha0[go] = rows.pins.alpha[go]
    rtol = opts["rtol"] * STIFF_FACTOR
    rows.h[go] = _first_step(
        rows.y[go], rows.f[go], rtol, rtol, rows.bound[go] - rows.t[go]
    )


def _stiff_step(rows, idx):
    fld = rows.fld
    rtol = rows.opts["rtol"] * STIFF_FACTOR
    t0, y0, f0 = rows.t[idx], rows.y[idx], rows.f[idx]
    h = _to_grid(rows, idx, t0, rows.bound[idx])
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
    _too_small(rows, idx, ok, t0)
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
        (rows.alpha0[idx], rows.pins.alpha[idx].copy()),
    )  # fmt: skip
    idx, t0, y0, f0, t1, y1, g1, z1 = (
        a[keep] for a in (idx, t0, y0, f0, t1, y1, g1, z1)
    )
    fire = fire[keep]
    rows.steps[idx, 1] += 1
    if not idx.size:
        return
    f1 = fld.log_norm_velocity(idx, t1, y1)
    rows.alpha0[idx] = rows.pins.alpha[idx]
    _record_grid(rows, idx, t1, y1)
    rows.t[idx], rows.y[idx], rows.f[idx], rows.g[idx], rows.z[idx] = t1, y1, f1, g1, z1
    for r in idx[fire]:
        if rows.ss[r][-1] < rows.t[r]:
            rows.ss[r].append(float(rows.t[r]))
            rows.phis[r].append(rows.y[r].copy())
        rows.switch[r] = rows.t[r]
        rows.phase[r], rows.fresh[r] = SLIDE, True
    end = idx[~fire & (t1 >= rows.bound[idx])]
    if rows.opts["direction_tol"] is None:
        rows.finish(end, lambda r: _trajectory(rows, r))
    else:
        rows.finish(end, lambda r: _give_up(rows, r))


def _stiff_velocity(fld, r, t, state, slopes):
    return fld.log_norm_velocity(t, state, slopes)


# -- phase 3: sliding ---------------------------------------------------------------


def _slide_start(rows, idx):
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
    rows.alpha0[idx] = rows.pins.alpha[idx]
    rows.fresh[idx] = False
    rtol = opts["rtol"]
    first = rows.segments[idx] == 0
    room = rows.seg_end[idx] - s
    h0 = _first_step(rows.y[idx], np.nan_to_num(f), rtol, rtol, room)
    rows.h[idx] = np.where(first, h0, np.minimum(np.maximum(rows.h[idx], h0), room))


def _joins(rows, idx, s, q):
    """Distance of the nearest outside margin to the boundary layer (inf if none)."""
    active = rows.active[idx]
    q_min = np.where(active, q, np.inf).min(axis=1)
    gap = np.where(active, np.inf, q - q_min[:, None]).min(axis=1)
    with np.errstate(invalid="ignore"):
        return gap - rows.fld.layer_width(s, q_min, rows.opts["active_tol"])


def _slide_step(rows, idx):
    fld, rtol = rows.fld, rows.opts["rtol"]
    t0, y0, f0 = rows.t[idx], rows.y[idx], rows.f[idx]
    h = _to_grid(rows, idx, t0, rows.seg_end[idx])
    natural = rows.h[idx]
    failed = np.zeros(idx.size, bool)
    active = rows.active[idx]

    def fun(_, phi):
        v, bad = fld.sliding_velocity(idx, phi, active)
        failed[:] |= bad
        return v

    y1, f1, err = steppers.dop853_step(fun, t0, y0, f0, h, rtol, rtol)
    alpha1 = rows.pins.alpha[idx].copy()  # the last stage is at y1
    rows.hand_off(idx[failed], "sliding velocity")
    ok = (err <= 1.0) & ~failed
    rows.h[idx] = np.where(
        ok & (h < natural),
        np.maximum(natural, h),
        steppers.next_steps(h, err, steppers.DOP853_ORDER, ok),
    )
    _too_small(rows, idx, ok & ~failed, t0)
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
    rows.alpha0[idx] = rows.pins.alpha[idx]
    rows.steps[idx, 2] += 1
    _record_grid(rows, idx, t1, y1)
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
            rows.finish(r, _give_up(rows, r))
        else:
            rows.fresh[r] = True
        return
    rows.finish(r, _trajectory(rows, r))


def _converged(rows, r) -> bool:
    tol = rows.opts["direction_tol"]
    if tol is None:
        return True
    ss, phis = rows.ss[r], rows.phis[r]
    if len(ss) >= 2 and ss[-1] > ss[-2]:
        a, b = (p / np.linalg.norm(p) for p in phis[-2:])
        rows.rate[r] = float(np.linalg.norm(b - a)) / (ss[-1] - ss[-2])
    return rows.rate[r] <= tol


def _give_up(rows, r):
    return FlowError(
        f"the direction still moves at {rows.rate[r]:.3g} per unit of log||theta|| "
        f"at log||theta|| = {rows.t[r]:.6g} (max_log_norm), above direction_tol="
        f"{rows.opts['direction_tol']} (batch)"
    )
