"""Gradient flow along its exact path, out to ||theta|| = 1e8 and beyond.

GF's direction converges like 1/log t, so the simulator never uses t. It traces the
same curve with three clocks, each a positive change of time:

1. Fit: arc length, theta' = F / ||F||, with LSODA (Adams, or BDF where margins
   balancing against each other make it stiff), until the loss falls below the
   threshold of Theorem 2.1; the event is located on the dense output.
2. Stiff: s = log||theta|| with theta = e^s phi (see `invariants.field`). The
   margins' exponent e^{m s} q(phi) grows without bound and margin gaps relax at a
   rate proportional to it; variable-order BDF with the field's exact stiff
   Jacobian follows the slow motion of the direction.
3. Sliding: once the smallest margin of theta exceeds `sliding_margin` (1e6), the
   loss weights are a hard minimum up to O(1 / sliding_margin), and the field is
   replaced by its limit: the minimal-norm point of the active margins' gradients.
   That limit is smooth and not stiff (DOP853, in segments whose active set is
   frozen; an event ends a segment when a margin joins). Gaps of q(theta) between
   active margins are then held instead of relaxing to log-ratios of weights, which
   moves the direction by O(1 / sliding_margin). Measured on 14 random cases: a switch
   at 1e6 against one at 1e8 differed by 1.0e-14 to 4.2e-9 in direction at 1e6
   (`benchmarks/bench_sliding_switch.py`).

ReLU kinks. Every phase runs through `invariants.driver`, which stops a step where an
input to a neuron changes sign, and pins the kink when GF is pushed onto it from both
sides (see `invariants.kinks`): no step straddles a jump of the field.

Checkpoints are recorded at every accepted step of the fitting phase (thinned to at
most `max_fit_checkpoints`) and at `checkpoints_per_e` points per unit of log||theta||
after it, so memory grows like log||theta_final||.
"""

from __future__ import annotations

import logging
import math
import time
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from invariants.casefile import Case
from invariants.driver import Event, IntegrationFailed, KinkState, integrate
from invariants.field import (
    Field,
    FlowError,
    KinkSlidingError,
    StationaryPointError,
    find_kink,
)
from invariants.losses import log_loss, log_loss_threshold
from invariants.networks import Network
from invariants.trajectory import Trajectory
from invariants.validation import check_dataset, check_loss, check_rays, check_theta

__all__ = [
    "FlowError",
    "KinkSlidingError",
    "StationaryPointError",
    "Trajectory",
    "gradient_flow",
    "simulate",
]

log = logging.getLogger(__name__)

# How far below ||theta0|| a path may shrink before it counts as falling into the
# origin; arc-length steps near the origin cannot resolve it any better anyway.
ORIGIN_TOL = 1e-6
# The far regime's stiff phase. Variable-order BDF with the exact stiff Jacobian
# needed several times fewer evaluations than Radau IIA on the slow manifold at
# smallest margins 1e4..1e6, where Radau's Newton iterations kept failing.
STIFF_METHOD = "BDF"
# The fitting phase can be stiff too: two margins balance while a direction of tiny
# margin grows, and DOP853's steps shrank with the margin (1e-3 took over 200,000
# evaluations). LSODA switches between Adams and BDF by itself (3,000 there). The
# sliding phase stays on DOP853: LSODA was cheaper there but let a parameter that GF
# leaves alone drift by 2% of its size, DOP853 by 2e-7.
FIT_METHOD = "LSODA"
FIT_FALLBACK = "DOP853"
SLIDING_METHOD = "DOP853"
# log of the largest double, less a margin: every quantity a checker computes from a
# checkpoint must stay finite, ||theta||^2 (2 s) and the margins (m s) included.
LOG_FLOAT_MAX = 700.0


def max_log_norm_for(network: Network) -> float:
    """The largest log||theta|| whose checkpoints, squared norms and margins are all
    representable: LOG_FLOAT_MAX / max(2, depth)."""
    return LOG_FLOAT_MAX / max(2, network.depth)


# BDF's error estimate is looser than Radau's at equal rtol: a parameter that GF
# leaves alone drifted by 4e-6 of its size at rtol 1e-10 (Radau: 2e-7). A hundredth
# of rtol restores that accuracy and keeps most of the saving.
STIFF_RTOL_FACTOR = 1e-2


def gradient_flow(
    network: Network,
    X: ArrayLike,
    y: ArrayLike,
    theta0: ArrayLike,
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
) -> Trajectory:
    """Follow GF, d theta/dt = -grad L(theta), from theta0 to ||theta|| = target_norm.

    With `direction_tol`, keep going past target_norm until the direction moves by
    less than direction_tol per unit of log||theta|| (measured over the last
    checkpoint interval), or raise `FlowError` at log||theta|| = max_log_norm (by
    default, and at most, `max_log_norm_for(network)`: 350 at depth 2). GF's
    direction converges like a power of 1/||theta|| whose exponent depends on the
    case (a spectral gap of the limit); some cases are still 1e-1 away from their
    limit direction at ||theta|| = 1e8 and within 1e-16 of it by 1e64, which the
    sliding phase reaches in a few thousand evaluations.

    Raises `StationaryPointError` if GF cannot move from theta0, and `FlowError` if the
    loss does not fall below the threshold of Theorem 2.1 within `max_fit_length` of
    arc length (default 100 (1 + ||theta0||)) or the evaluation budget runs out.
    """
    X, y = check_dataset(X, y, network.input_dim)
    check_rays(X, y)
    theta0 = check_theta(theta0, network.num_parameters, "theta0")
    check_loss(loss)
    if network.depth >= 2 and not np.any(theta0):
        raise StationaryPointError(
            "theta0 = 0 is a stationary point of every network of depth >= 2 (each "
            "margin's gradient is a product of the other layers): GF never moves"
        )
    max_log_norm = check_options(
        network, target_norm, rtol, sliding_margin, active_tol, checkpoints_per_e,
        max_fit_length, max_evaluations, max_fit_checkpoints, direction_tol,
        max_log_norm,
    )  # fmt: skip
    started = time.perf_counter()
    fld = Field(network, X, y, loss)
    budget = _Budget(fld, max_evaluations)
    kinks = KinkState(network, X)

    with _naming_kinks(fld):
        # 1. Fit: arc-length clock until the loss threshold.
        fit_thetas, fit_steps = _fit(
            fld, theta0, loss, rtol, max_fit_length, budget, kinks
        )
        fit_thetas = _thin(fit_thetas, max_fit_checkpoints)
        s0 = float(np.log(np.linalg.norm(fit_thetas[-1])))
        s_target = float(np.log(target_norm))
        log.info("fit phase done: ||theta|| = %.4g, steps %s", math.exp(s0), fit_steps)

        if s_target <= s0:
            raise FlowError(
                f"target_norm={target_norm:.6g} is not beyond ||theta|| = "
                f"{math.exp(s0):.6g}, where the loss first fell below the threshold "
                "of Theorem 2.1: nothing of the far regime would be simulated, and "
                "the last point is no limit candidate. Choose a larger target_norm"
            )

        # 2. Far regime: log-norm clock, stiff and then sliding.
        phi0 = fit_thetas[-1] / np.linalg.norm(fit_thetas[-1])
        stop = _Stop(s_target, direction_tol, max_log_norm)
        far_s, far_phi, far_steps = _far(
            fld, phi0, s0, stop, sliding_margin, rtol, checkpoints_per_e,
            active_tol, budget, kinks,
        )  # fmt: skip

    # 3. The limit candidate: the final direction with its smallest margin at 1.
    log_norms = np.concatenate([np.log(np.linalg.norm(fit_thetas, axis=1)), far_s[1:]])
    thetas = np.concatenate([fit_thetas, np.exp(far_s[1:, None]) * far_phi[1:]])
    phase = ("fit",) * len(fit_thetas) + ("far",) * (len(far_s) - 1)
    direction = far_phi[-1] / np.linalg.norm(far_phi[-1])
    q_dir = network.unchecked_margin_jacobian(direction, X, y)[0]
    theta_tilde = direction / float(np.min(q_dir)) ** (1.0 / network.depth)
    return Trajectory(
        network=network,
        X=X,
        y=y,
        loss=loss,
        thetas=thetas,
        log_norms=log_norms,
        phase=phase,
        direction=direction,
        log_norm=float(far_s[-1]),
        theta_tilde=theta_tilde,
        jacobian_evaluations=fld.jacobian_evaluations,
        steps={
            **fit_steps,
            **far_steps,
            "kinks_pinned": kinks.pins,
            "kinks_released": kinks.releases,
            "kinks_crossed": kinks.crossings,
        },
        seconds=time.perf_counter() - started,
        settings={
            "target_norm": target_norm,
            "rtol": rtol,
            "sliding_margin": sliding_margin,
            "active_tol": active_tol,
            "direction_tol": direction_tol,
            "max_log_norm": max_log_norm,
        },
    )


def check_options(
    network, target_norm, rtol, sliding_margin, active_tol, checkpoints_per_e,
    max_fit_length, max_evaluations, max_fit_checkpoints, direction_tol, max_log_norm,
) -> float:  # fmt: skip
    """Validate `gradient_flow`'s options (shared with `invariants.batch`); returns
    max_log_norm with its default filled in."""
    if not (target_norm > 0 and math.isfinite(target_norm)):
        raise ValueError(f"target_norm={target_norm!r} must be positive and finite")
    # Below 1e-13 the stiff phase (run at rtol / 100) would ask for less than
    # rounding, and the steppers give up with a step-size error instead.
    if not (1e-13 <= rtol < 1e-2):
        raise ValueError(f"rtol={rtol!r} must be in [1e-13, 1e-2)")
    if not sliding_margin > 1:
        raise ValueError(f"sliding_margin={sliding_margin!r} must be > 1")
    if not (0 < active_tol < 1e-3):
        raise ValueError(f"active_tol={active_tol!r} must be in (0, 1e-3)")
    if not (isinstance(checkpoints_per_e, int) and checkpoints_per_e >= 1):
        raise ValueError(
            f"checkpoints_per_e={checkpoints_per_e!r} must be an integer >= 1"
        )
    if not (isinstance(max_fit_checkpoints, int) and max_fit_checkpoints >= 2):
        raise ValueError(
            f"max_fit_checkpoints={max_fit_checkpoints!r} must be an integer >= 2 "
            "(the start and the end of the fitting phase)"
        )
    if max_fit_length is not None and not (0 < max_fit_length < math.inf):
        raise ValueError(f"max_fit_length={max_fit_length!r} must be positive")
    if not (isinstance(max_evaluations, int) and max_evaluations >= 1):
        raise ValueError(f"max_evaluations={max_evaluations!r} must be an integer >= 1")
    if direction_tol is not None and not (0 < direction_tol < 1):
        raise ValueError(f"direction_tol={direction_tol!r} must be in (0, 1) or None")
    ceiling = max_log_norm_for(network)
    if max_log_norm is None:
        max_log_norm = ceiling
    if not (math.log(target_norm) <= max_log_norm <= ceiling):
        raise ValueError(
            f"max_log_norm={max_log_norm!r} must lie between log(target_norm) = "
            f"{math.log(target_norm):.6g} and {ceiling:.6g} (beyond it ||theta||^2 "
            f"or the margins of a depth-{network.depth} network overflow a double)"
        )
    return max_log_norm


def simulate(case: Case, **options) -> Trajectory:
    """`gradient_flow` on a `Case`."""
    return gradient_flow(
        case.network, case.X, case.y, case.theta0, case.loss, **options
    )


@contextmanager
def _naming_kinks(fld: Field):
    """When the integrator fails next to a ReLU kink, say which one: an unresolved
    kink, not the step size, is then the actionable cause."""
    try:
        yield
    except FlowError as exc:
        point = fld.last_point
        kink = None if point is None else find_kink(fld.network, point, fld.X)
        if kink is None:
            raise
        l, a, i, rel = kink
        raise KinkSlidingError(
            f"{exc}. The path was at a ReLU kink: the input to neuron {a} of layer "
            f"{l} on sample {i} is zero (|z| = {rel:.2g} relative)"
        ) from exc


class _Budget:
    def __init__(self, fld: Field, limit: int):
        self.fld, self.limit = fld, limit

    def check(self, where: str, progress: str) -> None:
        if self.fld.jacobian_evaluations > self.limit:
            raise FlowError(
                f"evaluation budget max_evaluations={self.limit} spent in the {where} "
                f"phase ({progress}); raise max_evaluations or inspect the case"
            )


def _fit(fld: Field, theta0, loss, rtol, max_length, budget, kinks):
    threshold = log_loss_threshold(loss)
    # Enter the far regime with a little room below the threshold, so that every
    # margin is positive with a margin to spare rather than by rounding.
    goal = threshold - 1e-3

    def current_log_loss(theta):
        return log_loss(
            fld.network.unchecked_margin_jacobian(theta, fld.X, fld.y)[0], loss
        )

    if current_log_loss(theta0) < goal:
        return theta0[None, :], {}
    if max_length is None:
        max_length = 100.0 * (1.0 + float(np.linalg.norm(theta0)))
    start = float(np.linalg.norm(theta0))

    def velocity(_, theta, slopes):
        # The origin is a critical point of every homogeneous network (m >= 2); a
        # path that shrinks towards it has no direction to converge to.
        size = float(np.linalg.norm(theta))
        if fld.m >= 2 and size < ORIGIN_TOL * start:
            raise StationaryPointError(
                f"GF converges to the origin (||theta|| = {size:.3g} from {start:.3g}):"
                " this initialisation never fits the data"
            )
        return fld.unit_velocity(theta, slopes)

    stats = {}
    threshold_event = Event("threshold", lambda _, th: current_log_loss(th) - goal, -1)
    try:
        try:
            _, theta, reached, recorded = _integrate(
                FIT_METHOD, velocity, 0.0, theta0, max_length, rtol, kinks, budget,
                "fit", events=[threshold_event], every_step=True, stats=stats,
            )  # fmt: skip
        except StationaryPointError:
            raise
        except FlowError as exc:
            if "budget" in str(exc):
                raise
            # LSODA's Newton iterations can fail for good where a neuron dies on a
            # kink; the explicit method has no Jacobian to get wrong there. Same
            # path, from the start, so the result does not depend on where LSODA
            # gave up.
            log.info("fit phase: %s; retrying with %s", exc, FIT_FALLBACK)
            kinks.reset()
            stats.clear()
            _, theta, reached, recorded = _integrate(
                FIT_FALLBACK, velocity, 0.0, theta0, max_length, rtol, kinks, budget,
                "fit", events=[threshold_event], every_step=True, stats=stats,
            )  # fmt: skip
    except FlowError as exc:
        # Say how far from fitting the path was: a sample whose margin sits at 0 is
        # the usual reason (every path from it to the output inactive).
        point = fld.last_point if fld.last_point is not None else theta0
        q = fld.network.unchecked_margin_jacobian(point, fld.X, fld.y)[0]
        stuck = np.flatnonzero(q <= 0).tolist()
        raise FlowError(
            f"{exc}. There: log L = {log_loss(q, loss):.6g} against the threshold "
            f"{threshold:.6g}; samples with margin <= 0: {stuck[:10]}"
        ) from None
    if reached is None:
        raise FlowError(
            f"the loss did not fall below the threshold of Theorem 2.1 within arc "
            f"length {max_length:.4g}: log L = {current_log_loss(theta):.6g} > "
            f"{threshold:.6g}. GF may converge to a point that does not fit the data "
            "(dead ReLUs), or need a longer max_fit_length"
        )
    thetas = [theta0] + [th for _, th in recorded] + [theta]
    return np.asarray(thetas), {"fit": stats.get("steps", 0)}


def _integrate(
    method, velocity, t0, y0, t_bound, rtol, kinks, budget, where, **options
):
    def check(t, y):
        budget.check(where, f"clock {t:.4g}")

    try:
        return integrate(
            method,
            velocity,
            t0,
            y0,
            t_bound,
            rtol=rtol,
            atol=rtol,
            kinks=kinks,
            budget=check,
            **options,
        )
    except IntegrationFailed as exc:
        raise FlowError(f"{where} phase failed: {exc}") from None


@dataclass
class _Stop:
    """Where the far regime ends: at `s_target`, or, with `direction_tol`, where the
    direction has stopped moving (and at `s_max` at the latest)."""

    s_target: float
    direction_tol: float | None
    s_max: float
    rate: float = math.nan

    def converged(self, ss, phis) -> bool:
        if self.direction_tol is None:
            return True
        if len(ss) >= 2 and ss[-1] > ss[-2]:
            a, b = (p / np.linalg.norm(p) for p in phis[-2:])
            self.rate = float(np.linalg.norm(b - a)) / (ss[-1] - ss[-2])
        return self.rate <= self.direction_tol

    def give_up(self, s1: float) -> None:
        raise FlowError(
            f"the direction still moves at {self.rate:.3g} per unit of log||theta|| "
            f"at log||theta|| = {s1:.6g} (max_log_norm), above direction_tol="
            f"{self.direction_tol:g}: GF converges too slowly here to be followed "
            "to its limit"
        )


def _far(fld, phi0, s0, stop, switch, rtol, per_e, active_tol, budget, kinks):
    s_target = stop.s_target
    count = max(2, math.ceil((s_target - s0) * per_e) + 1)
    grid = np.linspace(s0, s_target, count)
    m = fld.m

    # 2a. Finite sharpness: the exact field, stiff, with BDF.
    def sharp(s, phi):
        q = fld.network.unchecked_margin_jacobian(phi, fld.X, fld.y)[0]
        return m * s + math.log(max(float(np.min(q)), 1e-300)) - math.log(switch)

    stats = {}
    if sharp(s0, phi0) >= 0:
        # Margins already past the switch (huge data or theta0): slide from the start.
        s1, phi1, reached, recorded = s0, phi0, "switch", []
    else:
        # Without a convergence test the stiff phase may end at the target; with one
        # it must reach the sliding phase, whose rate is the one measured.
        bound = s_target if stop.direction_tol is None else stop.s_max
        s1, phi1, reached, recorded = _integrate(
            STIFF_METHOD, fld.log_norm_velocity, s0, phi0, bound,
            rtol * STIFF_RTOL_FACTOR, kinks, budget, "stiff",
            jac=fld.log_norm_jacobian, events=[Event("switch", sharp, +1)],
            grid=_extend(grid, s0, bound, per_e), stats=stats,
        )  # fmt: skip
    ss = [s0] + [t for t, _ in recorded]
    phis = [phi0] + [y for _, y in recorded]
    steps = {"stiff": stats.get("steps", 0)}
    if reached is None:
        if stop.direction_tol is not None:
            stop.give_up(s1)
        return np.asarray(ss), np.asarray(phis), steps

    # 2b. Past the switch: the sliding limit, smooth and non-stiff. The active set is
    # frozen over each segment (a set re-read at every stage would chatter at the
    # scale of the step error) and a segment ends when an outside margin comes
    # within the boundary layer of the smallest active one.
    if ss[-1] < s1:
        ss.append(s1)
        phis.append(phi1)
    steps["switch_log_norm"] = s1
    stats = {}
    active = None
    segments = 0
    while s1 < s_target or not stop.converged(ss, phis):
        if s1 >= stop.s_max:
            stop.give_up(s1)
        end = s_target if s1 < s_target else stop.s_max
        s1, phi1, active, recorded = _slide_segment(
            fld, s1, phi1, end, _extend(grid, s1, end, per_e), rtol, active_tol,
            active, budget, kinks, stats,
        )  # fmt: skip
        ss.extend(t for t, _ in recorded)
        phis.extend(y for _, y in recorded)
        segments += 1
    if ss[-1] < s1:
        ss.append(s1)
        phis.append(phi1)
    steps.update(sliding=stats.get("steps", 0), segments=segments)
    if stop.direction_tol is not None:
        steps["direction_rate"] = stop.rate
    return np.asarray(ss), np.asarray(phis), steps


def _extend(grid, s1, end, per_e):
    """The checkpoint grid, continued past its last point at the same density."""
    if end <= grid[-1]:
        return grid
    extra = grid[-1] + np.arange(1, math.ceil((end - grid[-1]) * per_e) + 1) / per_e
    return np.concatenate([grid, np.minimum(extra, end)])


def _slide_segment(
    fld, s1, phi1, s_target, grid, rtol, active_tol, previous, budget, kinks, stats
):
    q1 = fld.network.unchecked_margin_jacobian(phi1, fld.X, fld.y)[0]
    active = fld.active_set(s1, q1, active_tol, previous)
    outside = np.setdiff1d(np.arange(q1.size), active)

    def velocity(s, phi, slopes):
        return fld.sliding_velocity(phi, active, slopes)

    def joins(s, phi):
        q = fld.network.unchecked_margin_jacobian(phi, fld.X, fld.y)[0]
        q_min = float(np.min(q[active]))
        return float(np.min(q[outside]) - q_min) - fld.layer_width(s, q_min, active_tol)

    events = [Event("joins", joins, -1)] if outside.size else []
    # Re-read the active set at least once per unit of log-norm, so margins that
    # left the boundary layer stop counting.
    end = min(s_target, s1 + 1.0)
    s_end, phi_end, _, recorded = _integrate(
        SLIDING_METHOD, velocity, s1, phi1, end, rtol, kinks, budget, "sliding",
        events=events, grid=grid, stats=stats,
    )  # fmt: skip
    return s_end, phi_end, active, recorded


def _thin(thetas: np.ndarray, most: int) -> np.ndarray:
    if len(thetas) <= most:
        return thetas
    keep = np.unique(np.linspace(0, len(thetas) - 1, most).round().astype(int))
    return thetas[keep]
