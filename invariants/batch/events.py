"""Where a batch step ends early: the phase's event and ReLU kinks, per row.

An accepted step whose event function or some hidden pre-activation changes sign
is taken again, shortened to the secant estimate of the first crossing
(`landing`); the crossing is handled at the end of that step. At a kink the
field on both sides decides, as in the single run's driver: if GF is pushed onto
the kink from both sides (it would slide along it, pinned), the row is handed
off; otherwise the path crosses and the row goes on. A pre-activation that ends
a step within NEAR_TOL of its scale gets the same test.
"""

from __future__ import annotations

import numpy as np

from invariants import kinks as kinkmod
from invariants.field import Field

__all__ = ["EVENT", "KINK", "screen"]

EVENT, KINK = 0, 1
# As `invariants.driver.NEAR_TOL`.
NEAR_TOL = 1e-9
MIN_FRACTION = 1e-6


def screen(rows, idx, velocity, t0, h, y1, g0, g1, crossed, hidden):
    """For accepted steps of rows `idx`: returns (keep, fire, z1) where `keep`
    marks steps that stand (not taken again, not handed off), `fire` those whose
    phase event happens at their end, and z1 the pre-activations to compare the
    next step against (0 for a kink just crossed, so its sign change is not seen
    twice). `velocity(row, t, state, slopes)` is the phase's single-run field."""
    z0 = rows.z[idx]
    z1, scale = hidden
    z1 = z1.copy()
    net = rows.fld.network
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
    landing = rows.landing[idx]
    kind = rows.land_kind[idx]

    # 1. A crossing inside a free step: take the step again, up to the first one.
    redo = ~landing & (crossed | np.isfinite(frac_kink))
    frac = np.clip(np.nan_to_num(np.minimum(frac_event, frac_kink)), MIN_FRACTION, 1)
    sel = idx[redo]
    rows.h[sel] = frac[redo] * h[redo]
    rows.landing[sel] = True
    rows.land_kind[sel] = np.where(frac_kink < frac_event, KINK, EVENT)[redo]
    rows.landing[idx[landing]] = False

    # 2. Landed: the event fires, or the kink is crossed or handed off.
    fire = landing & ((kind == EVENT) | crossed)
    handed = np.zeros(idx.size, bool)
    bad = landing & (kind == EVENT) & np.isfinite(frac_kink)
    handed |= bad  # a kink between the step's start and its event
    check = (landing & (kind == KINK)) | (~landing & ~redo & near.any(axis=1))
    for k in np.flatnonzero(check & ~bad):
        js = np.flatnonzero(flipped[k] | near[k])
        r = idx[k]
        if _attracting(rows, r, velocity, t0[k] + h[k], y1[k], js):
            handed[k] = True
        else:
            rows.crossings[r] += int(flipped[k].any() or landing[k])
            z1[k, js] = 0.0
    rows.hand_off(idx[handed], "kink")
    return ~redo & ~handed, fire & ~handed, z1


def _attracting(rows, r, velocity, t, state, js) -> bool:
    """Whether GF is pushed onto any of the kinks `js` from both sides at `state`
    (`invariants.driver._attracting` with nothing pinned)."""
    net = rows.fld.network
    fld = rows.single_field(r)
    before = fld.jacobian_evaluations
    try:
        v = velocity(fld, r, t, state, None)
        for j in js:
            kink = rows.kinks[j]

            def vel(st, sl, fld=fld):
                return velocity(fld, r, t, st, sl)

            below, above = kinkmod.crossing(net, fld.X, state, [], [], kink, vel)
            _, Dz = net.preactivation_gradients(state, fld.X, [kink], None)
            tiny = 1e-12 * float(np.linalg.norm(Dz) * np.linalg.norm(v))
            holds = below > -tiny and above < tiny
            if not np.isfinite(below + above) or (
                holds and (below > tiny or above < -tiny)
            ):
                return True
        return False
    except Exception:  # noqa: BLE001 - the single run will say what it is
        return True
    finally:
        rows.fld.evaluations[r] += fld.jacobian_evaluations - before


def single_field(fld, r) -> Field:
    X, y = fld.data(np.array([r]))
    X, y = (X[0], y[0]) if fld.per_row else (X, y)
    return Field(fld.network, X, y, fld.loss)
