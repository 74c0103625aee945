"""The batch simulator gives the single run's answers, and says when it cannot.

Direction tolerance. Both simulators stop where the direction moves less than
direction_tol = 1e-9 per unit of log||theta|| (checked once per unit); where GF
approaches its limit like e^{-lambda s}, each run is within about
direction_tol / lambda of the limit, and their integration errors (rtol 1e-10 per
step, damped on the way to an attracting limit) add less. The cases below have
lambda >= 1 and agree to 1e-9 at worst (measured), so 1e-7 leaves a margin of 100
without hiding a different limit: the next KKT point of these cases is O(1) away.
"""

import numpy as np
import pytest

from invariants.batch import HandoffRequired, gradient_flows
from invariants.batch.agreement import answer_gaps, assert_same_answers
from invariants.batch.fields import BatchField
from invariants.batch.steppers import rodas4_step
from invariants.cases import get
from invariants.field import Field, StationaryPointError
from invariants.flow import gradient_flow
from invariants.networks import convolutional, diagonal, fully_connected

SWEEP = {"direction_tol": 1e-9, "max_evaluations": 60_000}
DIRECTION_TOL = 1e-7
# Draws of `invariants.sweep.run` (seed 0): 6 and 9 reach a limit without a kink,
# 11 crosses a kink in the fit phase, 5 starts with every neuron dead, 0 slides
# along a kink into a point that does not fit (pinned, by the batch too), 4 pins
# one neuron on both samples (its weights held at 0: the batch lets it go there).
SWEEP_KS = (6, 9, 11, 5, 0, 4)


def sweep_inits(ks, seed=0):
    return np.array([np.random.default_rng([seed, k]).standard_normal(6) for k in ks])


def singles(net, X, y, thetas, **options):
    out = []
    for th in thetas:
        try:
            out.append(gradient_flow(net, X, y, th, **options))
        except Exception as exc:  # noqa: BLE001 - an answer to compare
            out.append(exc)
    return out


@pytest.fixture(scope="module")
def thm32():
    c = get("thm3.2")
    thetas = np.vstack([c.case.theta0, sweep_inits(SWEEP_KS)])
    stats = {}
    batch = gradient_flows(c.network, c.case.X, c.case.y, thetas, stats=stats, **SWEEP)
    single = singles(c.network, c.case.X, c.case.y, thetas, **SWEEP)
    return c, batch, single, stats


def test_rodas4_is_fourth_order():
    # y' = -y^2 + sin t: halving the step divides the error by 2^4.
    def fun(t, y):
        return -(y**2) + np.sin(t)[:, None]

    def jac(t, y):
        return (-2 * y)[:, :, None], np.cos(t)[:, None]

    def solve(n):
        t, y, h = np.zeros(1), np.ones((1, 1)), np.full(1, 1.0 / n)
        for _ in range(n):
            y = rodas4_step(fun, jac, t, y, fun(t, y), h, 1e-8, 1e-8)[0]
            t = t + h
        return y[0, 0]

    reference = solve(640)
    errors = [abs(solve(n) - reference) for n in (10, 20, 40)]
    orders = np.log2(np.array(errors[:-1]) / np.array(errors[1:]))
    assert np.all(orders > 3.8), orders


@pytest.mark.parametrize(
    "net",
    [fully_connected([3, 4, 2, 1], "relu"), convolutional(5, 2, 1), diagonal(3, 3)],
    ids=["fc-relu-3", "conv-shared", "diag-3"],
)
def test_batched_margins_and_jacobian_match_single(net):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(4, net.input_dim))
    y = np.array([1.0, -1.0, 1.0, 1.0])
    thetas = rng.normal(size=(3, net.num_parameters))
    q, J, _ = net.unchecked_margin_jacobians(thetas, X, y)
    for b, th in enumerate(thetas):
        q1, J1 = net.unchecked_margin_jacobian(th, X, y)
        np.testing.assert_allclose(q[b], q1, rtol=1e-14, atol=1e-14)
        np.testing.assert_allclose(J[b], J1, rtol=1e-14, atol=1e-14)
    # Positive weights and inputs: every neuron active and every margin positive,
    # so phi . G > 0 and the far field and its Jacobian are finite everywhere.
    X, thetas, y = np.abs(X), np.abs(thetas), np.ones(4)
    bf = BatchField(net, X, y, "logistic", 3)
    phis = thetas / np.linalg.norm(thetas, axis=1, keepdims=True)
    s = np.array([0.5, 1.0, 1.5])
    jac, _ = bf.log_norm_jacobian(np.arange(3), s, phis)
    for b in range(3):
        single = Field(net, X, y, "logistic").log_norm_jacobian(s[b], phis[b])
        assert np.all(np.isfinite(single))
        np.testing.assert_allclose(jac[b], single, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(
    "net",
    [fully_connected([3, 4, 2, 1], "relu"), convolutional(5, 2, 1)],
    ids=["fc-relu-3", "conv-shared"],
)
def test_a_given_activation_pattern_gives_that_linear_networks_jacobian(net):
    # With the pattern of signs, the ordinary answer; with another pattern, the
    # margins of the linear network it selects and their exact derivative
    # (central differences, which are exact for it up to rounding: it is
    # polynomial of degree m, and the step is 1e-6).
    rng = np.random.default_rng(2)
    X = rng.normal(size=(4, net.input_dim))
    y = np.array([1.0, -1.0, 1.0, 1.0])
    thetas = rng.normal(size=(2, net.num_parameters))
    q, J, (z, _) = net.unchecked_margin_jacobians(thetas, X, y)
    same = net.unchecked_margin_jacobians(thetas, X, y, (z > 0).astype(float))
    np.testing.assert_array_equal(same[0], q)
    np.testing.assert_array_equal(same[1], J)
    pattern = rng.integers(0, 2, size=z.shape).astype(float)
    assert np.any(pattern != (z > 0))
    qp, Jp, (zp, _) = net.unchecked_margin_jacobians(thetas, X, y, pattern)
    first = X.shape[0] * net.widths[1]  # the first layer's do not see the pattern
    np.testing.assert_array_equal(zp[:, :first], z[:, :first])
    assert not np.allclose(qp, q)
    h = 1e-6
    for p_ in range(net.num_parameters):
        e = np.zeros(net.num_parameters)
        e[p_] = h
        up = net.unchecked_margin_jacobians(thetas + e, X, y, pattern)[0]
        down = net.unchecked_margin_jacobians(thetas - e, X, y, pattern)[0]
        np.testing.assert_allclose(
            Jp[:, :, p_], (up - down) / (2 * h), rtol=1e-7, atol=1e-8
        )


@pytest.mark.parametrize(
    "net",
    [fully_connected([3, 4, 2, 1], "relu"), convolutional(5, 2, 1), diagonal(3, 3)],
    ids=["fc-relu-3", "conv-shared", "diag-3"],
)
def test_weighted_gradients_are_the_jacobians_rows_summed(net):
    # The stiff Jacobian's difference columns need only sum_i w_i dq_i/dtheta;
    # the one-pass version must be that sum of the full Jacobian's rows, with
    # the signs' pattern or another one. Shared weights accumulate in both.
    rng = np.random.default_rng(3)
    X = rng.normal(size=(4, net.input_dim))
    y = np.array([1.0, -1.0, 1.0, 1.0])
    thetas = rng.normal(size=(3, net.num_parameters))
    w = rng.random((3, 4))
    _, J, (z, _) = net.unchecked_margin_jacobians(thetas, X, y)
    patterns = [None]
    if z.shape[1]:
        patterns.append(rng.integers(0, 2, size=z.shape).astype(float))
    for pattern in patterns:
        J = net.unchecked_margin_jacobians(thetas, X, y, pattern)[1]
        np.testing.assert_allclose(
            net.unchecked_weighted_gradients(thetas, X, y, w, pattern),
            np.einsum("bn,bnp->bp", w, J),
            rtol=1e-13,
            atol=1e-13,
        )


def test_thm32_batch_gives_the_single_runs_answers(thm32):
    c, batch, single, stats = thm32
    assert_same_answers(c.network, batch, single, direction_tol=DIRECTION_TOL)
    # The construction's limit, neuron 2 zero: what the sweep's verdict reads.
    np.testing.assert_allclose(batch[0].theta_tilde, c.limit, atol=1e-6)
    assert stats["handoffs"] == 0 and stats["collapsed_rows"] == 1
    assert isinstance(batch[5], StationaryPointError)
    assert isinstance(batch[6], StationaryPointError) and stats["pinned_rows"] == 2


def test_thm32_batch_trajectories_are_trajectories(thm32):
    _, batch, single, _ = thm32
    for b, s in zip(batch, single):
        if isinstance(s, Exception):
            continue
        assert b.phase[0] == "fit" and b.phase[-1] == "far"
        assert np.all(np.diff(b.log_norms[b.phase.index("far") :]) > 0)
        assert b.log_norm == pytest.approx(s.log_norm, abs=1.0)
        assert b.steps["switch_log_norm"] == pytest.approx(
            s.steps["switch_log_norm"], rel=1e-8
        )
    # Neuron 2 of the construction never moves: GF leaves it alone. Its drift is
    # integration error against a neuron 1e-9 of ||theta|| (single run: 4e-7).
    frozen = batch[0].thetas[:, [2, 3, 5]]
    np.testing.assert_allclose(
        frozen, np.broadcast_to(frozen[0], frozen.shape), rtol=1e-5
    )


def test_handoff_is_counted_and_returned_without_rerun():
    c = get("thm3.2")
    stats = {}
    out = gradient_flows(
        c.network, c.case.X, c.case.y, sweep_inits([4, 5]), handoff=False,
        pin_kinks=False, stats=stats, **SWEEP,
    )  # fmt: skip
    assert isinstance(out[0], HandoffRequired) and "kink" in str(out[0])
    assert isinstance(out[1], StationaryPointError)
    assert stats["handoffs"] == 1


def test_a_row_handed_off_stays_handed_off():
    # A step can hand a row off (its step size) and still reach the end of the
    # phase in the same sweep; the handoff stands, and the row goes to the
    # single run rather than out with the batch's answer.
    from invariants.batch.fields import BatchField
    from invariants.batch.rows import OUT, Rows

    c = get("thm3.2")
    thetas = sweep_inits([6, 9])
    fld = BatchField(c.network, c.case.X, c.case.y, "exponential", 2)
    rows = Rows(fld, thetas, {"max_evaluations": 10})
    rows.hand_off(np.array([0]), "step size")
    rows.finish(np.array([0, 1]), StationaryPointError("done"))
    assert rows.phase[0] == OUT and rows.outcome[0] is None
    assert rows.why == {0: "step size"}
    assert isinstance(rows.outcome[1], StationaryPointError)


def test_comparison_fails_on_a_handoff_and_on_a_perturbed_field(monkeypatch, thm32):
    c, _, single, _ = thm32
    rows = [1, 2, 6]  # k = 6, 9, 4
    thetas = np.vstack([c.case.theta0, sweep_inits(SWEEP_KS)])[rows]
    expected = [single[r] for r in rows]
    # Without pinning, k = 4's kink is the single run's: an unfinished row.
    unfinished = gradient_flows(
        c.network, c.case.X, c.case.y, thetas, handoff=False, pin_kinks=False, **SWEEP
    )
    with pytest.raises(AssertionError, match="row 2: batch 'HandoffRequired'"):
        assert_same_answers(c.network, unfinished, expected, direction_tol=1e-7)

    # A sliding field that drifts along theta_0 ends somewhere else.
    true_velocity = BatchField.sliding_velocity

    def drifting(self, rows, phi, active):
        v, failed = true_velocity(self, rows, phi, active)
        return v + 1e-3 * np.eye(phi.shape[1])[0], failed

    monkeypatch.setattr(BatchField, "sliding_velocity", drifting)
    # (max_log_norm 30: the drifting direction never settles; give up early.)
    broken = gradient_flows(
        c.network, c.case.X, c.case.y, thetas[:2], max_log_norm=30.0, **SWEEP
    )
    gaps = answer_gaps(c.network, broken, expected[:2])
    assert all(g["batch"] != "limit" or g["gap"] > 1e-4 for g in gaps), gaps
    with pytest.raises(AssertionError, match="disagree on 2 of 2"):
        assert_same_answers(c.network, broken, expected[:2], direction_tol=1e-7)


def test_one_dataset_per_row_matches_single():
    net = fully_connected([2, 3, 1], "linear")
    rng = np.random.default_rng(7)
    Xs = rng.normal(size=(3, 4, 2))
    w = rng.normal(size=(3, 2))
    ys = np.where(np.einsum("bnd,bd->bn", Xs, w) > 0, 1.0, -1.0)
    thetas = rng.normal(size=(3, net.num_parameters))
    batch = gradient_flows(net, Xs, ys, thetas, target_norm=1e4)
    single = [
        gradient_flow(net, Xs[b], ys[b], thetas[b], target_norm=1e4) for b in range(3)
    ]
    # Same clock end (log 1e4), so only integration error separates them.
    assert_same_answers(net, batch, single, direction_tol=1e-7)
    for b, s in zip(batch, single):
        np.testing.assert_allclose(b.X, s.X)
        assert b.log_norm == pytest.approx(s.log_norm)


def test_bad_shapes_are_refused():
    net = fully_connected([2, 3, 1], "linear")
    with pytest.raises(ValueError, match="per-row datasets"):
        gradient_flows(net, np.zeros((2, 4, 2)), np.ones((2, 4)), np.ones((3, 9)))
    with pytest.raises(ValueError, match="rtol"):
        gradient_flows(net, np.eye(2), np.ones(2), np.ones((1, 9)), rtol=1.0)


# -- pinned kinks (invariants.batch.pins) ---------------------------------------------


def _on_kinks(net, X, thetas, kinks):
    """thetas with the incoming weights of each kink's neuron projected so that its
    pre-activation on the kink's sample is 0 (first layer first; distinct
    neurons)."""
    thetas = thetas.copy()
    for l, i, a in sorted(kinks):
        lo = net.layer_slices[l - 1].start
        d = net.widths[l - 1]
        for th in thetas:
            h = X[i]
            for W in net.weight_matrices(th)[: l - 1]:
                h = np.maximum(W @ h, 0.0)
            w = th[lo + a * d : lo + (a + 1) * d]
            w -= (w @ h) / (h @ h) * h
    return thetas


@pytest.mark.parametrize(
    "widths, pinned",
    [
        ([3, 3, 1], [(1, 1, 1)]),
        ([3, 3, 1], [(1, 1, 1), (1, 3, 0)]),
        ([3, 3, 1], [(1, 0, 2), (1, 2, 1)]),
        ([3, 3, 2, 1], [(2, 2, 0)]),
        ([3, 3, 2, 1], [(2, 1, 0), (1, 2, 1)]),
        ([3, 3, 2, 1], [(2, 2, 0), (1, 3, 1)]),
        ([3, 3, 2, 1], [(2, 1, 0), (2, 2, 1)]),
    ],
)
def test_batched_slopes_solve_the_single_runs_sliding_condition(widths, pinned):
    # The sliding condition D . v + KAPPA z = 0 is linear in the slopes of kinks
    # on distinct samples (at depth 2 always): the batch's slopes must satisfy
    # it in the single run's own terms (its Field with those slopes), to rounding,
    # and give the single run's velocity; where `kinks.solve_slopes`'s bounded
    # Newton iteration converges, at its slopes. Deeper, a kink's gradient D
    # depends on theta, and on a layer-2 kink every first-layer weight moves it.
    from invariants.batch.pins import Pins
    from invariants.kinks import KAPPA, SLOPE_TOL, solve_slopes

    net = fully_connected(widths, "relu")
    rng = np.random.default_rng(27)
    X, y = rng.normal(size=(5, 3)), np.array([1.0, 1.0, -1.0, 1.0, -1.0])
    theta = _on_kinks(net, X, rng.normal(size=(2, net.num_parameters)), pinned)
    fld = BatchField(net, X, y, "exponential", 2)
    fld.pins = pins = Pins(net, X, y, 2)
    for b in range(2):
        for kink in pinned:
            pins.pin(b, pins.kinks.index(kink))
    single = Field(net, X, y, "exponential")
    s = np.array([0.3, 1.2])
    phis = theta / np.linalg.norm(theta, axis=1, keepdims=True)
    checks = [
        (lambda: fld.unit_velocity(np.arange(2), theta)[0], theta,
         lambda b: lambda st, sl: single.unit_velocity(st, sl)),
        (lambda: fld.log_norm_velocity(np.arange(2), s, phis), phis,
         lambda b: lambda st, sl: single.log_norm_velocity(s[b], st, sl)),
    ]  # fmt: skip
    converged = 0
    for batch_velocity, states, velocity in checks:
        v = batch_velocity()
        for b in range(2):
            vel = velocity(b)

            def residual(alpha, state=states[b], vel=vel):
                slopes = dict(zip(pinned, alpha))
                v1 = vel(state, slopes)
                z, Dz = net.preactivation_gradients(state, X, pinned, slopes)
                size = np.linalg.norm(Dz, axis=1) * np.linalg.norm(v1) + np.abs(z)
                return np.abs(Dz @ v1 + KAPPA * z) / size, v1

            alpha = pins.alpha[b, : len(pinned)]
            g, v1 = residual(alpha)
            assert np.all(g <= 1e-14), g
            np.testing.assert_allclose(v[b], v1, rtol=1e-13, atol=1e-15)
            newton = solve_slopes(net, X, states[b], pinned, vel)[0]
            if np.all(residual(newton)[0] <= SLOPE_TOL):
                converged += 1
                np.testing.assert_allclose(alpha, newton, atol=1e-9)
    assert converged >= 2


def _kink_case():
    from invariants.casefile import Case
    from tests.test_flow import KINK_CASE

    return Case.from_dict(KINK_CASE)


PINNED_OPTIONS = {"target_norm": 1e6, "max_evaluations": 100_000}


@pytest.fixture(scope="module")
def kink_case():
    case = _kink_case()
    theta0 = np.asarray(case.theta0, float)[None]
    single = gradient_flow(case.network, case.X, case.y, theta0[0], **PINNED_OPTIONS)
    return case, theta0, single


def test_a_pinned_sliding_row_stays_in_the_batch_and_agrees(kink_case):
    # tests/test_flow.py's Filippov case: two kinks pinned in the fit phase and held
    # through the stiff and sliding phases. Both runs stop at log 1e6, so only
    # integration error separates them (measured 1e-15; the tolerance is the
    # module's, see its docstring).
    case, theta0, single = kink_case
    stats = {}
    batch = gradient_flows(
        case.network, case.X, case.y, theta0, handoff=False, stats=stats,
        **PINNED_OPTIONS,
    )  # fmt: skip
    assert stats["handoffs"] == 0 and stats["pinned_rows"] == 1
    assert_same_answers(case.network, batch, [single], direction_tol=DIRECTION_TOL)
    for key in ("kinks_pinned", "kinks_released", "kinks_crossed"):
        assert batch[0].steps[key] == single.steps[key]
    assert batch[0].steps["switch_log_norm"] == pytest.approx(
        single.steps["switch_log_norm"], rel=1e-8
    )
    # pin_kinks=False: the single run's business again.
    unpinned = gradient_flows(
        case.network, case.X, case.y, theta0, handoff=False, pin_kinks=False,
        **PINNED_OPTIONS,
    )  # fmt: skip
    assert isinstance(unpinned[0], HandoffRequired) and "kink" in str(unpinned[0])


def test_comparison_fails_on_a_broken_pinning(monkeypatch, kink_case):
    # Slopes stuck at 0 (ReLU'(0) = 0 on a held kink): the path leaves the
    # surface it should slide along, and the agreement check says so. (With the
    # true slopes, the test above finishes the row at 0 handoffs.)
    from invariants.batch.pins import Pins

    case, theta0, single = kink_case
    true_solve = Pins.solve

    def stuck(self, p, samples, valid, D, E, G0, rhs_of, previous):
        alpha, _, Fa, singular, free = true_solve(
            self, p, samples, valid, D, E, G0, rhs_of, previous
        )
        return np.zeros_like(alpha), G0, Fa, singular, free

    monkeypatch.setattr(Pins, "solve", stuck)
    # Off its surface the path chatters and the stiff phase crawls (7,000 steps
    # for 23 s, then the sliding velocity fails): a smaller budget ends it sooner,
    # as a row the batch could not finish, which is a disagreement too.
    options = {**PINNED_OPTIONS, "max_evaluations": 5_000}
    broken = gradient_flows(
        case.network, case.X, case.y, theta0, handoff=False, **options
    )
    with pytest.raises(AssertionError, match="disagree on 1 of 1"):
        assert_same_answers(case.network, broken, [single], direction_tol=DIRECTION_TOL)


# -- a neuron held at the origin of its incoming weights -----------------------------

# Sweep draws (seed 0) whose second neuron (v < 0) is pushed onto its kinks on both
# samples, which span R^2: its weights reach 0 and stay there. 227 and 284 then
# reach Theorem 3.2's limit with the other neuron; 4 never fits.
COLLAPSING_KS = (227, 284, 4)


@pytest.fixture(scope="module")
def collapsing():
    c = get("thm3.2")
    thetas = sweep_inits(COLLAPSING_KS)
    single = singles(c.network, c.case.X, c.case.y, thetas, **SWEEP)
    return c, thetas, single


def test_a_neuron_at_the_origin_is_let_go_and_the_answers_agree(collapsing):
    c, thetas, single = collapsing
    stats = {}
    batch = gradient_flows(
        c.network, c.case.X, c.case.y, thetas, handoff=False, stats=stats, **SWEEP
    )
    assert stats["handoffs"] == 0 and stats["collapsed_rows"] == 3
    assert_same_answers(c.network, batch, single, direction_tol=DIRECTION_TOL)
    for traj in batch[:2]:
        limit = traj.theta_tilde  # up to the order of the two neurons
        if abs(limit[4]) < abs(limit[5]):
            limit = limit[[2, 3, 0, 1, 5, 4]]
        np.testing.assert_allclose(limit, c.limit, atol=1e-6)
        # From the collapse on, the neuron's incoming weights are exactly 0 and its
        # output weight does not move (ReLU(0) = 0 multiplies its gradient): its
        # drift is integration error against a weight 1e-9 of ||theta||, as for
        # the construction's frozen neuron above.
        theta = traj.thetas[-1]
        dead = 1 if np.all(theta[2:4] == 0.0) else 0
        assert np.all(theta[2 * dead : 2 * dead + 2] == 0.0)
        v = traj.thetas[:, 4 + dead]
        held = np.flatnonzero(np.all(traj.thetas[:, 2 * dead : 2 * dead + 2] == 0, 1))
        assert held.size >= 2 and np.all(held == np.arange(held[0], len(v)))
        np.testing.assert_allclose(v[held], v[held[0]], rtol=1e-5)
    assert isinstance(batch[2], StationaryPointError)


def test_comparison_fails_when_the_wrong_neuron_is_let_go(monkeypatch, collapsing):
    # The collapse zeroing the other neuron's weights: the batch's limits are no
    # longer GF's, and the agreement check says so.
    from invariants.batch.pins import Pins

    c, thetas, single = collapsing
    true_collapse = Pins.collapse

    def other_neuron(self, r, j):
        true_collapse(self, r, j)
        return self.incoming[1 - int(self.neuron[j])]

    monkeypatch.setattr(Pins, "collapse", other_neuron)
    broken = gradient_flows(
        c.network, c.case.X, c.case.y, thetas[:2], handoff=False, **SWEEP
    )
    with pytest.raises(AssertionError, match="disagree on 2 of 2"):
        assert_same_answers(c.network, broken, single[:2], direction_tol=DIRECTION_TOL)


# Seed 0, k = 189 and 214: a kink pinned in the fit phase whose slope is at 0
# (the neuron is dead on the other sample, so GF grazes the surface from below).
# The pull-back took the solved slope a rounding error past 0, the secant put the
# release at the step's start, and the batch handed the row off for its step
# size. Both never fit.
GRAZING_KS = (189, 214)


def test_a_kink_grazed_at_slope_0_stays_in_the_batch_and_agrees():
    c = get("thm3.2")
    thetas = sweep_inits(GRAZING_KS)
    stats = {}
    batch = gradient_flows(
        c.network, c.case.X, c.case.y, thetas, handoff=False, stats=stats, **SWEEP
    )
    assert stats["handoffs"] == 0 and stats["pinned_rows"] == 2
    single = singles(c.network, c.case.X, c.case.y, thetas, **SWEEP)
    assert all(isinstance(r, StationaryPointError) for r in single)
    assert_same_answers(c.network, batch, single, direction_tol=DIRECTION_TOL)


def _teacher_problem(widths, inits, seed):
    """A fully-connected ReLU net, data labelled by a random teacher with no
    margin near 0, and inits drawn around the teacher."""
    net = fully_connected(widths, "relu")
    rng = np.random.default_rng(seed)
    while True:
        teacher = rng.normal(size=net.num_parameters)
        X = rng.normal(size=(5, net.input_dim))
        f = net.outputs(teacher, X)
        if np.min(np.abs(f)) > 1e-2 * np.max(np.abs(f)):
            break
    y = np.where(f > 0, 1.0, -1.0)
    return net, X, y, teacher + 0.5 * rng.normal(size=(inits, net.num_parameters))


def test_a_kink_whose_sample_leaves_the_support_stays_held_and_agrees():
    # A depth-2 ReLU net (the random-architecture benchmark's second): rows 0 and
    # 3 hold a kink whose sample stops being a support vector in the far phase,
    # where its weight underflows and the slope's column of the pinned system is
    # 0. Handed off as singular before; now the slope keeps its value while the
    # field there holds the kink. Row 3 is released at slope 1 with the path
    # alongside the kink: with difference columns from the other side, its stiff
    # phase crawled for 4,713 steps (171,000 evaluations).
    net, X, y, thetas = _teacher_problem([3, 4, 1], 8, [0, 1])
    thetas = thetas[[0, 3]]
    stats = {}
    batch = gradient_flows(net, X, y, thetas, handoff=False, stats=stats, **SWEEP)
    assert stats["handoffs"] == 0 and stats["pinned_rows"] == 2
    assert np.all(stats["steps"][:, 1] < 1500), stats["steps"]
    single = singles(net, X, y, thetas, **SWEEP)
    assert_same_answers(net, batch, single, direction_tol=DIRECTION_TOL)


def test_depth_3_rows_held_on_kinks_stay_in_the_batch_and_agree():
    # The random-architecture benchmark's depth-3 ReLU net: row 6 holds a
    # first-layer kink on the way to its limit, rows 17 and 0 a second-layer
    # kink, sliding along which they reach a point that does not fit. All three
    # were handed off before the batch held kinks past depth 2.
    net, X, y, thetas = _teacher_problem([3, 3, 2, 1], 18, [0, 3])
    thetas = thetas[[6, 17, 0]]
    stats = {}
    batch = gradient_flows(net, X, y, thetas, handoff=False, stats=stats, **SWEEP)
    assert stats["handoffs"] == 0 and stats["pinned_rows"] == 3
    single = singles(net, X, y, thetas, **SWEEP)
    assert all(isinstance(r, StationaryPointError) for r in single[1:])
    assert_same_answers(net, batch, single, direction_tol=DIRECTION_TOL)


def test_a_kink_grazed_at_slope_0_is_not_released_by_the_pull_back(monkeypatch):
    # The depth-2 ReLU net of the random-architecture benchmark, rows 168 and 153:
    # a kink whose neuron is dead on every other sample, so the slope that holds
    # it is 0, while rounding left z at -6e-10. The pull-back then asks for a
    # slope of -1.5e-9, past the release tolerance; released on that, the kink
    # was pinned again at the next step, and so on until the budget was spent.
    # The free slope (no pull-back) decides the release now.
    from invariants.batch import fields

    net, X, y, thetas = _teacher_problem([3, 4, 1], 169, [0, 1])
    thetas = thetas[[168, 153]]
    stats = {}
    batch = gradient_flows(net, X, y, thetas, handoff=False, stats=stats, **SWEEP)
    assert stats["handoffs"] == 0 and stats["pinned_rows"] == 2
    assert_same_answers(
        net, batch, singles(net, X, y, thetas, **SWEEP), direction_tol=DIRECTION_TOL
    )
    true_pinned = fields.BatchField._pinned

    def pulled_back_decides(self, rows, *args):
        out = true_pinned(self, rows, *args)
        self.pins.free[rows] = self.pins.alpha[rows]
        return out

    monkeypatch.setattr(fields.BatchField, "_pinned", pulled_back_decides)
    broken = gradient_flows(
        net, X, y, thetas, handoff=False, **{**SWEEP, "max_evaluations": 15_000}
    )
    assert all("budget" in str(r) for r in broken), broken
