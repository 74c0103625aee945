"""One integrator loop for every phase of the flow: steps, events, kinks, checkpoints.

SciPy's steppers (DOP853, BDF) advance the state; this loop looks at each accepted
step and finds, on the step's dense output, the first of:
- a phase event (the loss threshold, the sliding switch, a margin joining),
- an unpinned ReLU pre-activation changing sign,
- a pinned kink's slope leaving [0, 1].
It restarts the stepper at that point, after pinning an attracting kink or releasing
one, so that no step straddles a jump of the field. Checkpoints on a given grid of the
clock are read off the dense output.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from scipy.integrate import BDF, DOP853, LSODA
from scipy.optimize import brentq

from invariants import kinks as kinkmod

__all__ = ["Event", "IntegrationFailed", "KinkState", "integrate"]

STEPPERS = {"DOP853": DOP853, "BDF": BDF, "LSODA": LSODA}
# A pre-activation within this fraction of its scale at a restart was just handled
# (crossed or released) and may show either sign at first.
FRESH_TOL = 1e-9
# A pre-activation this close to zero at an accepted step may be held there by an
# attracting kink without ever changing sign between steps (the integrator chatters
# inside its stages instead): such a kink is examined, and pinned if attracting.
NEAR_TOL = 1e-9
# Restarts at one clock value before the loop gives up: each handles a different
# kink of the same point, so more than a few dozen means a loop.
MAX_STALLS = 50


class IntegrationFailed(RuntimeError):
    pass


@dataclass
class Event:
    name: str
    fn: Callable[[float, np.ndarray], float]
    direction: int = 0  # -1: only decreasing through zero, +1: only increasing


@dataclass
class KinkState:
    """The pinned kinks of a ReLU network and their latest slopes."""

    network: object
    X: np.ndarray
    pinned: list = field(default_factory=list)
    alpha: np.ndarray = field(default_factory=lambda: np.empty(0))
    pins: int = 0
    releases: int = 0
    crossings: int = 0
    dismissed: set = field(default_factory=set)
    just_handled: set = field(default_factory=set)
    cache: dict = field(default_factory=dict)

    def __post_init__(self):
        self.kinks = kinkmod.all_kinks(self.network, len(self.X))
        self.rays = kinkmod.rays(self.X)
        self.lines = kinkmod.rays(self.X, lines=True)

    def reset(self) -> None:
        """Forget every pin, for a restart of the same phase from its start."""
        self.pinned, self.alpha = [], np.empty(0)
        self.dismissed, self.just_handled = set(), set()
        self.cache = {}

    def surface(self, kink):
        """Every kink on the same surface as `kink`: the same neuron on samples whose
        inputs to it are proportional. By homogeneity that holds for positive
        multiples at every layer, and for negative multiples too at the first layer
        (z and -z vanish together). Such kinks are pinned and released together."""
        l, i, a = kink
        group = self.lines if l == 1 else self.rays
        return [(l, int(j), a) for j in np.flatnonzero(group == group[i])]

    def pin(self, kink):
        for k in self.surface(kink):
            if k not in self.pinned:
                self.pinned.append(k)
                self.alpha = np.append(self.alpha, 0.5)
        self.pins += 1

    def release(self, kink):
        gone = set(self.surface(kink))
        self.just_handled |= gone
        keep = [n for n, k in enumerate(self.pinned) if k not in gone]
        self.pinned = [self.pinned[n] for n in keep]
        self.alpha = self.alpha[keep]
        self.cache.clear()
        self.releases += 1

    def slopes(self):
        return dict(zip(self.pinned, self.alpha)) if self.pinned else None

    def watched(self, state):
        """Values and scales of the pre-activations that are not pinned."""
        z, scale = kinkmod.hidden_preactivations(self.network, state, self.X)
        if self.pinned:
            keep = np.array([k not in self.pinned for k in self.kinks])
            return z, scale, keep
        return z, scale, np.ones(z.size, bool)


def integrate(
    method,
    velocity,
    t0,
    y0,
    t_bound,
    *,
    rtol,
    atol,
    kinks: KinkState,
    jac=None,
    events=(),
    grid=None,
    every_step=False,
    budget=None,
    stats=None,
):
    """Integrate `velocity(t, y, slopes)` from t0 to t_bound or the first phase event.

    Returns (t, y, event_name or None, checkpoints) where checkpoints is a list of
    (t, y) on `grid` (and at every accepted step if `every_step`).
    """
    t, y = float(t0), np.array(y0, dtype=float)
    recorded = []
    stalled = 0
    run = _Run(method, velocity, rtol, atol, kinks, jac, tuple(events), grid,
               every_step, budget, {} if stats is None else stats)  # fmt: skip
    while True:
        result = _run(run, t, y, t_bound, recorded)
        stalled = stalled + 1 if result[1] == t else 0
        if stalled > MAX_STALLS:
            raise IntegrationFailed(
                f"no progress past clock {t:.9g}: {result[0]} {result[3]} recurs there"
            )
        kind, t, y, what = result
        if kind == "end":
            return t, y, None, recorded
        if kind == "event":
            return t, y, what, recorded
        if kind == "kink":
            _meet_kink(kinks, velocity, t, y, what)
        elif kind == "release":
            kinks.release(what)


def _meet_kink(kinks, velocity, t, y, kink):
    """At a sign change of an unpinned pre-activation: pin it if GF is pushed onto it
    from both sides, else let the path cross."""
    if _attracting(kinks, velocity, t, y, kink):
        kinks.pin(kink)
        kinks.cache.clear()
    else:
        kinks.crossings += 1
        kinks.just_handled |= set(kinks.surface(kink))


def _attracting(kinks, velocity, t, y, kink):
    net, X = kinks.network, kinks.X
    alpha, v = kinkmod.solve_slopes(
        net,
        X,
        y,
        kinks.pinned,
        lambda st, sl: velocity(t, st, sl),
        kinks.alpha,
        kinks.cache,
    )
    kinks.alpha = alpha
    from_below, from_above = kinkmod.crossing(
        net, X, y, kinks.pinned, alpha, kink, lambda st, sl: velocity(t, st, sl)
    )
    # Held on the surface when neither side pushes away and at least one pushes
    # towards it. A side whose rate is zero up to rounding leaves z alone: the path
    # then rests on the kink with the slope of the other side (alpha at 0 or 1), and
    # pinning it spares the integrator a chatter across a jump of the field.
    _, Dz = net.preactivation_gradients(y, X, [kink], kinks.slopes())
    tiny = 1e-12 * float(np.linalg.norm(Dz) * np.linalg.norm(v))
    holds = from_below > -tiny and from_above < tiny
    return holds and (from_below > tiny or from_above < -tiny)


@dataclass
class _Run:
    """What stays fixed across the restarts of one `integrate` call."""

    method: str
    velocity: Callable
    rtol: float
    atol: float
    kinks: KinkState
    jac: Callable | None
    events: tuple
    grid: np.ndarray | None
    every_step: bool
    budget: Callable | None
    stats: dict


def _run(run: _Run, t0, y0, t_bound, recorded):
    method, velocity, kinks, jac = run.method, run.velocity, run.kinks, run.jac
    events, grid, every_step = run.events, run.grid, run.every_step
    budget, stats = run.budget, run.stats
    rtol, atol = run.rtol, run.atol

    def rhs(t, y):
        if budget is not None:
            budget(t, y)
        with np.errstate(all="ignore"):
            # Trial stages of rejected steps may overflow; their NaN is the signal
            # the stepper uses to shorten the step, not an error to print.
            return _velocity_with_slopes(t, y)

    def _velocity_with_slopes(t, y):
        alpha, v = kinkmod.solve_slopes(
            kinks.network,
            kinks.X,
            y,
            kinks.pinned,
            lambda st, sl: velocity(t, st, sl),
            kinks.alpha,
            kinks.cache,
        )
        rhs.alpha = alpha
        return v

    rhs.alpha = kinks.alpha
    options = {"rtol": rtol, "atol": atol}
    if method == "BDF" and jac is not None:
        options["jac"] = lambda t, y: _constrained_jacobian(kinks, velocity, jac, t, y)
    stepper = STEPPERS[method](rhs, t0, y0, t_bound, **options)

    z0, scale, keep = kinks.watched(y0)
    fresh = np.abs(z0) <= FRESH_TOL * np.maximum(scale, 1e-300)
    # The kinks just crossed or released sit at zero up to the root finder's
    # accuracy, with either sign: their first sign change is the one just handled.
    for k in kinks.just_handled:
        fresh[kinks.kinks.index(k)] = True
    kinks.just_handled = set()
    g0 = [e.fn(t0, y0) for e in events]
    t_prev, z_prev = t0, z0
    while stepper.status == "running":
        message = stepper.step()
        if stepper.status == "failed":
            raise IntegrationFailed(f"{message} at clock {stepper.t:.6g}")
        t1, y1 = stepper.t, stepper.y
        stats["steps"] = stats.get("steps", 0) + 1
        kinks.alpha = rhs.alpha
        dense = stepper.dense_output()
        found = []

        for e, g_prev in zip(events, g0):
            g1 = e.fn(t1, y1)
            if _crosses(g_prev, g1, e.direction):
                te = _root(lambda tt, e=e, d=dense: e.fn(tt, d(tt)), t_prev, t1)
                found.append((te, "event", e.name))

        z1, scale1, _ = kinks.watched(y1)
        if z1.size:
            changed = np.flatnonzero(
                keep & ~fresh & (np.sign(z_prev) != np.sign(z1)) & (z_prev != 0)
            )
            for j in changed:
                te = _root(
                    lambda tt, j=j, d=dense: kinks.watched(d(tt))[0][j], t_prev, t1
                )
                found.append((te, "kink", kinks.kinks[j]))
            near = np.abs(z1) <= NEAR_TOL * np.maximum(scale1, 1e-300)
            kinks.dismissed -= {kinks.kinks[j] for j in np.flatnonzero(~near)}
            for j in np.flatnonzero(near & keep):
                kink = kinks.kinks[j]
                if kink in kinks.dismissed or j in changed:
                    continue
                if _attracting(kinks, velocity, t1, y1, kink):
                    found.append((t1, "kink", kink))
                else:
                    kinks.dismissed.add(kink)

        if kinks.pinned:
            alpha1 = _alpha_at(kinks, velocity, t1, y1, slice(None))
            for k, a in enumerate(alpha1):
                if not -1e-9 <= a <= 1 + 1e-9:
                    bound = 0.0 if a < 0 else 1.0
                    te = _root(
                        lambda tt, k=k, bound=bound, d=dense: (
                            _alpha_at(kinks, velocity, tt, d(tt), k) - bound
                        ),
                        t_prev,
                        t1,
                        fallback=t1,
                    )
                    found.append((te, "release", kinks.pinned[k]))

        if found:
            te, kind, what = min(found, key=lambda f: f[0])
            _record(recorded, grid, every_step, t_prev, te, dense, include_end=False)
            return kind, te, dense(te), what
        _record(recorded, grid, every_step, t_prev, t1, dense, include_end=True)
        t_prev, z_prev = t1, z1
        fresh = np.zeros_like(fresh)
        g0 = [e.fn(t1, y1) for e in events]
    return "end", stepper.t, stepper.y, None


def _constrained_jacobian(kinks, velocity, jac, t, y):
    """The Jacobian of the field with the pinned kinks' slopes solved for.

    With the slopes frozen the stiff integrator's Newton iteration misses how they
    respond to the state, and fails. By the implicit function theorem on the sliding
    condition g = Dz v + KAPPA z = 0 (Dz taken constant, exact at depth 2):
    J_total = J_v - V_a (Dz V_a)^-1 Dz (J_v + KAPPA I), with V_a = dv/d(alpha).
    """
    Jv = jac(t, y, kinks.slopes())
    if not kinks.pinned:
        return Jv
    net, X = kinks.network, kinks.X
    alpha = kinks.alpha
    slopes = kinks.slopes()
    v = velocity(t, y, slopes)
    Va = np.empty((y.size, len(alpha)))
    for j in range(len(alpha)):
        shifted = dict(slopes)
        shifted[kinks.pinned[j]] = alpha[j] + kinkmod.SLOPE_STEP
        Va[:, j] = (velocity(t, y, shifted) - v) / kinkmod.SLOPE_STEP
    _, Dz = net.preactivation_gradients(y, X, kinks.pinned, slopes)
    A = Dz @ Va
    correction = np.linalg.lstsq(
        A, Dz @ (Jv + kinkmod.KAPPA * np.eye(y.size)), rcond=None
    )[0]
    return Jv - Va @ correction


def _alpha_at(kinks, velocity, t, y, k):
    # A private cache and a fixed start: a root finder needs the same function of
    # the clock at every call.
    alpha = kinkmod.solve_slopes(
        kinks.network,
        kinks.X,
        y,
        kinks.pinned,
        lambda st, sl: velocity(t, st, sl),
        kinks.alpha.copy(),
        dict(kinks.cache),
    )[0]
    return alpha[k]


def _crosses(a, b, direction):
    if direction < 0:
        return a > 0 >= b
    if direction > 0:
        return a < 0 <= b
    return (a > 0 >= b) or (a < 0 <= b)


def _root(f, a, b, fallback=None):
    fa, fb = f(a), f(b)
    if fa == 0:
        return a
    if np.sign(fa) == np.sign(fb):
        return b if fallback is None else fallback
    try:
        return brentq(
            f, a, b, xtol=1e-14 * max(1.0, abs(b)), rtol=4 * np.finfo(float).eps
        )
    except ValueError:
        # A slope solved afresh at each trial point need not be the same function of
        # the clock at a and b to the last bit; the end of the step is then as good.
        return b if fallback is None else fallback


def _record(recorded, grid, every_step, a, b, dense, *, include_end):
    if grid is not None:
        inside = grid[(grid > a) & ((grid <= b) if include_end else (grid < b))]
        recorded.extend((float(g), dense(g)) for g in inside)
    if every_step and include_end:
        recorded.append((float(b), dense(b)))
