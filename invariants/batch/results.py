"""A finished batch row as the single run's `Trajectory`."""

from __future__ import annotations

import math

import numpy as np

from invariants.trajectory import Trajectory

__all__ = ["trajectory"]

SETTINGS = (
    "target_norm", "rtol", "sliding_margin", "active_tol", "direction_tol",
    "max_log_norm",
)  # fmt: skip


def trajectory(rows, r):
    """The single run's Trajectory, assembled from this row's checkpoints."""
    fld, opts = rows.fld, rows.opts
    X, y = fld.data(np.array([r]))
    X, y = (X[0], y[0]) if fld.per_row else (X, y)
    ss, phis = list(rows.ss[r]), list(rows.phis[r])
    if ss[-1] < rows.t[r]:
        ss.append(float(rows.t[r]))
        phis.append(rows.y[r].copy())
    far_s, far_phi = np.asarray(ss), np.asarray(phis)
    fit = np.asarray(rows.fit[r])
    net = fld.network
    direction = far_phi[-1] / np.linalg.norm(far_phi[-1])
    q_dir = net.unchecked_margin_jacobian(direction, X, y)[0]
    steps = {"stiff": int(rows.steps[r, 1])}
    if len(fit) > 1:
        steps["fit"] = int(rows.steps[r, 0])
    if not math.isnan(rows.switch[r]):
        steps.update(
            switch_log_norm=float(rows.switch[r]),
            sliding=int(rows.steps[r, 2]),
            segments=int(rows.segments[r]),
        )
        if opts["direction_tol"] is not None:
            steps["direction_rate"] = float(rows.rate[r])
    steps.update(
        kinks_pinned=int(rows.pins.pins[r]),
        kinks_released=int(rows.pins.releases[r]),
        kinks_crossed=int(rows.crossings[r]),
        batch=True,
    )
    return Trajectory(
        network=net,
        X=X,
        y=y,
        loss=fld.loss,
        thetas=np.concatenate([fit, np.exp(far_s[1:, None]) * far_phi[1:]]),
        log_norms=np.concatenate([np.log(np.linalg.norm(fit, axis=1)), far_s[1:]]),
        phase=("fit",) * len(fit) + ("far",) * (len(far_s) - 1),
        direction=direction,
        log_norm=float(far_s[-1]),
        theta_tilde=direction / float(np.min(q_dir)) ** (1.0 / net.depth),
        jacobian_evaluations=int(fld.evaluations[r]),
        steps=steps,
        settings={k: opts[k] for k in SETTINGS},
    )
