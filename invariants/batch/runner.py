"""The batch state machine: one array step per phase per sweep, until every row is
done or handed off (`invariants.batch.rows` says when a row leaves). The slowest
rows of a batch stay in it to the end: on Theorem 3.2's sweep (1000 rows) its last
1% cost the batch about 8 s more, where a single run of one of the sweep's slow
rows takes 6-16 s.
"""

from __future__ import annotations

import numpy as np

from invariants.batch.far import far_start, stiff_step
from invariants.batch.fit import fit_start, fit_step
from invariants.batch.rows import FIT, OUT, SLIDE, STIFF, Rows
from invariants.batch.sliding import slide_start, slide_step

__all__ = ["OUT", "Rows", "run_rows"]


def run_rows(rows: Rows) -> None:
    """Advance every row until it is done or handed off."""
    stepping = {FIT: fit_step, STIFF: stiff_step, SLIDE: slide_step}
    starting = {FIT: fit_start, STIFF: far_start, SLIDE: slide_start}
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
