"""Per-row state of a batch, and the pieces every phase shares.

Every row runs the single run's three phases (`invariants.batch.fit`, `.far`,
`.sliding`) on its own clock, step size and stopping point; `invariants.batch.runner`
takes one array step per phase per sweep. A row leaves the batch when it is done (a
`Trajectory`), when the single run would have raised at the same point of the path
(`StationaryPointError`, or `FlowError` for a fit that never reaches the threshold, a
target below the fitted norm, or a direction that does not converge by
max_log_norm), or when it needs what only the single run has: a ReLU kink GF would
slide along that the batch cannot pin (see `invariants.batch.events` and
`invariants.batch.pins`), a step size or evaluation budget the batch cannot meet, or a
sliding velocity its solvers cannot give. Those rows are handed off.
"""

from __future__ import annotations

import numpy as np

from invariants import kinks as kinkmod
from invariants.batch import events
from invariants.batch.fields import BatchField
from invariants.batch.pins import MAX_PINS, Pins
from invariants.field import FlowError

FIT, STIFF, SLIDE, DONE, OUT = range(5)
# A step this small against the clock means the step control has failed.
MIN_STEP = 1e-13


class Rows:
    """Per-row state of a batch; arrays indexed by row, lists of checkpoints."""

    def __init__(self, field: BatchField, thetas0, opts):
        B, P = thetas0.shape
        self.fld, self.opts = field, opts
        self.theta0 = thetas0
        self.phase = np.full(B, FIT)
        self.fresh = np.ones(B, bool)  # needs its phase's first evaluation
        # Released a kink at its current point: its field there is another one.
        self.refresh = np.zeros(B, bool)
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
        self.alpha0 = np.zeros((B, MAX_PINS))  # free slopes at the current point
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
            if self.phase[r] == OUT:
                continue  # handed off in this step already
            self.phase[r] = DONE
            self.outcome[r] = outcome(r) if callable(outcome) else outcome

    def hand_off(self, rows, reason):
        for r in np.atleast_1d(rows):
            if self.phase[r] not in (DONE, OUT):
                self.phase[r] = OUT
                self.why[int(r)] = reason


def first_step(y, f, rtol, atol, room):
    scale = atol + rtol * np.abs(y)
    d0 = np.sqrt(np.mean((y / scale) ** 2, axis=1))
    d1 = np.sqrt(np.mean((f / scale) ** 2, axis=1))
    with np.errstate(all="ignore"):
        h = np.where((d0 > 1e-5) & (d1 > 1e-5), 0.01 * d0 / d1, 1e-6)
    return np.minimum(np.nan_to_num(h, nan=1e-6), room)


def to_grid(rows, idx, t0, end):
    """Steps end on the checkpoint grid: checkpoints are then step ends, never
    interpolated (a cubic interpolant of the long sliding steps moved a parameter
    that GF leaves alone by 3e-3 of its size)."""
    nxt = rows.grid_points[idx, rows.grid_next[idx]]
    return np.minimum(np.minimum(rows.h[idx], end - t0), nxt - t0)


def record_grid(rows, idx, t1, y1):
    """Record the step ends that sit on a row's checkpoint grid."""
    nxt = rows.grid_points[idx, rows.grid_next[idx]]
    hit = t1 >= nxt - 1e-12 * np.maximum(1.0, np.abs(nxt))
    for k in np.flatnonzero(hit):
        r = idx[k]
        rows.ss[r].append(float(t1[k]))
        rows.phis[r].append(y1[k].copy())
    rows.grid_next[idx[hit]] += 1


def too_small(rows, idx, ok, t0):
    tiny = ~ok & (rows.h[idx] < MIN_STEP * np.maximum(1.0, np.abs(t0)))
    rows.hand_off(idx[tiny], "step size")


def give_up(rows, r):
    return FlowError(
        f"the direction still moves at {rows.rate[r]:.3g} per unit of log||theta|| "
        f"at log||theta|| = {rows.t[r]:.6g} (max_log_norm), above direction_tol="
        f"{rows.opts['direction_tol']} (batch)"
    )


def refreshed(rows, idx, velocity):
    """Rows of `idx` that released a kink where they stand get their field there
    again, `velocity(rows, states)`, before their next step: the first stage of
    a step is the field at its start."""
    sel = idx[rows.refresh[idx]]
    if sel.size:
        rows.f[sel] = velocity(sel, rows.y[sel])
        rows.alpha0[sel] = rows.pins.free[sel]
        rows.refresh[sel] = False
