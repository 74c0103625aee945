"""The simulator follows GF's path, reaches the far regime, and fails loudly."""

import math

import numpy as np
import pytest
from scipy.integrate import solve_ivp

from invariants.balance import assert_balanced
from invariants.casefile import Case
from invariants.field import Field
from invariants.flow import (
    FlowError,
    KinkSlidingError,
    StationaryPointError,
    gradient_flow,
    simulate,
)
from invariants.losses import loss_weights
from invariants.networks import convolutional, diagonal, fully_connected

RNG_CASES = {
    # name: (network, seed); data labelled by a teacher so every case is fittable.
    "fc-linear-depth3": (fully_connected([2, 3, 2, 1], "linear"), 5),
    "conv-linear": (convolutional(5, 2, 1, "linear"), 11),
    "diag-relu-depth3": (diagonal(3, 3, "relu"), 3),
    "fc-relu": (fully_connected([3, 3, 1], "relu"), 16),
}


def teacher_case(network, seed, n=5):
    rng = np.random.default_rng(seed)
    while True:
        teacher = rng.normal(size=network.num_parameters)
        X = rng.normal(size=(n, network.input_dim))
        f = network.outputs(teacher, X)
        if np.min(np.abs(f)) > 1e-2 * np.max(np.abs(f)):
            break
    y = np.where(f > 0, 1.0, -1.0)
    theta0 = 0.5 * teacher + 0.3 * rng.normal(size=network.num_parameters)
    return X, y, theta0


def reference_path(network, X, y, theta0, loss, log_norm_end):
    """An independent integration: LSODA on the loss-weighted field F in its own
    clock (a positive change of GF's time), with dense output."""
    fld = Field(network, X, y, loss)

    def rhs(_, theta):
        q, J = network.unchecked_margin_jacobian(theta, X, y)
        return J.T @ loss_weights(q, loss)

    def far_enough(_, theta):
        return math.log(np.linalg.norm(theta)) - log_norm_end

    far_enough.terminal = True
    sol = solve_ivp(
        rhs,
        (0, 1e6),
        theta0,
        method="LSODA",
        rtol=1e-12,
        atol=1e-12,
        dense_output=True,
        events=far_enough,
    )
    assert sol.status == 1, sol.message
    del fld
    return sol


def point_at_log_norm(sol, s):
    """The reference point whose log-norm is s (log-norm is monotone far out)."""
    lo, hi = sol.t[0], sol.t[-1]
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if math.log(np.linalg.norm(sol.sol(mid))) < s:
            lo = mid
        else:
            hi = mid
    return sol.sol(0.5 * (lo + hi))


@pytest.mark.parametrize("name", ["fc-linear-depth3", "conv-linear"])
@pytest.mark.parametrize("loss", ["exponential", "logistic"])
def test_far_checkpoints_lie_on_an_independently_integrated_path(name, loss):
    network, seed = RNG_CASES[name]
    X, y, theta0 = teacher_case(network, seed)
    traj = gradient_flow(network, X, y, theta0, loss, target_norm=math.exp(3.0))
    ref = reference_path(network, X, y, theta0, loss, 3.0)
    far = [k for k, p in enumerate(traj.phase) if p == "far"]
    assert far, "expected far-regime checkpoints"
    for k in far:
        other = point_at_log_norm(ref, traj.log_norms[k])
        a = traj.thetas[k] / np.linalg.norm(traj.thetas[k])
        b = other / np.linalg.norm(other)
        # Both integrations run at tolerance 1e-10..1e-12 per step; 1e-7 leaves room
        # for accumulation over a few hundred steps and the bisection in log-norm.
        assert np.linalg.norm(a - b) < 1e-7, (k, traj.log_norms[k])


@pytest.mark.parametrize("name", sorted(RNG_CASES))
def test_reaches_target_norm_with_unit_smallest_margin(name):
    network, seed = RNG_CASES[name]
    X, y, theta0 = teacher_case(network, seed)
    traj = gradient_flow(network, X, y, theta0)
    assert traj.log_norm == pytest.approx(math.log(1e8), abs=1e-12)
    assert np.linalg.norm(traj.theta_final) == pytest.approx(1e8, rel=1e-9)
    assert np.all(np.isfinite(traj.thetas))
    q = network.margins(traj.theta_tilde, X, y)
    assert np.min(q) == pytest.approx(1.0, abs=1e-12)
    # checkpoints are geometric in ||theta|| far out: memory O(log ||theta||)
    far = np.array([s for s, p in zip(traj.log_norms, traj.phase) if p == "far"])
    assert np.all(np.diff(far) > 0)
    assert len(far) <= 4 * 19 + 2


def test_normalized_margin_grows_far_out():
    network, seed = RNG_CASES["fc-linear-depth3"]
    X, y, theta0 = teacher_case(network, seed)
    traj = gradient_flow(network, X, y, theta0)
    far = np.array([p == "far" for p in traj.phase])
    gamma = traj.normalized_margins()[far]
    # Lyu and Li: the normalised margin is non-decreasing far out (up to rounding).
    assert np.all(np.diff(gamma) > -1e-12 * gamma[1:])


def test_deterministic_bit_for_bit():
    network, seed = RNG_CASES["conv-linear"]
    X, y, theta0 = teacher_case(network, seed)
    a = gradient_flow(network, X, y, theta0, target_norm=1e6)
    b = gradient_flow(network, X, y, theta0, target_norm=1e6)
    assert np.array_equal(a.thetas, b.thetas)
    assert np.array_equal(a.theta_tilde, b.theta_tilde)
    assert a.jacobian_evaluations == b.jacobian_evaluations


def test_sliding_switch_does_not_move_the_path():
    """Past `sliding_margin` the simulator follows the infinitely sharp limit of the
    field. Moving the switch by a factor of 100 must not move the direction reached
    by more than 1e-9: the reduced model's error is O(1 / sliding_margin)."""
    network, seed = RNG_CASES["fc-linear-depth3"]
    X, y, theta0 = teacher_case(network, seed)
    a = gradient_flow(network, X, y, theta0, target_norm=1e7, sliding_margin=1e5)
    b = gradient_flow(network, X, y, theta0, target_norm=1e7, sliding_margin=1e7)
    assert np.linalg.norm(a.direction - b.direction) < 1e-9


def test_far_target_without_overflow():
    network = diagonal(2, 3, "linear")
    X, y = np.array([[1.0, 2.0], [2.0, -0.5]]), np.array([1.0, 1.0])
    traj = gradient_flow(network, X, y, np.ones(6), target_norm=1e30)
    assert traj.log_norm == pytest.approx(math.log(1e30))
    assert np.all(np.isfinite(traj.theta_tilde))


# -- failures are loud and say why -------------------------------------------


def test_zero_initialisation_is_a_stationary_point():
    network = fully_connected([2, 2, 1], "relu")
    X, y = np.array([[1.0, 0.0]]), np.array([1.0])
    with pytest.raises(StationaryPointError, match="theta0 = 0 is a stationary"):
        gradient_flow(network, X, y, np.zeros(6))


def test_data_the_network_cannot_fit_is_reported():
    # A linear network computes a linear function: x and -x cannot both be positive.
    network = fully_connected([1, 1, 1], "linear")
    X, y = np.array([[1.0], [-1.0]]), np.array([1.0, 1.0])
    with pytest.raises((FlowError, StationaryPointError), match="threshold|move"):
        gradient_flow(network, X, y, np.array([0.5, 0.7]), max_fit_length=50.0)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"loss": "hinge"}, "loss="),
        ({"target_norm": -1.0}, "target_norm="),
        ({"target_norm": math.inf}, "target_norm="),
        ({"rtol": 0.5}, "rtol="),
        ({"sliding_margin": 0.5}, "sliding_margin="),
    ],
)
def test_bad_options(kwargs, message):
    network = diagonal(2, 2, "linear")
    with pytest.raises(ValueError, match=message):
        gradient_flow(network, [[1.0, 2.0]], [1.0], np.ones(4), **kwargs)


KINK_CASE = {
    "network": {"family": "fully_connected", "widths": [3, 3, 1], "activation": "relu"},
    "X": [
        [-0.76, 0.184, -0.44],
        [0.77, 1.015, -0.148],
        [-1.49, 1.384, 1.083],
        [-0.299, 2.108, -0.349],
        [-1.137, -0.156, 1.078],
    ],
    "y": [1, 1, 1, 1, -1],
    "theta0": [-1.0, 1.645, -0.94, 0.746, -0.397, 0.529, 0.132, -0.371, 0.434, 0.531,
               -0.324, -1.259],
}  # fmt: skip


def test_flow_slides_along_attracting_kinks_as_euler_does():
    """Found by a random sweep: GF pushes two pre-activations onto zero from both
    sides and slides along the kinks (a Filippov sliding mode). The simulator pins
    them. Reference: explicit Euler on the raw field with ReLU'(0) = 0, which
    chatters across the kinks but converges to the Filippov path as h -> 0, at first
    order; its distance to our checkpoints must shrink with h and be small."""
    case = Case.from_dict(KINK_CASE)
    net = case.network
    traj = simulate(case, target_norm=math.exp(3.0), max_evaluations=100_000)
    assert traj.steps["kinks_pinned"] >= 1
    fit_end = traj.thetas[[k for k, p in enumerate(traj.phase) if p == "fit"][-1]]
    far = [k for k, p in enumerate(traj.phase) if p == "far"]
    field = Field(net, case.X, case.y, case.loss)

    def euler_errors(h):
        phi = fit_end / np.linalg.norm(fit_end)
        s = math.log(np.linalg.norm(fit_end))
        errors = []
        for k in far:
            while s < traj.log_norms[k] - 1e-12:
                step = min(h, traj.log_norms[k] - s)
                phi = phi + step * field.log_norm_velocity(s, phi)
                s += step
            ours = traj.thetas[k] / np.linalg.norm(traj.thetas[k])
            errors.append(np.linalg.norm(phi / np.linalg.norm(phi) - ours))
        return max(errors)

    coarse, fine = euler_errors(1e-3), euler_errors(5e-4)
    # First order: halving h halves the distance (measured 2.2e-4 -> 1.1e-4).
    assert fine < 0.7 * coarse
    assert fine < 3e-4


def test_pinned_kinks_stay_on_their_surface_and_balance_holds():
    case = Case.from_dict(KINK_CASE)
    traj = simulate(case, max_evaluations=100_000)
    assert traj.steps["kinks_pinned"] >= 1
    # Lemma C.1/C.3 hold for the Clarke flow too (z ReLU'(z) = ReLU(z) at any slope).
    assert_balanced(case.network, traj.thetas, rtol=1e-6)
    assert np.min(case.network.margins(traj.theta_tilde, case.X, case.y)) == (
        pytest.approx(1.0, abs=1e-12)
    )


def test_a_failure_on_a_kink_names_the_kink():
    """When the budget runs out while the path sits on a kink, the error says which
    input to which neuron is zero (here: the kink pinned first, at clock 1.18)."""
    case = Case.from_dict(KINK_CASE)
    with pytest.raises(KinkSlidingError, match="neuron 1 of layer 1 on sample 1"):
        simulate(case, max_evaluations=1500)


@pytest.mark.parametrize("eps", [1e-1, 1e-3])
def test_small_margin_data_reach_the_svm_value(eps):
    """Points (eps, 1) and (eps, -1), both labelled +1: separable only by directions
    within eps of e_1, so two margins balance while the margin direction grows slowly
    (a stiff fitting phase). Theorem 3.1's closed form: the SVM without bias is
    u* = (1 / eps, 0), and depth 2 gives ||theta~||^2 = 2 ||u*|| = 2 / eps."""
    net = fully_connected([2, 2, 1], "linear")
    X = np.array([[eps, 1.0], [eps, -1.0]])
    traj = gradient_flow(net, X, np.ones(2), np.array([0.3, -0.2, 0.5, 0.1, 0.7, -0.4]))
    # The far direction is accurate to about 1e-10 relative here; 1e-8 leaves room.
    assert traj.norm_squared == pytest.approx(2.0 / eps, rel=1e-8)


# One sample on a linear convolutional net whose patches x^(1) = (1, 0) and
# x^(2) = (0, 0.9) make the far flow a power iteration with eigenvalue ratio 0.9: the
# direction error decays only like ||theta||^-0.1, and the limit is closed-form
# (the top singular vectors: w = (1, 0), v = (1, 0), balanced, margin 1).
SLOW_NET_ARGS = (3, 2, 1, "linear")
SLOW_X, SLOW_Y = np.array([[1.0, 0.0, 0.9]]), np.array([1.0])
SLOW_THETA0 = np.array([0.6, 0.8, 0.7, 0.5])
SLOW_LIMIT = np.array([1.0, 0.0, 1.0, 0.0])


def test_direction_tol_follows_a_slow_flow_to_its_limit():
    net = convolutional(*SLOW_NET_ARGS)
    near = gradient_flow(net, SLOW_X, SLOW_Y, SLOW_THETA0, target_norm=1e8)
    # ||theta||^-0.1 at 1e8 is 0.158: the point at the target is no limit yet.
    assert np.abs(near.theta_tilde - SLOW_LIMIT).max() > 0.1
    far = gradient_flow(
        net, SLOW_X, SLOW_Y, SLOW_THETA0, direction_tol=1e-10, max_evaluations=100_000
    )
    assert far.steps["direction_rate"] <= 1e-10
    # The remaining error is about rate / 0.1 = 1e-9; 1e-8 leaves a factor 10.
    assert np.abs(far.theta_tilde - SLOW_LIMIT).max() < 1e-8
    assert far.log_norm > 100  # it really had to go far
    assert far.log_norms[-1] == pytest.approx(far.log_norm)


def test_direction_tol_gives_up_at_max_log_norm_with_the_rate():
    net = convolutional(*SLOW_NET_ARGS)
    with pytest.raises(FlowError, match=r"still moves at .* \(max_log_norm\)"):
        gradient_flow(
            net, SLOW_X, SLOW_Y, SLOW_THETA0, direction_tol=1e-10, max_log_norm=40.0
        )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"direction_tol": 0.0}, "direction_tol"),
        ({"direction_tol": 2.0}, "direction_tol"),
        ({"max_log_norm": 10.0}, "max_log_norm"),
        ({"max_log_norm": 351.0}, "max_log_norm"),
    ],
)
def test_bad_convergence_options(kwargs, message):
    net = convolutional(*SLOW_NET_ARGS)
    with pytest.raises(ValueError, match=message):
        gradient_flow(net, SLOW_X, SLOW_Y, SLOW_THETA0, **kwargs)


def test_max_log_norm_stops_where_checkpoints_would_overflow():
    """||theta||^2 and the margins (degree m) of every checkpoint must be finite, so
    the ceiling is 700 / max(2, m): 350 at depth 2, 87.5 at depth 8."""
    from invariants.flow import max_log_norm_for

    assert max_log_norm_for(diagonal(2, 2, "linear")) == 350.0
    deep = diagonal(2, 8, "linear")
    assert max_log_norm_for(deep) == 87.5
    X, y = np.array([[1.0, 1.0]]), np.ones(1)
    with pytest.raises(ValueError, match="overflow a double"):
        gradient_flow(deep, X, y, np.ones(deep.num_parameters), max_log_norm=100.0)
    traj = gradient_flow(
        deep, X, y, np.ones(deep.num_parameters), target_norm=1e30, direction_tol=1e-9
    )
    assert np.all(np.isfinite(traj.directions()))
    assert np.all(np.isfinite(traj.log_losses()))
