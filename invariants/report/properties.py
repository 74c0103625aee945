"""The positive rows: each guarantee run as a property over generated cases.

Cases come from the public strategies (`strategies.training_cases` and the network
families), drawn by Hypothesis with a fixed seed, no database and no shrinking, so
the same seed and count give the same cases. The property records what the
library's checker measures instead of asserting: a case that fails is kept as the
row's witness, not shrunk, and the run goes on. Cases the simulator cannot follow,
or outside the theorem's hypotheses at the limit, are rejected and counted.

Every measure takes an optional `perturb(network, theta) -> theta`, applied to what
is fed to the checker; the report's own tests use it to show that a broken input
turns a row into `failed`.
"""

from __future__ import annotations

import importlib
import math
from collections import Counter
from collections.abc import Callable

import numpy as np
from hypothesis import HealthCheck, Phase, Verbosity, given, reject, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable

from invariants.report.outcome import Measurement

__all__ = ["MEASURES", "Skip", "sample"]

# The theorem tests' settings (tests/limits.py, tests/test_lemmas_balance.py): a
# direction converged to 1e-9 per unit of log||theta|| leaves the KKT and
# certificate tolerances (1e-6) a factor 1000; balance is measured by 1e6, already
# deep in the sliding regime.
DIRECTION_TOL = 1e-9
BALANCE_TARGET = 1e6
BALANCE_EVALUATIONS = 30_000
LIMIT_EVALUATIONS = 60_000
# tests/test_theorem_4_2.py: converged flows needed <= 24,500 evaluations there.
NO_SHARE_LINEAR_EVALUATIONS = 25_000
# Solver gaps the theorem tests require of each certificate's convex problem.
GAP_3_1 = 1e-9
GAP_4_X = 1e-8

Perturb = Callable[[object, np.ndarray], np.ndarray] | None


class Skip(Exception):
    """This case cannot be judged (no limit, outside the hypotheses); `reason` is
    counted in the report."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# Hypothesis also draws constants found in the source of "local" modules (this
# package among them) as they appear in sys.modules. Loading every module a row may
# use before the first draw makes the cases of a row independent of which rows ran
# before it, so `--only` picks out the same cases as a full run.
_MODULES = (
    "invariants.activation", "invariants.balance", "invariants.cases",
    "invariants.certify.conic", "invariants.certify.exact",
    "invariants.certify.linear", "invariants.certify.record",
    "invariants.exact_check", "invariants.flow", "invariants.kkt",
    "invariants.regimes", "invariants.witness", "invariants.report.constructions",
    "invariants.report.rows", "strategies",
)  # fmt: skip


def sample(strategy, measure, *, examples: int, seed: int):
    """Run `measure(case)` on up to `examples` cases drawn from `strategy`.

    Returns (measurements, rejected): one `Measurement` per judged case, and a
    Counter of rejection reasons. A checker that raises is a failed measurement
    with the exception as its `where`: a crash is never a pass."""
    for name in _MODULES:
        importlib.import_module(name)
    measured: list[Measurement] = []
    rejected: Counter = Counter()

    @settings(
        max_examples=examples,
        database=None,
        deadline=None,
        derandomize=False,
        phases=(Phase.explicit, Phase.generate),
        suppress_health_check=list(HealthCheck),
        verbosity=Verbosity.quiet,
        print_blob=False,
    )
    @hypothesis_seed(seed)
    @given(strategy)
    def run(case):
        try:
            m = measure(case)
        except Skip as exc:
            rejected[exc.reason] += 1
            reject()
        except Exception as exc:  # noqa: BLE001 - reported as this case's failure
            text = " ".join(str(exc).split())[:300]
            m = Measurement(math.nan, 0.0, False, f"{type(exc).__name__}: {text}")
        measured.append(m)

    try:
        run()
    except Unsatisfiable:
        pass  # every case rejected: the row is inconclusive, with the reasons
    return measured, rejected


# -- limits ----------------------------------------------------------------------------


def _flow(case, **options):
    from invariants.flow import FlowError, StationaryPointError, simulate

    try:
        return simulate(case, **options)
    except StationaryPointError:
        raise Skip("GF never fits (stationary, or falls into the origin)") from None
    except FlowError as exc:
        text = str(exc)
        why = next((w for w in ("max_log_norm", "budget", "kink") if w in text), "")
        raise Skip(f"simulator gave up ({why or 'other'})") from None


def _limit(case, perturb: Perturb, max_evaluations=LIMIT_EVALUATIONS):
    traj = _flow(case, direction_tol=DIRECTION_TOL, max_evaluations=max_evaluations)
    theta = traj.theta_tilde
    return theta if perturb is None else perturb(case.network, theta.copy())


def _path(case, perturb: Perturb) -> np.ndarray:
    traj = _flow(case, target_norm=BALANCE_TARGET, max_evaluations=BALANCE_EVALUATIONS)
    thetas = traj.thetas
    if perturb is not None:
        thetas = np.array([perturb(case.network, t.copy()) for t in thetas])
    return thetas


def _describe(case) -> str:
    net = case.network
    return (
        f"{net.describe()}, n={case.X.shape[0]}, {case.loss} loss"
        if hasattr(net, "describe")
        else repr(case)
    )


# -- the measures, one per positive row ------------------------------------------------


def _drift(laws):
    def measure(case, perturb: Perturb = None) -> Measurement:
        from invariants.balance import TOLERANCES, largest_drift

        thetas = _path(case, perturb)
        worst = largest_drift(laws(case.network, thetas))
        rtol = TOLERANCES["gradient_flow"].rtol
        where = f"{worst.name} at checkpoint {worst.worst_checkpoint}"
        return Measurement(
            worst.relative_drift, rtol, worst.relative_drift <= rtol,
            f"{_describe(case)}: {where}",
        )  # fmt: skip

    return measure


def _lemma_c1(network, thetas):
    from invariants.balance import frobenius_balance

    return frobenius_balance(network, thetas)


def _lemma_c2(network, thetas):
    from invariants.balance import layer_balance

    return layer_balance(network, thetas)


def _lemma_c3(network, thetas):
    from invariants.balance import neuron_balance

    return neuron_balance(network, thetas)


def lemma_c4(case, perturb: Perturb = None) -> Measurement:
    """tests/test_lemmas_balance.py: the limit balances only asymptotically, to
    sqrt(max |Delta_j|) / ||theta_final|| with Delta_j the conserved differences."""
    from invariants.balance import balance_drifts, limit_balance

    traj = _flow(case, target_norm=BALANCE_TARGET, max_evaluations=BALANCE_EVALUATIONS)
    delta = max(
        abs(d.values[0]) for d in balance_drifts(case.network, traj.thetas).values()
    )
    bound = 1e-9 + 1.01 * math.sqrt(delta) / float(np.linalg.norm(traj.theta_final))
    theta = traj.theta_tilde
    if perturb is not None:
        theta = perturb(case.network, theta.copy())
    imbalance = limit_balance(case.network, theta)
    name = max(imbalance, key=imbalance.get)
    value = imbalance[name]
    where = f"{_describe(case)}: {name}, bound sqrt|Delta|/||theta|| = {bound:.1e}"
    return Measurement(value, bound, value <= bound, where)


def lemma_c5(draw) -> Measurement:
    """Lemma C.5 with the tightest C = (prod a_j)^(1/m): the relative deficit
    (m C^2 - sum a_j^2) / (m C^2) is <= 0 (AM-GM), up to rounding."""
    a = np.asarray(draw, dtype=float)
    m = a.size
    c_squared = math.exp(2.0 * float(np.mean(np.log(a))))
    value = (m * c_squared - float(a @ a)) / (m * c_squared)
    tol = 8 * np.finfo(float).eps * m
    return Measurement(value, tol, value <= tol, f"a = {a.tolist()}")


def theorem_2_1(case, perturb: Perturb = None) -> Measurement:
    from invariants.kkt import KKT_TOL, kkt_point

    theta = _limit(case, perturb)
    point = kkt_point(case.network, case.X, case.y, theta)
    where = f"{_describe(case)}: active set {list(point.active_set)}"
    return Measurement(point.residual, KKT_TOL, point.residual <= KKT_TOL, where)


def _certificate(cert, gap: float, case) -> Measurement:
    ok = cert.holds and cert.gap <= gap
    where = f"{_describe(case)}: solver gap {cert.gap:.1e}, {cert.solver}"
    return Measurement(cert.excess, cert.tol, ok, where)


def theorem_3_1(case, perturb: Perturb = None) -> Measurement:
    from invariants.certify.linear import certify_theorem_3_1

    theta = _limit(case, perturb)
    cert = certify_theorem_3_1(case.network, case.X, case.y, theta)
    return _certificate(cert, GAP_3_1, case)


def theorem_4_2(case, perturb: Perturb = None) -> Measurement:
    from invariants.certify.conic import certify_theorem_4_2
    from invariants.certify.record import NotApplicableError

    theta = _limit(case, perturb, NO_SHARE_LINEAR_EVALUATIONS)
    try:
        cert = certify_theorem_4_2(case.network, case.X, case.y, theta)
    except NotApplicableError:
        raise Skip("outside the hypotheses: some w~_l = 0 at the limit") from None
    return _certificate(cert, GAP_4_X, case)


def theorem_4_3(case, perturb: Perturb = None) -> Measurement:
    from invariants.certify.conic import certify_theorem_4_3
    from invariants.certify.record import NotApplicableError

    theta = _limit(case, perturb)
    try:
        cert = certify_theorem_4_3(case.network, case.X, case.y, theta)
    except NotApplicableError:
        raise Skip("outside the hypotheses: a zero input to a neuron") from None
    return _certificate(cert, GAP_4_X, case)


def _layers(theorem: str):
    def measure(case, perturb: Perturb = None) -> Measurement:
        from invariants.certify.linear import certify_layer
        from invariants.certify.record import NotApplicableError

        net = case.network
        theta = _limit(case, perturb)
        certs = []
        for layer in range(1, net.depth + 1):
            try:
                certs.append(certify_layer(net, case.X, case.y, theta, layer))
            except NotApplicableError:
                continue  # a zero input at or above the layer: no guarantee there
        if not certs:
            raise Skip("outside the hypotheses: no layer without a zero input")
        worst = max(certs, key=lambda c: c.excess)
        # The last layer's Problem 4 is convex, so its certificate may claim more.
        ok = all(c.holds and c.theorem == theorem for c in certs)
        where = (
            f"{_describe(case)}: layer {worst.layer} ({worst.claim}), "
            f"{len(certs)} of {net.depth} layers certified"
        )
        return Measurement(worst.excess, worst.tol, ok, where)

    return measure


# -- strategies, as in the theorem tests -----------------------------------------------


def _strategies():
    """Built on first use: importing `strategies` loads Hypothesis' internals."""
    from strategies import (
        architectures,
        diagonal_networks,
        fully_connected_networks,
        no_share_networks,
        training_cases,
    )

    linear, relu = st.just("linear"), st.just("relu")
    depth2_no_share = st.one_of(
        fully_connected_networks(max_depth=2, max_width=3),
        no_share_networks(max_depth=2, max_width=3),
        diagonal_networks(max_depth=2, max_width=3),
    )
    cases = training_cases
    return {
        "C.1": cases(networks=fully_connected_networks(max_depth=3, max_width=3)),
        "C.2": cases(networks=architectures(max_depth=3, max_width=3)),
        "C.3": cases(networks=no_share_networks(max_depth=2, max_width=3)),
        "C.4": cases(networks=depth2_no_share),
        "C.5": st.integers(1, 6).flatmap(
            lambda m: st.lists(st.floats(1e-3, 1e3), min_size=m, max_size=m)
        ),
        "2.1": cases(networks=architectures(max_depth=3, max_width=3)),
        "3.1": cases(
            networks=fully_connected_networks(
                max_depth=4, max_width=3, activations=linear
            )
        ),
        "4.2.1": cases(
            networks=no_share_networks(max_depth=2, max_width=3, activations=linear)
        ),
        "4.3": cases(
            networks=no_share_networks(max_depth=2, max_width=3, activations=relu)
        ),
        "5.2": cases(
            networks=architectures(max_depth=4, max_width=3, activations=linear)
        ),
        "5.4": cases(
            networks=architectures(max_depth=3, max_width=3, activations=relu)
        ),
    }


# key -> (measure, the measured quantity's name in the table)
MEASURES = {
    "C.1": (_drift(_lemma_c1), "relative drift"),
    "C.2": (_drift(_lemma_c2), "relative drift"),
    "C.3": (_drift(_lemma_c3), "relative drift"),
    "C.4": (lemma_c4, "imbalance"),
    "C.5": (lambda a, perturb=None: lemma_c5(a), "deficit"),
    "2.1": (theorem_2_1, "KKT residual"),
    "3.1": (theorem_3_1, "excess"),
    "4.2.1": (theorem_4_2, "excess"),
    "4.3": (theorem_4_3, "excess"),
    "5.2": (_layers("5.2"), "excess"),
    "5.4": (_layers("5.4"), "excess"),
}


def strategy_for(key: str):
    return _strategies()[key]
