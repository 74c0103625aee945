"""Where a batch step ends early: the phase's event and ReLU kinks, per row.

An accepted step whose event function or some hidden pre-activation changes sign,
or on which a pinned kink's slope leaves [0, 1], is taken again, shortened to the
secant estimate of the first crossing (`landing`); the crossing is handled at the
end of that step. At a kink the field on both sides decides, as in the single
run's driver: if GF is pushed onto the kink from both sides, it is pinned
(`invariants.batch.pins`) or, where the batch cannot pin it, the row is handed
off; otherwise the path crosses and the row goes on. A pre-activation that ends a
step within NEAR_TOL of its scale gets the same test. A pinned kink whose slope
left [0, 1] is released, and its next sign change is not a crossing (the single
run's `just_handled`).
"""

from __future__ import annotations

import numpy as np

from invariants import kinks as kinkmod
from invariants.batch import pins as pins_mod
from invariants.field import Field, StationaryPointError

__all__ = ["EVENT", "KINK", "RELEASE", "screen"]

EVENT, KINK, RELEASE = 0, 1, 2
# As `invariants.driver.NEAR_TOL`.
NEAR_TOL = 1e-9
MIN_FRACTION = 1e-6
# As `rows.MIN_STEP`: a step shortened below this against the clock is handed off.
MIN_STEP = 1e-13


def screen(rows, idx, velocity, t0, h, y1, g0, g1, crossed, hidden, alpha=None):
    """For accepted steps of rows `idx`: returns (keep, fire, z1, changed) where
    `keep` marks steps that stand (not taken again, not handed off), `fire` those
    whose phase event happens at their end, z1 the pre-activations to compare the
    next step against (0 for a kink just crossed, released or pinned, so its sign
    change is not seen twice) and `changed` the rows that pinned or released a kink
    at the step's end (their field there must be evaluated again).
    `velocity(row, t, state, slopes)` is the phase's single-run field; `alpha`,
    (slopes at the step's start, at its end) for the rows' pinned kinks, is given
    by the phases that pin (see `invariants.batch.pins`)."""
    pins = rows.pins
    z0 = rows.z[idx].copy()
    z1, scale = hidden
    z1 = z1.copy()
    net = rows.fld.network
    slot = pins.slot[idx]
    for k in range(slot.shape[1]):
        # A pinned kink is not watched: it sits at zero, either side by rounding.
        b = np.flatnonzero(slot[:, k] >= 0)
        z0[b, slot[b, k]] = 0.0
        z1[b, slot[b, k]] = 0.0
    relu = net.activation == "relu" and net.depth >= 2 and z1.shape[1] > 0
    if relu:
        flipped = (np.sign(z0) != np.sign(z1)) & (z0 != 0)
        near = (np.abs(z1) <= NEAR_TOL * scale) & (z0 != 0)
        with np.errstate(all="ignore"):
            frac_kink = np.where(flipped, z0 / (z0 - z1), np.inf).min(axis=1)
    else:
        flipped = near = np.zeros(z1.shape, bool)
        frac_kink = np.full(idx.size, np.inf)
    with np.errstate(all="ignore"):
        frac_event = np.where(crossed, g0 / (g0 - g1), np.inf)
    # A pinned kink's slope leaving [0, 1]: the secant estimate of where it does.
    frac_rel = np.full(idx.size, np.inf)
    leaving = np.zeros(slot.shape, bool)
    if alpha is not None:
        a0, a1 = alpha
        leaving = (slot >= 0) & ~(
            (a1 >= -pins_mod.RELEASE_TOL) & (a1 <= 1 + pins_mod.RELEASE_TOL)
        )
        bound = np.where(a1 < 0.5, 0.0, 1.0)
        with np.errstate(all="ignore"):
            fr = np.where(leaving, (a0 - bound) / (a0 - a1), np.inf)
        fr = np.where(leaving & ~np.isfinite(fr), MIN_FRACTION, fr)
        frac_rel = fr.min(axis=1)
    released = np.isfinite(frac_rel)
    landing = rows.landing[idx]
    kind = rows.land_kind[idx]

    # 1. A crossing inside a free step: take the step again, up to the first one.
    first = np.minimum(np.minimum(frac_event, frac_kink), frac_rel)
    redo = ~landing & np.isfinite(first)
    frac = np.clip(np.nan_to_num(first), MIN_FRACTION, 1)
    short = redo & (frac * h < MIN_STEP * np.maximum(1.0, np.abs(t0)))
    # A slope whose bound the secant puts at the step's start is at it there (a
    # landing that stopped a rounding error short): release it at the start and
    # start the phase again from there, with the field of the released kink.
    restart = short & (frac_rel <= np.minimum(frac_event, frac_kink))
    for k in np.flatnonzero(restart):
        r = idx[k]
        at_start = fr[k] * h[k] < MIN_STEP * max(1.0, abs(t0[k]))
        for s_ in np.flatnonzero(leaving[k] & at_start):
            # Its z, rounding about 0, is not watched: its next sign change is
            # not a crossing.
            rows.z[r, pins.release(r, s_)] = 0.0
        rows.refresh[r] = True
    short &= ~restart
    redo &= ~short & ~restart
    stands = ~redo & ~restart & ~short
    sel = idx[redo]
    rows.h[sel] = frac[redo] * h[redo]
    rows.landing[sel] = True
    what = np.where(
        frac_rel <= np.minimum(frac_event, frac_kink),
        RELEASE,
        np.where(frac_kink < frac_event, KINK, EVENT),
    )
    rows.land_kind[sel] = what[redo]
    rows.landing[idx[landing]] = False

    # 2. Landed: the event fires, the kink is crossed, pinned or handed off, the
    # pinned kink released.
    fire = landing & ((kind == EVENT) | crossed)
    handed = np.zeros(idx.size, bool)
    changed = np.zeros(idx.size, bool)
    bad = landing & (kind == EVENT) & np.isfinite(frac_kink)
    bad |= landing & (kind != RELEASE) & released
    handed |= bad  # a kink between the step's start and its event
    if short.any():
        rows.hand_off(idx[short], "step size")
    for k in np.flatnonzero(landing & (kind == RELEASE) & ~bad):
        r = idx[k]
        # The secant may land short of the bound (a slope that meets it
        # tangentially): then the kink is still held, and the next step looks
        # again. Releasing it there left a kink that still attracted from the
        # side it was released to, and the explicit steps crawled beside it.
        out = np.flatnonzero(leaving[k])
        for s_ in out:
            j = pins.release(r, s_)
            z1[k, j] = 0.0
        changed[k] = bool(out.size)
    check = (landing & (kind == KINK)) | (~landing & stands & near.any(axis=1))
    for k in np.flatnonzero(check & ~bad):
        js = np.flatnonzero(flipped[k] | near[k])
        r = idx[k]
        pinned = pins.pinned(r)
        pulled = _attracting(rows, r, velocity, t0[k] + h[k], y1[k], js, pinned)
        if pulled is None or len(pulled) > 1:
            handed[k] = True
        elif pulled:
            pulled = [pulled[0][0]]
            cols = None if alpha is None else pins.collapsing(r, pulled[0])
            if cols is not None and not pins.can_pin(r, pulled[0]):
                # The neuron's own weights are held at the origin: let it go
                # (see `invariants.batch.pins`). Every input to it is now 0.
                y1[k, pins.collapse(r, pulled[0])] = 0.0
                z1[k, pins.same_neuron(pulled[0])] = 0.0
                changed[k] = True
                continue
            if alpha is None or not pins.can_pin(r, pulled[0]):
                handed[k] = True
                continue
            pins.pin(r, pulled[0])
            z1[k, js] = 0.0
            rows.crossings[r] += int(len(js) > 1)
            changed[k] = True
        else:
            rows.crossings[r] += int(flipped[k].any() or landing[k])
            z1[k, js] = 0.0
    if alpha is not None:
        held = stands & ~handed & np.any(pins.slot[idx] >= 0, axis=1)
        for k in np.flatnonzero(held):
            r = idx[k]
            for j in pins.shrinking(r, rows.y[r], y1[k]):
                # Sliding along a kink into the origin of the neuron's own
                # weights: they reach it in finite time, and the neuron's other
                # inputs, of the size of those weights, change sign inside every
                # step that would cross it (the step control fails there). Let
                # it go, as when a second kink of its spans them.
                y1[k, pins.collapse(r, j)] = 0.0
                z1[k, pins.same_neuron(j)] = 0.0
                changed[k] = True
    rows.hand_off(idx[handed], "kink")
    keep = stands & ~handed
    return keep, fire & keep, z1, changed & keep


def _attracting(rows, r, velocity, t, state, js, pinned=((), ())):
    """Which of the kinks `js` GF is pushed onto from both sides at `state`, the
    row's pinned kinks at their slopes (`invariants.driver._attracting`), each as
    (kink, estimated slope); None when the field cannot be evaluated there."""
    net = rows.fld.network
    fld = rows.single_field(r)
    before = fld.jacobian_evaluations
    held, alpha = list(pinned[0]), np.asarray(pinned[1], float)
    slopes = dict(zip(held, alpha)) if held else None
    pulled = []
    try:
        v = velocity(fld, r, t, state, slopes)
        for j in js:
            kink = rows.kinks[j]

            def vel(st, sl, fld=fld):
                return velocity(fld, r, t, st, sl)

            below, above = kinkmod.crossing(net, fld.X, state, held, alpha, kink, vel)
            _, Dz = net.preactivation_gradients(state, fld.X, [kink], slopes)
            tiny = 1e-12 * float(np.linalg.norm(Dz) * np.linalg.norm(v))
            holds = below > -tiny and above < tiny
            if not np.isfinite(below + above):
                return None
            if holds and (below > tiny or above < -tiny):
                # The slope that holds it, were the others' fixed: the rate is
                # affine in it at depth 2.
                pulled.append((int(j), below / (below - above)))
        return pulled
    except StationaryPointError as exc:
        # The fit's field is stationary here: so is the single run's, which
        # raises this at any evaluation of its field.
        rows.finish(r, StationaryPointError(f"{exc} (batch, at a kink)"))
        return None
    except Exception:  # noqa: BLE001 - the single run will say what it is
        return None
    finally:
        rows.fld.evaluations[r] += fld.jacobian_evaluations - before


def single_field(fld, r) -> Field:
    X, y = fld.data(np.array([r]))
    X, y = (X[0], y[0]) if fld.per_row else (X, y)
    return Field(fld.network, X, y, fld.loss)
