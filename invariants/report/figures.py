"""PNG figures for the report, drawn with matplotlib's object API (no pyplot, no
global backend state: the Agg canvas is attached per figure).

matplotlib is optional (the `report` extra); `available()` says whether it can be
imported, and nothing here is imported until a figure is drawn.
"""

from __future__ import annotations

import numpy as np

__all__ = ["INSTALL_HINT", "available", "construction_figure", "summary_figure"]

INSTALL_HINT = 'pip install "margin-invariants[report]"'
# Relative drifts of exactly 0 (a law the integrator keeps to the last bit) still
# need a place on a log axis.
LOG_FLOOR = 1e-18
_LAYER_COLOURS = ("tab:blue", "tab:orange", "tab:green", "tab:purple", "tab:brown")


def available() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def construction_figure(reproduction, path) -> None:
    """Three panels for one construction: (a) data and limit neurons, (b) normalised
    margin and balance drift along the path, (c) the witness direction."""
    fig = _figure(15.0, 4.4)
    a, b, c = fig.subplots(1, 3)
    con = reproduction.construction
    fig.suptitle(f"{con.name} ({con.theorem})", fontsize=12)
    traj = reproduction.trajectory
    theta = con.limit if traj is None else traj.theta_tilde
    _neurons(a, con.network, con.case.X, con.case.y, theta)
    if traj is not None:
        _path(b, traj)
    else:
        b.text(0.5, 0.5, "no trajectory: the flow failed", ha="center")
    _witness(c, reproduction, theta)
    fig.savefig(path)


def _neurons(ax, net, X, y, theta) -> None:
    """Each first-layer neuron w_j drawn from the origin, scaled by its output
    weight (signed at depth 2, the outgoing norm deeper), the longest as long as
    the farthest point; ReLU kinks w_j.x = 0 dashed. Inputs of dimension d != 2
    are projected on the top two singular directions of the data and the neurons
    together, and the title says so."""
    Ws = net.weight_matrices(theta)
    out = Ws[1][0] if net.depth == 2 else np.linalg.norm(Ws[1], axis=0)
    arrows = Ws[0] * out[:, None]
    # Only the neurons' directions and relative sizes mean anything: theta~ is
    # defined up to scale.
    longest = np.linalg.norm(arrows, axis=1).max()
    if longest > 0:
        arrows = arrows * (np.linalg.norm(X, axis=1).max() / longest)
    d = X.shape[1]
    if d == 2:
        basis, title = np.eye(2), "data and limit neurons w_j x output weight"
    else:
        _, _, vt = np.linalg.svd(np.vstack([X, arrows]), full_matrices=False)
        basis = vt[:2].T if vt.shape[0] >= 2 else np.eye(d)[:, :2]
        title = f"d = {d}: projection on the top 2 singular directions"
    P, A = X @ basis, arrows @ basis
    for label, marker, colour in ((1, "o", "tab:blue"), (-1, "s", "tab:red")):
        sel = y == label
        if np.any(sel):
            ax.scatter(
                *P[sel].T, marker=marker, s=60, c=colour, label=f"y = {label:+d}"
            )
    lim = 1.25 * max(np.abs(P).max(), np.abs(A).max(), 1e-12)
    # A neuron GF leaves behind (Theorem 3.2's frozen one) is ~1e-9 of theta~.
    dead = np.linalg.norm(arrows, axis=1) <= 1e-6 * np.linalg.norm(arrows)
    for j, (arrow, w) in enumerate(zip(A, Ws[0] @ basis), start=1):
        colour = _LAYER_COLOURS[(j - 1) % len(_LAYER_COLOURS)]
        if dead[j - 1]:
            ax.annotate(
                f"neuron {j} ~ 0",
                (0, 0),
                xytext=(5, -12 * j),
                textcoords="offset points",
                fontsize=8,
                color=colour,
            )
            continue
        ax.annotate(
            "",
            xy=arrow,
            xytext=(0, 0),
            arrowprops={"arrowstyle": "->", "color": colour, "lw": 2},
        )
        ax.annotate(f"{j}", arrow, fontsize=9, color=colour)
        if net.activation == "relu" and d == 2 and np.any(w):
            normal = np.array([-w[1], w[0]]) / np.linalg.norm(w)
            ax.plot(*np.outer([-lim, lim], normal).T, ls="--", lw=0.8, c=colour)
    ax.set(xlim=(-lim, lim), ylim=(-lim, lim), aspect="equal", title=title)
    ax.axhline(0, c="0.85", lw=0.5)
    ax.axvline(0, c="0.85", lw=0.5)
    ax.legend(loc="lower right", fontsize=8)
    ax.title.set_fontsize(9)


def _path(ax, traj) -> None:
    from invariants.balance import TOLERANCES, balance_drifts

    s = np.asarray(traj.log_norms)
    margins = traj.normalized_margins()
    ax.plot(s, margins, c="tab:blue")
    # From 0, so that a flat line (a flow started on its limit) reads as flat.
    top = max(float(np.max(margins)), 0.0) * 1.15 or 1.0
    ax.set(xlabel="log ||theta||", ylabel="min_i q_i / ||theta||^m")
    ax.set_ylim(min(float(np.min(margins)), 0.0), top)
    ax.yaxis.label.set_color("tab:blue")
    ax.set_title("normalised margin and balance drift along GF", fontsize=9)
    drifts = balance_drifts(traj.network, traj.thetas)
    if drifts:
        worst = np.max([d.relative_drifts for d in drifts.values()], axis=0)
        twin = ax.twinx()
        rtol = TOLERANCES["gradient_flow"].rtol
        twin.semilogy(s, np.maximum(worst, LOG_FLOOR), c="tab:red", lw=1)
        twin.axhline(rtol, c="tab:red", ls="--", lw=0.8)
        twin.set_ylim(LOG_FLOOR / 10, max(rtol, float(np.max(worst))) * 100)
        twin.set_ylabel("largest relative drift (Lemmas C.1-C.3)", color="tab:red")


def _witness(ax, reproduction, theta) -> None:
    """theta' - theta~ per parameter, each normalised to length 1: the search's
    witness against the flow's limit and the paper's against the closed form."""
    con = reproduction.construction
    bars = []
    if reproduction.witness is not None:
        w = reproduction.witness
        bars.append(("search", np.subtract(w.theta, w.theta_tilde)))
    if reproduction.paper_witness is not None:
        bars.append(("paper", np.asarray(reproduction.paper_witness) - con.limit))
    if not bars:
        ax.text(0.5, 0.5, "no witness", ha="center")
        return
    index = np.arange(con.network.num_parameters)
    width = 0.8 / len(bars)
    for k, (label, delta) in enumerate(bars):
        unit = delta / max(np.linalg.norm(delta), 1e-300)
        ax.bar(
            index + k * width,
            unit,
            width,
            label=label,
            color=f"C{k}",
            edgecolor="k",
            lw=0.3,
        )
    for layer, sl in enumerate(con.network.layer_slices, start=1):
        if layer > 1:
            ax.axvline(sl.start - 0.5 + 0.4, c="0.5", lw=0.8, ls=":")
        ax.annotate(
            f"layer {layer}",
            ((sl.start + sl.stop - 1) / 2, 1.02),
            xycoords=("data", "axes fraction"),
            ha="center",
            fontsize=8,
        )
    ax.axhline(0, c="k", lw=0.5)
    if index.size <= 24:
        ax.set_xticks(index)
    ax.set(xlabel="parameter index (theta order)", ylabel="(theta' - theta~) / norm")
    gap = reproduction.witness_gap
    title = "witness direction" + (f": relative gap {gap:.1e}" if gap else "")
    ax.set_title(title, fontsize=9, pad=14)
    ax.legend(fontsize=8)


def summary_figure(outcomes, path) -> None:
    """Every measured case of every positive row, as measured / tolerance on a log
    axis: left of the line passes."""
    rows = [o for o in outcomes if o.sign == "+" and o.measurements]
    fig = _figure(9.0, 0.45 * len(rows) + 1.4)
    ax = fig.subplots()
    for k, o in enumerate(rows):
        ratios = np.array([m.ratio for m in o.measurements], dtype=float)
        ratios = np.clip(np.nan_to_num(ratios, posinf=1e6), LOG_FLOOR, 1e6)
        ok = np.array([m.ok for m in o.measurements])
        ax.scatter(ratios[ok], np.full(ok.sum(), k), s=14, c="tab:green", alpha=0.7)
        ax.scatter(ratios[~ok], np.full((~ok).sum(), k), s=30, c="tab:red", marker="x")
    ax.axvline(1.0, c="k", lw=1)
    ax.annotate(" bound", (1.0, 1.0), xycoords=("data", "axes fraction"), va="top")
    ax.set_xscale("log")
    ax.set_yticks(range(len(rows)), [f"{o.title} ({o.quantity})" for o in rows])
    ax.invert_yaxis()
    ax.set_xlabel(f"measured / tolerance (values <= 0 shown at {LOG_FLOOR:.0e})")
    ax.set_title("positive rows: every generated case against its bound", fontsize=10)
    fig.savefig(path)
