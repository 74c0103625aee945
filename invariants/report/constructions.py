"""The negative rows: each of the paper's constructions reproduced end to end.

For a construction of `invariants.cases` the report checks, in order, that

1. gradient flow from the proof's initialisation reaches the closed-form limit
   (`invariants.flow.gradient_flow`, direction converged to 1e-9);
2. the limit is a KKT point of Problem 2 (`invariants.kkt`, Theorem 2.1);
3. the paper's own witness (or better point) is feasible and shorter, in exact
   arithmetic (`invariants.exact_check`);
4. the certificates say what the paper says (`invariants.certify.optimality`): not
   a local optimum, or a local optimum that is not global, for the whole network or
   for one layer's Problem 4;
5. a seeded search that does not know the paper's witness finds one, and it
   verifies (`invariants.witness`);
6. the regime classifier promises nothing that witness refutes
   (`invariants.regimes.classify`).

A step that fails makes the row `failed`: the run contradicts the paper or the
library.
"""

from __future__ import annotations

import math

import numpy as np

from invariants.report.outcome import Reproduction, Step

__all__ = ["claim_of", "reproduce"]

# tests/test_constructions.py: the suite's contract with the simulator.
DIRECTION_TOL = 1e-8
FLOW_DIRECTION_TOL = 1e-9


def claim_of(c) -> tuple[str, int | None]:
    """What the paper shows with construction `c`: ("local" | "global", layer).

    "local": the limit is not a local optimum; "global": it is a local optimum but
    not a global one. `layer` is the layer whose Problem 4 the claim is about
    (Theorems 5.3 and 5.4), None for Problem 2 itself."""
    per_layer = c.theorem in ("Theorem 5.3", "Theorem 5.4")
    layer = c.changed_layers[0] if per_layer and c.changed_layers else None
    return ("local" if c.witness is not None else "global"), layer


def reproduce(c, *, seed: int = 0) -> Reproduction:
    """Run the six steps of the module on construction `c` (see there)."""
    from invariants.flow import FlowError, StationaryPointError, gradient_flow

    out = Reproduction(construction=c)
    k = c.case
    try:
        traj = gradient_flow(
            k.network, k.X, k.y, k.theta0, k.loss, direction_tol=FLOW_DIRECTION_TOL
        )
    except (FlowError, StationaryPointError) as exc:
        out.steps.append(Step("flow reaches the limit", False, _line(exc)))
        return out
    out.trajectory = traj
    theta = traj.theta_tilde

    # 1. The closed-form limit.
    direction = traj.direction / np.linalg.norm(traj.direction)
    error = float(np.linalg.norm(direction - c.direction))
    out.direction_error = error
    out.steps.append(
        Step(
            "flow reaches the closed-form limit",
            error <= DIRECTION_TOL,
            f"||d - d*|| = {error:.1e} at log||theta|| = {traj.log_norm:.0f} "
            f"(<= {DIRECTION_TOL:.0e}); ||theta~||^2 = {traj.norm_squared:.9g}, "
            f"paper {c.norm_squared:.9g}",
        )
    )

    # 2. Theorem 2.1.
    from invariants.kkt import KKT_TOL, kkt_point

    residual = kkt_point(k.network, k.X, k.y, theta).residual
    out.steps.append(
        Step(
            "the limit is a KKT point",
            residual <= KKT_TOL,
            f"KKT residual {residual:.1e} (<= {KKT_TOL:.0e})",
        )
    )

    kind, layer = claim_of(c)
    out.steps.append(_paper_witness(out, c, kind, layer))
    out.steps.append(_certificates(c, theta, kind, layer))
    out.steps.append(_search(out, c, theta, kind, layer, seed))
    out.steps.append(_classifier(out, c, theta, kind, layer))
    return out


def _paper_witness(out, c, kind, layer) -> Step:
    """Step 3: the paper's theta' (at the largest eps it allows) or better point,
    grown until every margin is >= 1 exactly, against the closed-form limit."""
    from invariants.exact_check import exactly_feasible, verify_witness

    net, X, y = c.network, c.case.X, c.case.y
    if kind == "local":
        eps = c.max_eps
        proposed, radius = c.witness(eps), 3.0 * math.sqrt(eps)
        what = f"paper's witness (eps = {eps:g})"
    else:
        proposed, radius, what = c.better_point, None, "paper's better point"
    try:
        point = exactly_feasible(net, X, y, proposed, layer=layer)
    except ValueError as exc:
        return Step(f"{what} verifies", False, _line(exc))
    report = verify_witness(net, X, y, c.limit, point, radius=radius, layer=layer)
    out.paper_witness = point
    detail = (
        f"||theta'||^2 = {report['norm_squared']:.9g} < "
        f"{report['limit_norm_squared']:.9g} "
        f"(relative gap {report['relative_gap']:.1e}), "
        f"distance {report['distance']:.2e}, changes layers {report['changed_layers']}"
    )
    if report["reasons"]:
        detail += "; " + "; ".join(report["reasons"])
    return Step(f"{what} verifies in exact arithmetic", report["verified"], detail)


def _certificates(c, theta, kind, layer) -> Step:
    """Step 4: `certify.optimality`, read for the claim at hand."""
    from invariants.certify import optimality

    verdict = optimality(c.network, c.case.X, c.case.y, theta)
    layers = {e["layer"]: e for e in verdict.layers}
    entry = layers.get(layer, {}) if layer is not None else {}
    holds = entry.get("kind") == "certificate" and entry.get("holds")
    if layer is None and kind == "local":
        ok, want = verdict.local is False, "not a local optimum"
    elif layer is None:
        ok = verdict.local is True and verdict.global_ is False
        want = "a local optimum, not a global one"
    elif kind == "local":
        ok, want = not holds, f"no certificate for layer {layer}"
    else:
        ok = bool(holds) and entry.get("claim") == "local"
        want = f"layer {layer} certified locally optimal only"
    per_layer = ", ".join(
        f"layer {e['layer']}: "
        + (f"{e['claim']} ({e['theorem']})" if e.get("holds") else e["kind"])
        for e in verdict.layers
    )
    detail = (
        f"certify.optimality: local={verdict.local}, global={verdict.global_}; "
        f"{per_layer}; paper: {want}"
    )
    return Step("the certificates agree with the paper", ok, detail)


def _search(out, c, theta, kind, layer, seed) -> Step:
    """Step 5: a search that knows nothing of the paper's witness."""
    from invariants.certify import LOCAL_RADIUS
    from invariants.witness import find_global_improvement, find_local_improvement

    net, X, y = c.network, c.case.X, c.case.y
    if kind == "local":
        radius = LOCAL_RADIUS * float(np.linalg.norm(theta))
        witness = find_local_improvement(
            net, X, y, theta, radius, seed=seed, layer=layer
        )
    else:
        witness = find_global_improvement(net, X, y, theta, seed=seed, layer=layer)
    if witness is None:
        return Step("a search finds a witness", False, "none found (proves nothing)")
    verified = witness.verify()
    out.witness = witness
    out.witness_gap = witness.relative_gap
    return Step(
        "a search finds a witness, verified exactly", verified, describe(witness)
    )


def describe(witness) -> str:
    """One line: how far, how much shorter, which search."""
    text = f"relative gap {witness.relative_gap:.1e} at distance {witness.distance:.1e}"
    if witness.radius is not None:
        text += f" (radius {witness.radius:.1e})"
    if witness.layer is not None:
        text += f", layer {witness.layer} only"
    return f"{text}; {witness.search}"


def _classifier(out, c, theta, kind, layer) -> Step:
    """Step 6: the refuted guarantee is not one the classifier promises."""
    from invariants.regimes import classify

    regime = classify(c.network, theta, c.case.X, y=c.case.y)
    refuted = out.witness is not None and out.witness.verify()
    if layer is None:
        promised = regime.at_least(kind)
    else:
        scope = regime.layers.get(layer, (None, None))[0]
        promised = scope == "global" or (kind == "local" and scope == "local")
    ok = refuted and not promised
    detail = (
        f"{regime.guarantee} by Theorem {regime.theorem}; counterexample to the "
        f"next stronger: {regime.counterexample}"
    )
    return Step("the classifier promises nothing refuted", ok, detail)


def _line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}"
