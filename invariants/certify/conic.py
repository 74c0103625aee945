"""Theorems 4.2 (1) and 4.3 as convex certificates: the group-norm problem.

A depth-2 network without shared weights computes Phi = sum_l v_l sigma(w_l . x^l),
where x^l holds the input coordinates neuron l is connected to. With u_l = v_l w_l,
||theta||^2 >= sum_l (||w_l||^2 + v_l^2) >= 2 sum_l ||u_l||, with equality when every
neuron is balanced, so Problem 2 restricted to a fixed activation pattern A is

    min  sum_l ||u_l||   s.t.   y_i sum_l A_il u_l . x_i^l >= 1   (Problems 8 and 11)

in units of ||theta||^2 / 2. For a linear network A = 1 and this is all of Problem 2,
so a lower bound on it bounds every feasible theta: a global certificate. For ReLU, A
is frozen at the limit; when no input to a neuron is zero there, every point near the
limit has the same pattern, so the bound holds in a neighbourhood: a local one.

The solver's verdict is never taken. Its u is rescaled until the recomputed margins
are all >= 1 (`primal`), and its multipliers are clipped at 0 and divided by the
largest dual-constraint norm until they are dual-feasible (`dual`), both recomputed
here in the data's own units. An answer the solver calls optimal must then show it:
the gap between those two recomputed numbers is at most `GAP_TOL` (whether the
solver says it is accurate or not). Infeasible is accepted as a status (the exact
search meets infeasible regions), with its verified bound; any other status is an
error. The data are scaled to unit largest row before solving because
interior-point stopping rules are absolute in places, and scaled back after.

`GroupNormProblem` is also the engine of `invariants.certify.exact`, which adds the
cone constraints c_il u_l . x_i^l >= 0 that keep u_l inside an activation region.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import clarabel
import cvxpy as cp
import numpy as np

from invariants.activation import activation_pattern, zero_inputs
from invariants.certify.record import (
    CERTIFICATE_TOL,
    Certificate,
    CertificateError,
    NotApplicableError,
)
from invariants.kkt import rescale
from invariants.networks import Network
from invariants.validation import check_dataset, check_theta

__all__ = [
    "GAP_TOL",
    "SOLVER",
    "ZERO_WEIGHT_TOL",
    "GroupNormProblem",
    "GroupNormSolution",
    "Neuron",
    "certify_problem_8",
    "certify_theorem_4_2",
    "certify_theorem_4_3",
    "depth2_neurons",
    "feasible_scale",
    "lift",
]

SOLVER = f"cvxpy {cp.__version__} + CLARABEL {clarabel.__version__}"

# Clarabel's own defaults stop at a relative gap of 1e-8; the certificates compare
# values at a relative 1e-6, and the limit itself is accurate to ~1e-9, so the
# solver is asked for two more digits than the comparison needs. One thread: the
# problems are tiny and the suite runs under xdist.
SOLVER_OPTIONS = {
    "tol_gap_abs": 1e-10,
    "tol_gap_rel": 1e-10,
    "tol_feas": 1e-10,
    "tol_infeas_abs": 1e-10,
    "tol_infeas_rel": 1e-10,
    "tol_ktratio": 1e-8,
    "max_iter": 300,
    "max_threads": 1,
}

# Largest relative gap between the recomputed primal and dual values of an answer
# called optimal. The solver stops at a gap and feasibility of 1e-10, and the
# rescalings that make both points feasible cost about as much again; a larger gap
# means the point or the multipliers are not the optimum, and a bound that loose
# would make a certificate fail on an optimal limit.
GAP_TOL = 1e-8
# Statuses whose answer is used: anything else (unbounded, a limit reached) is not a
# solved problem. "optimal_inaccurate" missed the solver's own stopping rule, not
# ours: on degenerate data (one sample, neurons sharing its column) CLARABEL says
# so while the recomputed gap is at rounding level; the gap check decides.
USABLE_STATUSES = ("optimal", "optimal_inaccurate", "infeasible")

# A neuron counts as absent (w~_l = 0) below this fraction of ||theta~||. A neuron GF
# leaves behind keeps its initial size while ||theta|| grows, so at a limit read at
# ||theta|| >= 1e8 it is 1e-8 of the whole or less; a neuron that carries part of
# the margin is a fixed fraction of it. Same reasoning as activation.ZERO_INPUT_TOL.
ZERO_WEIGHT_TOL = 1e-6


def feasible_scale(min_margin_at, degree: int) -> float:
    """A factor c with min_margin_at(c) >= 1 in floating point, for margins that are
    homogeneous of `degree` in the scaled point: 1 / q^(1/degree), grown by a
    relative step that doubles while rounding still leaves a margin below 1 (terms
    that cancel in a margin make its rounding error much larger than one ulp)."""
    c, step = 1.0, 4.0 * np.finfo(float).eps
    for _ in range(64):
        q = float(min_margin_at(c))
        if q >= 1.0:
            return c
        if not q > 0:
            raise CertificateError(f"smallest margin {q!r} <= 0: cannot be rescaled")
        c *= (1.0 / q) ** (1.0 / degree) * (1.0 + step)
        step *= 2.0
    raise CertificateError("rescaled margins stay below 1")  # pragma: no cover


@dataclass(frozen=True)
class Neuron:
    """One hidden neuron of a depth-2 network: the input coordinates it sees, where
    its incoming weights sit in theta (in the same order), and where its output
    weight sits (-1 if it has none)."""

    index: int
    columns: np.ndarray
    w_positions: np.ndarray
    v_position: int


def depth2_neurons(network: Network) -> list[Neuron]:
    """The hidden neurons of a depth-2 network without shared weights."""
    if network.depth != 2 or not network.is_no_share:
        raise ValueError(f"need a depth-2 no-share network, got {network.describe()}")
    P1, P2 = network.index_maps
    s1, s2 = network.layer_slices
    out = []
    for l in range(P1.shape[0]):
        cols = np.flatnonzero(P1[l] >= 0)
        v = int(P2[0, l])
        out.append(
            Neuron(l, cols, s1.start + P1[l, cols], s2.start + v if v >= 0 else -1)
        )
    return out


def lift(network: Network, u, *, signs=None) -> np.ndarray:
    """The balanced network point of a group-norm solution: w_l = u_l / sqrt||u_l||,
    v_l = s_l sqrt||u_l||, so that v_l (w_l . x) = s_l u_l . x, ||w_l|| = |v_l| and
    ||theta'||^2 = 2 sum_l ||u_l||. `u[l]` holds neuron l's weights in the order of
    its columns (None or zeros for a neuron left out); `signs` defaults to +1.
    Neurons without an output weight get zeros."""
    neurons = depth2_neurons(network)
    if len(u) != len(neurons):
        raise ValueError(f"u has {len(u)} entries, the network {len(neurons)} neurons")
    theta = np.zeros(network.num_parameters)
    signs = [1.0] * len(neurons) if signs is None else list(signs)
    for neuron, u_l, s in zip(neurons, u, signs):
        if u_l is None or neuron.v_position < 0:
            continue
        u_l = np.asarray(u_l, dtype=float)
        if u_l.shape != neuron.w_positions.shape:
            raise ValueError(
                f"u[{neuron.index}] has shape {u_l.shape}, neuron {neuron.index} "
                f"has {len(neuron.w_positions)} inputs"
            )
        r = float(np.linalg.norm(u_l))
        if r == 0.0:
            continue
        theta[neuron.w_positions] = u_l / math.sqrt(r)
        theta[neuron.v_position] = math.copysign(math.sqrt(r), s)
    return theta


@dataclass(frozen=True)
class GroupNormSolution:
    """A solve, re-checked. `u` is exactly feasible (None when the solver found no
    point, e.g. an infeasible problem); `primal` = sum ||u_b|| (inf without u) and
    `dual` = sum lambda, verified; both in units of ||theta||^2 / 2."""

    u: tuple[np.ndarray, ...] | None
    primal: float
    dual: float
    status: str
    residuals: dict = field(default_factory=dict)


class GroupNormProblem:
    """min sum_b ||u_b|| s.t. sum_b a_bi u_b . x_i[cols_b] >= 1 for every sample i,
    and, with `cones`, c_bi u_b . x_i[cols_b] >= 0 for every block b and sample i.

    The block structure (which columns each block sees) is fixed at construction;
    the coefficients a (and c) are cvxpy parameters, so solving a sequence of
    problems with the same structure pays for the canonicalisation once.
    """

    def __init__(self, X, columns, *, cones: bool = False) -> None:
        X = check_dataset(X, None, None)[0]
        self.X = X
        self.columns = [np.asarray(c, dtype=int) for c in columns]
        self._X_b = [X[:, cols] for cols in self.columns]
        self.scale = float(np.max(np.linalg.norm(X, axis=1)))
        if not self.scale > 0:
            raise ValueError("every row of X is zero: no sample can be separated")
        n, B = X.shape[0], len(self.columns)
        Xs = X / self.scale
        self._a = cp.Parameter((B, n), name="a")
        self._c = cp.Parameter((B, n), name="c") if cones else None
        self._u = [cp.Variable(len(c), name=f"u{b}") for b, c in enumerate(columns)]
        margins = 0
        cone_constraints = []
        for b, (cols, u) in enumerate(zip(self.columns, self._u)):
            z = Xs[:, cols] @ u
            margins = margins + cp.multiply(self._a[b], z)
            if cones:
                cone_constraints.append(cp.multiply(self._c[b], z) >= 0)
        self._margin = margins >= 1
        self._cones = cone_constraints
        objective = cp.Minimize(sum(cp.norm(u, 2) for u in self._u))
        self._problem = cp.Problem(objective, [self._margin, *cone_constraints])

    def solve(self, a, c=None) -> GroupNormSolution:
        a = np.asarray(a, dtype=float)
        self._a.value = a
        if self._c is not None:
            c = np.asarray(c, dtype=float)
            self._c.value = c
        try:
            self._problem.solve(solver="CLARABEL", **SOLVER_OPTIONS)
        except cp.error.SolverError as exc:
            raise CertificateError(f"CLARABEL failed: {exc}") from exc
        status = str(self._problem.status)
        if status not in USABLE_STATUSES:
            raise CertificateError(
                f"CLARABEL returned status {status!r}: not a solved problem "
                f"(usable: {', '.join(USABLE_STATUSES)})"
            )
        lam = self._margin.dual_value
        if lam is None:
            raise CertificateError(
                f"CLARABEL returned status {status!r} with no multipliers: neither a "
                "bound nor a certificate of infeasibility"
            )
        mus = [k.dual_value for k in self._cones]
        dual, dual_scale = self._verified_dual(a, c, lam, mus)
        u, primal, raw_margin = self._verified_primal(a, c)
        gap = _check_gap(status, u, primal, dual)
        residuals = {
            "recomputed_gap": gap,
            "solver_status": status,
            "solver_objective": _finite_or_none(self._problem.value, self.scale),
            "min_margin_before_rescale": raw_margin,
            "dual_scale": dual_scale,
            "data_scale": self.scale,
        }
        if self._c is not None and u is not None:
            residuals["cone_violation"] = self._cone_violation(u, c)
        return GroupNormSolution(u, primal, dual, status, residuals)

    def _verified_primal(self, a, c):
        """Rescale the solver's u until every recomputed margin is >= 1."""
        values = [v.value for v in self._u]
        if any(v is None for v in values):
            return None, math.inf, None
        # The solver ran on X / scale; the same margins on X need u / scale.
        u = [np.asarray(v, dtype=float) / self.scale for v in values]
        if not all(np.all(np.isfinite(v)) for v in u):
            raise CertificateError("CLARABEL returned a non-finite point")
        q_raw = self.margins(a, u)
        q_min = float(np.min(q_raw))
        if not q_min > 0:
            raise CertificateError(
                f"CLARABEL's point has smallest recomputed margin {q_min!r} <= 0 "
                f"(status {self._problem.status!r}): it cannot be rescaled feasible"
            )
        c = feasible_scale(lambda c: np.min(self.margins(a, [c * v for v in u])), 1)
        u = [c * v for v in u]
        primal = float(sum(np.linalg.norm(v) for v in u))
        return tuple(u), primal, q_min

    def margins(self, a, u) -> np.ndarray:
        """sum_b a_bi u_b . x_i[cols_b] for every sample, in the data's units."""
        return sum(a[b] * (Xb @ ub) for b, (Xb, ub) in enumerate(zip(self._X_b, u)))

    def _cone_violation(self, u, c) -> float:
        """Largest c_bi u_b . x_i below 0, relative to ||u_b|| ||x_i||."""
        worst = 0.0
        for b, (Xb, ub) in enumerate(zip(self._X_b, u)):
            size = np.linalg.norm(Xb, axis=1) * np.linalg.norm(ub)
            bad = -c[b] * (Xb @ ub)
            rel = np.where(size > 0, bad / np.where(size > 0, size, 1.0), 0.0)
            worst = max(worst, float(np.max(rel, initial=0.0)))
        return worst

    def _verified_dual(self, a, c, lam, mus):
        """sum lambda over max_b ||r_b||, r_b = sum_i (lambda_i a_bi + mu_bi c_bi) x_i.

        Weak duality in the data's units: for any feasible u, sum lambda <=
        sum_i lambda_i q_i + sum mu . (cone terms) = sum_b u_b . r_b
        <= max ||r_b|| sum ||u_b||.
        """
        lam = np.clip(np.asarray(lam, dtype=float).reshape(-1), 0.0, None)
        if not np.all(np.isfinite(lam)):
            raise CertificateError("CLARABEL returned non-finite multipliers")
        norms = []
        for b, Xb in enumerate(self._X_b):
            weights = lam * a[b]
            if mus:
                mu = np.clip(np.asarray(mus[b], dtype=float).reshape(-1), 0.0, None)
                if not np.all(np.isfinite(mu)):
                    raise CertificateError("CLARABEL returned non-finite multipliers")
                weights = weights + mu * c[b]
            norms.append(float(np.linalg.norm(weights @ Xb)))
        scale = max(norms, default=0.0)
        total = float(np.sum(lam))
        if total == 0.0:
            return 0.0, scale
        if scale == 0.0:
            # An exact certificate of infeasibility: no u meets the margins.
            return math.inf, scale
        return total / scale, scale


def _check_gap(status, u, primal, dual) -> float | None:
    """The relative gap of the recomputed bounds; an error when it belies the
    status (an optimal answer needs a feasible point and a tight bound)."""
    if status == "infeasible":
        if u is not None:
            raise CertificateError(
                "CLARABEL called the problem infeasible, with a point"
            )
        return None
    if u is None:
        raise CertificateError("CLARABEL called the problem optimal, with no point")
    gap = (primal - dual) / max(abs(primal), 1e-300)
    if not abs(gap) <= GAP_TOL:
        raise CertificateError(
            f"CLARABEL's optimal answer fails its re-check: recomputed duality gap "
            f"{gap:.2e} > GAP_TOL={GAP_TOL:.0e} (feasible value {primal!r}, verified "
            f"bound {dual!r}): its point or its multipliers are not optimal"
        )
    return float(gap)


def _finite_or_none(value, scale) -> float | None:
    if value is None or not np.isfinite(value):
        return None
    return float(value) / scale


# -- the theorems ----------------------------------------------------------------------


def certify_theorem_4_2(
    network: Network, X, y, theta, *, tol: float = CERTIFICATE_TOL
) -> Certificate:
    """Theorem 4.2 (1): a depth-2 linear N_no-share limit with every w~_l != 0 is a
    global optimum of Problem 2. Certified against Problem 8."""
    name = "4.2 (1)"
    _check_depth2_linear(network, name)
    X, y, theta_t = _rescaled(network, X, y, theta)
    norm = float(np.linalg.norm(theta_t))
    for neuron in depth2_neurons(network):
        size = float(np.linalg.norm(theta_t[neuron.w_positions]))
        if size <= ZERO_WEIGHT_TOL * norm:
            raise NotApplicableError(
                f"Theorem {name} needs every w~_l != 0, but neuron {neuron.index} has "
                f"||w~|| = {size:.3g} = {size / norm:.3g} ||theta~|| (zero below "
                f"{ZERO_WEIGHT_TOL:g}); `certify_problem_8` still bounds it"
            )
    return certify_problem_8(network, X, y, theta_t, tol=tol, theorem=name)


def certify_problem_8(
    network: Network, X, y, theta, *, tol: float = CERTIFICATE_TOL, theorem=None
) -> Certificate:
    """Global optimality of any point of a depth-2 linear N_no-share network, against
    Problem 8, whether or not Theorem 4.2 (1) promises it: 2 x Problem 8's optimum
    bounds Problem 2 below for every such network, zero neurons included. When the
    point is not optimal, `residuals["better_point"]` holds the lifted solution."""
    name = theorem or "Problem 8 bound (any depth-2 linear N_no-share point)"
    _check_depth2_linear(network, name)
    X, y, theta_t = _rescaled(network, X, y, theta)
    A = np.ones((len(y), len(depth2_neurons(network))))
    return _certify(network, X, y, theta_t, A, name, "global", "Problem 8", tol)


def _check_depth2_linear(network: Network, name: str) -> None:
    _check_depth2_no_share(network, name)
    if network.activation != "linear":
        raise NotApplicableError(
            f"Theorem {name} is about linear networks; this one is "
            f"{network.activation} (Theorem 4.3 covers depth-2 ReLU)"
        )


def certify_theorem_4_3(
    network: Network, X, y, theta, *, tol: float = CERTIFICATE_TOL
) -> Certificate:
    """Theorem 4.3: a depth-2 ReLU N_no-share limit with every input to every neuron
    non-zero is a local optimum of Problem 2. Certified against Problem 11 with the
    activation pattern frozen at the limit."""
    name = "4.3"
    _check_depth2_no_share(network, name)
    if network.activation != "relu":
        raise NotApplicableError(
            f"Theorem {name} is about ReLU networks; this one is {network.activation} "
            "(Theorem 4.2 (1) covers depth-2 linear)"
        )
    X, y, theta_t = _rescaled(network, X, y, theta)
    zeros = zero_inputs(network, theta_t, X)
    if zeros:
        _, i, j = zeros[0]
        raise NotApplicableError(
            f"Theorem {name} needs every input to a neuron non-zero at the limit, but "
            f"{len(zeros)} are zero, first neuron {j} on sample {i}"
        )
    A = (activation_pattern(network, theta_t, X)[0] > 0).astype(float)
    return _certify(network, X, y, theta_t, A, name, "local", "Problem 11", tol)


def _check_depth2_no_share(network: Network, name: str) -> None:
    if network.depth != 2:
        raise NotApplicableError(
            f"Theorem {name} is about depth-2 networks; this one has depth "
            f"{network.depth}"
        )
    if not network.is_no_share:
        raise NotApplicableError(
            f"Theorem {name} is about N_no-share; this {network.family} network "
            "shares weights"
        )


def _rescaled(network, X, y, theta):
    X, y = check_dataset(X, y, network.input_dim)
    theta = check_theta(theta, network.num_parameters)
    return X, y, rescale(network, X, y, theta)


def _certify(network, X, y, theta_t, A, name, claim, problem, tol):
    """Solve the group-norm problem with pattern A (n, k) and compare with theta~."""
    neurons = [nr for nr in depth2_neurons(network) if nr.v_position >= 0]
    if not neurons:
        raise NotApplicableError("no hidden neuron is connected to the output")
    groups = GroupNormProblem(X, [nr.columns for nr in neurons])
    a = np.stack([y * A[:, nr.index] for nr in neurons])
    sol = groups.solve(a)
    if sol.u is None:
        raise CertificateError(
            f"Theorem {name}: CLARABEL found no point of {problem} (status "
            f"{sol.status!r}), yet the limit itself is one"
        )
    # The limit's own value in the problem: 2 sum ||v~_l w~_l|| <= ||theta~||^2,
    # with equality when its neurons are balanced (Lemma C.4).
    limit_u = [theta_t[nr.v_position] * theta_t[nr.w_positions] for nr in neurons]
    residuals = {
        **sol.residuals,
        "solver_objective": None
        if sol.residuals["solver_objective"] is None
        else 2.0 * sol.residuals["solver_objective"],
        "limit_group_norm": 2.0 * float(sum(np.linalg.norm(v) for v in limit_u)),
        "limit_min_margin": float(np.min(groups.margins(a, limit_u))),
        "better_point": None,
    }
    if claim == "global" and 2.0 * sol.primal < float(theta_t @ theta_t) * (1 - tol):
        # The solver's point, lifted, is a feasible network point with a smaller
        # norm; callers re-verify it before calling it a witness.
        by_neuron = {nr.index: u for nr, u in zip(neurons, sol.u)}
        lifted = lift(
            network, [by_neuron.get(nr.index) for nr in depth2_neurons(network)]
        )
        residuals["better_point"] = lifted.tolist()
    return Certificate(
        theorem=name,
        claim=claim,
        problem=f"{problem} (group norm over {len(neurons)} neurons)",
        solver=SOLVER,
        primal=2.0 * sol.primal,
        dual=2.0 * sol.dual,
        limit_value=float(theta_t @ theta_t),
        tol=tol,
        residuals=residuals,
    )
