"""Beyond the paper: the exact global optimum of Problem 2 for small depth-2 ReLU nets.

Theorem 4.3 certifies local optimality only, and Lemma C.6 shows a limit that is not
global. For a small depth-2 ReLU network without shared weights, the global optimum
can be computed outright, which decides every such limit.

Reduction. With u_l = |v_l| w_l and s_l = sign v_l, Phi = sum_l s_l relu(u_l . x^l)
and ||theta||^2 >= 2 sum_l ||u_l||, equal at balanced neurons (the lift in
`conic.lift`). Inside a closed activation region of neuron l, {u : c_i u . x_i^l >= 0}
for a sign vector c, relu(u . x_i^l) = A_i u . x_i^l with A_i = 1[c_i > 0], so

    min sum_l ||u_l||  s.t.  y_i sum_l s_l A_il u_l . x_i^l >= 1,  c_il u_l . x_i^l >= 0

is a convex SOCP for each choice of (s_l, region) per neuron, and Problem 2 is the
smallest of them.

Which regions. The closed chambers (full-dimensional cells) of the arrangement of the
hyperplanes x_i^l . u = 0 cover the whole input space: every lower-dimensional cell,
including {0} and hence a neuron switched off, is a face of some closed chamber and is
searched with it. A sample with x_i^l = 0 cuts nothing and gets c_i = 0. Chambers are
found by a tree over the samples: a sign vector extends a chamber of the first samples
when an LP, max t s.t. c_i x_i . u >= t ||x_i||, |u_j| <= 1, has t > `CHAMBER_TOL`,
checked on the LP's own u. Antipodal chambers come in pairs, so half are searched.
A chamber thinner than that (every unit direction in it within ~1e-9 of a bounding
hyperplane) would be missed; the residuals report the thinnest chamber kept and the
fattest sign vector refused, so a near-degenerate arrangement is visible.

Pruning, all exact. (1) A (sign, region) whose every active sample has y_i s = -1 can
only lower margins: its u is 0 at an optimum, so it is never a choice. (2) Neurons
that see the same input columns are interchangeable, and two of them in the same
(sign, region) merge into one (the region is a convex cone and the norm is
subadditive), so such a group of k neurons picks a set of min(k, choices) distinct
choices, not a sequence (a smaller set is covered by any larger one, a neuron can
be 0 in every region). (3) A combination in which some sample has no block that
can raise its margin is infeasible, with an exact certificate, and is not solved.

The convex relaxation, every choice of every group as its own block at once, bounds
Problem 2 below for any width. It is solved first, and the combination of its
largest blocks (at most k per group) is re-solved, which removes the small blocks
it spreads over neighbouring regions; when that point or the caller's incumbent
meets the relaxation's verified bound, nothing is enumerated. Otherwise every
combination is solved, and the verified lower bound is the smallest verified dual
bound over them. The enumeration is exact, so that bound must meet the best verified
point within `tol`; when it does not, a solve or a region is wrong, and that is an
error rather than a verdict.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np

from invariants.certify.conic import (
    SOLVER,
    GroupNormProblem,
    depth2_neurons,
    feasible_scale,
    lift,
)
from invariants.certify.record import (
    CERTIFICATE_TOL,
    Certificate,
    CertificateError,
    NotApplicableError,
)
from invariants.certify.regions import (
    CHAMBER_TOL,
    activation_regions,
    check_region_work,
)
from invariants.kkt import rescale
from invariants.networks import Network
from invariants.validation import check_dataset, check_theta

__all__ = [
    "CHAMBER_TOL",
    "MAX_CONVEX_PROBLEMS",
    "GlobalOptimum",
    "better_point",
    "certify_global_depth2_relu",
    "global_optimum",
]

# Each SOCP costs about 1-2 ms through a reused cvxpy problem (the LPs that find the
# regions about 1 ms each); 3000 problems is a few seconds, and the count grows
# combinatorially beyond it, so larger instances are refused before any work.
MAX_CONVEX_PROBLEMS = 3000


@dataclass(frozen=True)
class GlobalOptimum:
    """Problem 2 solved: `value` = ||theta||^2 at `theta`, a point whose recomputed
    margins are all >= 1, and `lower_bound`, verified; optimal within their gap."""

    value: float
    lower_bound: float
    theta: np.ndarray
    problems_solved: int
    combinations: int
    relaxation_bound: float
    method: str
    details: dict


@dataclass(frozen=True)
class _Group:
    """Interchangeable neurons (same input columns) and their (sign, region) choices."""

    columns: np.ndarray
    neurons: tuple[int, ...]
    signs: np.ndarray  # (choices,)
    cones: np.ndarray  # (choices, n)

    @property
    def picks(self) -> int:
        return min(len(self.neurons), len(self.signs))


def _groups(network: Network, X, y) -> tuple[list[_Group], dict]:
    neurons = [nr for nr in depth2_neurons(network) if nr.v_position >= 0]
    by_columns: dict[tuple, list[int]] = {}
    for nr in neurons:
        if nr.columns.size:
            by_columns.setdefault(tuple(nr.columns.tolist()), []).append(nr.index)
    check_region_work(X, by_columns)
    groups, stats = [], {"regions": [], "lps": 0, "thinnest_kept": math.inf}
    stats["fattest_refused"] = 0.0
    for cols, members in by_columns.items():
        regions, s = activation_regions(X[:, list(cols)])
        stats["regions"].append(len(regions))
        stats["lps"] += s["lps"]
        stats["thinnest_kept"] = min(stats["thinnest_kept"], s["thinnest_kept"])
        stats["fattest_refused"] = max(stats["fattest_refused"], s["fattest_refused"])
        signs, cones = [], []
        for c in regions:
            for sign in (1.0, -1.0):
                if np.any((c > 0) & (sign * y > 0)):
                    signs.append(sign)
                    cones.append(c)
        if signs:
            groups.append(
                _Group(np.array(cols), tuple(members), np.array(signs), np.array(cones))
            )
    return groups, stats


def global_optimum(
    network: Network,
    X,
    y,
    *,
    incumbent=None,
    tol: float = CERTIFICATE_TOL,
    max_problems: int = MAX_CONVEX_PROBLEMS,
    relaxation: bool = True,
) -> GlobalOptimum:
    """Problem 2 for a depth-2 ReLU N_no-share network, solved exactly (see module).

    `incumbent`, a point separating the data, is rescaled and kept as a candidate;
    enumeration is skipped when it or the relaxation's lifted point is within `tol` of
    the relaxation's verified bound (`relaxation=False` skips that shortcut and
    always enumerates, as a cross-check). Raises ValueError, before any convex
    problem is solved, when more than `max_problems` could be needed.
    """
    _check_network(network)
    X, y = check_dataset(X, y, network.input_dim)

    # 1. Regions and choices per group of interchangeable neurons; the work bound.
    groups, details = _groups(network, X, y)
    if not groups:
        raise CertificateError("no neuron can raise any margin: nothing separates")
    # The relaxation, the polish of its lifted point, and every combination.
    needed = 2 + math.prod(math.comb(len(g.signs), g.picks) for g in groups)
    if needed > max_problems:
        raise ValueError(
            f"the exact global optimum would need {needed} convex problems "
            f"({', '.join(f'C({len(g.signs)}, {g.picks})' for g in groups)} "
            f"combinations, the relaxation and its polish), more than "
            f"max_problems={max_problems}; use fewer neurons, samples or input "
            "dimensions, or raise max_problems"
        )
    search = _Search(network, X, y, groups)
    if incumbent is not None:
        search.offer(check_theta(incumbent, network.num_parameters, "incumbent"))

    # 2. The relaxation: a lower bound for any width, often tight.
    relax_bound = 0.0
    if relaxation:
        relax_bound = search.relaxation()
        if search.value <= relax_bound * (1.0 + tol):
            return search.result(relax_bound, 0, relax_bound, "relaxation", details)

    # 3. Every combination of choices, each group picking a set.
    lower, combos = math.inf, 0
    for picks in itertools.product(
        *(itertools.combinations(range(len(g.signs)), g.picks) for g in groups)
    ):
        combos += 1
        sol = search.combination(picks)
        if sol is not None and 2.0 * sol.dual < lower:
            lower, details["weakest_combination"] = 2.0 * sol.dual, combos
    bound = max(lower, relax_bound)
    if search.theta is not None and not search.value <= bound * (1.0 + tol):
        raise CertificateError(
            f"the enumeration's verified lower bound {bound!r} does not meet its best "
            f"verified point {search.value!r} within tol={tol:.0e}: over all "
            "activation regions they must agree, so a solve or a region is wrong"
        )
    return search.result(bound, combos, relax_bound, "enumeration", details)


class _Search:
    """The convex problems of one instance, and the best point seen, each point
    re-verified on the network itself."""

    def __init__(self, network, X, y, groups) -> None:
        self.network, self.X, self.y, self.groups = network, X, y, groups
        self.theta, self.value, self.solved = None, math.inf, 0
        columns = [g.columns for g in groups for _ in range(g.picks)]
        self.problem = GroupNormProblem(X, columns, cones=True)

    def offer(self, theta) -> None:
        q = self.network.margins(theta, self.X, self.y)
        if not np.min(q) > 0:
            return  # the solver's point lost a margin to a cone violation
        c = feasible_scale(
            lambda c: np.min(self.network.margins(c * theta, self.X, self.y)), 2
        )
        value = float((c * theta) @ (c * theta))
        if value < self.value:
            self.theta, self.value = c * theta, value

    def combination(self, picks):
        """Solve one combination (a set of choice indices per group) and offer its
        lifted point; None when it is infeasible by the exact pre-check."""
        groups = self.groups
        signs = np.concatenate([g.signs[list(p)] for g, p in zip(groups, picks)])
        cones = np.concatenate([g.cones[list(p)] for g, p in zip(groups, picks)])
        a = signs[:, None] * self.y[None, :] * (cones > 0)
        if not np.all(np.any(a > 0, axis=0)):
            return None  # some margin cannot be raised: infeasible, exactly
        sol = self.problem.solve(a, cones)
        self.solved += 1
        if sol.u is not None:
            self.offer(self._lift(picks, sol.u))
        return sol

    def relaxation(self) -> float:
        """Solve the relaxation, polish the combination of its largest blocks (as
        many per group as it has neurons), and return the verified bound."""
        groups = self.groups
        columns = [g.columns for g in groups for _ in g.signs]
        signs = np.concatenate([g.signs for g in groups])
        cones = np.concatenate([g.cones for g in groups])
        a = signs[:, None] * self.y[None, :] * (cones > 0)
        sol = GroupNormProblem(self.X, columns, cones=True).solve(a, cones)
        self.solved += 1
        if sol.u is not None:
            picks, start = [], 0
            for g in groups:
                sizes = [np.linalg.norm(u) for u in sol.u[start : start + len(g.signs)]]
                picks.append(tuple(sorted(np.argsort(sizes)[::-1][: g.picks].tolist())))
                start += len(g.signs)
            # Re-solving the chosen combination removes the small blocks the
            # relaxation spreads over neighbouring regions.
            self.combination(tuple(picks))
        return 2.0 * sol.dual

    def _lift(self, picks, u_blocks) -> np.ndarray:
        """Assign the chosen blocks of each group to its neurons and lift."""
        k = self.network.widths[1]
        u, signs = [None] * k, [1.0] * k
        blocks = iter(u_blocks)
        for g, p in zip(self.groups, picks):
            for neuron, j in zip(g.neurons, p):
                u[neuron] = next(blocks)
                signs[neuron] = float(g.signs[j])
        return lift(self.network, u, signs=signs)

    def result(self, bound, combos, relaxation, method, details) -> GlobalOptimum:
        if self.theta is None:
            raise CertificateError(
                "no verified feasible point was found: the network may not separate "
                "the data, or every solve failed"
            )
        found = (self.value, bound, self.theta, self.solved, combos, relaxation)
        return GlobalOptimum(*found, method, details)


def _check_network(network: Network) -> None:
    name = "the exact global optimum"
    if network.depth != 2:
        raise NotApplicableError(f"{name} is for depth 2; got depth {network.depth}")
    if not network.is_no_share:
        raise NotApplicableError(f"{name} is for N_no-share; this network shares")
    if network.activation != "relu":
        raise NotApplicableError(f"{name} is for ReLU networks; this one is linear")


def certify_global_depth2_relu(
    network: Network,
    X,
    y,
    theta,
    *,
    tol: float = CERTIFICATE_TOL,
    max_problems: int = MAX_CONVEX_PROBLEMS,
) -> Certificate:
    """Is the limit theta a global optimum of Problem 2? Decided exactly (see module).

    When it is not, `better_point(certificate, network, X, y)` returns the verified
    optimum, a feasible point with a smaller norm.
    """
    _check_network(network)
    X, y = check_dataset(X, y, network.input_dim)
    theta_t = rescale(network, X, y, check_theta(theta, network.num_parameters))
    limit_value = float(theta_t @ theta_t)
    opt = global_optimum(
        network, X, y, incumbent=theta_t, tol=tol, max_problems=max_problems
    )
    better = opt.value < limit_value * (1.0 - tol)
    residuals = {
        **opt.details,
        "method": opt.method,
        "problems_solved": opt.problems_solved,
        "combinations": opt.combinations,
        "relaxation_bound": opt.relaxation_bound,
        "better_point": opt.theta.tolist() if better else None,
    }
    return Certificate(
        theorem="exact (pattern enumeration)",
        claim="global",
        problem=(
            f"Problem 2 by {opt.method} over activation regions "
            f"({opt.problems_solved} convex problems solved)"
        ),
        solver=SOLVER,
        primal=opt.value,
        dual=opt.lower_bound,
        limit_value=limit_value,
        tol=tol,
        residuals=residuals,
    )


def better_point(certificate: Certificate, network: Network, X, y) -> np.ndarray | None:
    """The certificate's better point, re-verified: every margin >= 1 recomputed and
    ||theta'||^2 below the limit's value. None when the limit is global."""
    stored = certificate.residuals.get("better_point")
    if stored is None:
        return None
    X, y = check_dataset(X, y, network.input_dim)
    theta = check_theta(stored, network.num_parameters, "better_point")
    q_min = float(np.min(network.margins(theta, X, y)))
    value = float(theta @ theta)
    if q_min < 1.0 or not value < certificate.limit_value:
        raise CertificateError(
            f"the stored better point does not verify: smallest margin {q_min!r} "
            f"(needs >= 1), ||theta'||^2 = {value!r} against the limit's "
            f"{certificate.limit_value!r}"
        )
    return theta
