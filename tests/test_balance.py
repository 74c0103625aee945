"""Lemmas C.1-C.4: the balance checkers pass on true gradient flow and fail on paths
that are not gradient flow.

Reference paths are integrated here with solve_ivp (DOP853), not with the project's
simulator, so the checkers are tested on a trajectory from "someone else's trainer".
The initialisations are written out by hand so that no ReLU pre-activation slides
along a kink (an explicit integrator crawls there); each case asserts that the
squared norms being balanced really move, so conservation is not vacuous.
"""

import re

import numpy as np
import pytest
from scipy.integrate import solve_ivp

from invariants import networks as nw
from invariants.balance import (
    SCALE_FLOOR,
    TOLERANCES,
    Drift,
    assert_balanced,
    assert_limit_balanced,
    balance_drifts,
    default_rtol,
    frobenius_balance,
    largest_drift,
    layer_balance,
    limit_balance,
    neuron_balance,
)

REFERENCE_RTOL = TOLERANCES["reference_dop853"].rtol
MAX_RHS_EVALUATIONS = 20_000  # a reference path takes < 2,000; more means sliding

X2 = np.array([[1.0, 0.25], [-1.0, 0.25], [0.3, -1.0], [0.6, 0.8]])
Y2 = np.array([1.0, 1.0, -1.0, 1.0])
# Two patches of two coordinates each; the third point's first patch is inactive.
X4 = np.array([[1.0, 2.0, 0.5, 1.0], [2.0, 0.5, 1.0, 1.0], [-1.0, -0.5, 1.0, 0.5]])
Y4 = np.array([1.0, 1.0, -1.0])
FC_THETA0 = [1.0, 0.5, -1.0, 0.5, 0.0, -1.0, 1.0, 1.0, -1.0]  # [w_1, w_2, w_3, v]
DIAG_THETA0 = [1.0, -1.0, 1.0, 1.0, 1.0, -1.0]
CONV_THETA0 = [1.0, 1.0, 1.0, -0.5]  # [filter w, v_1, v_2]

CASES = {
    f"{family}-{act}": (build(act), X, y, theta0)
    for act in ("linear", "relu")
    for family, build, X, y, theta0 in (
        ("fc-2-3-1", lambda a: nw.fully_connected([2, 3, 1], a), X2, Y2, FC_THETA0),
        ("diagonal-2-3", lambda a: nw.diagonal(2, 3, a), X2, Y2, DIAG_THETA0),
        ("conv-4-2-2", lambda a: nw.convolutional(4, 2, 2, a), X4, Y4, CONV_THETA0),
    )
}


class _SlidingError(RuntimeError):
    pass


def exact_gradient(network, X, y):
    """-grad L for L = sum_i exp(-q_i): J^T exp(-q)."""

    def field(theta):
        q, J = network.unchecked_margin_jacobian(theta, X, y)
        return J.T @ np.exp(-q)

    return field


def integrate(field, theta0, *, T=4.0, K=21):
    """K checkpoints of d theta/dt = field(theta) on [0, T], DOP853 at rtol 1e-12."""
    calls = [0]

    def rhs(_, theta):
        calls[0] += 1
        if calls[0] > MAX_RHS_EVALUATIONS:
            raise _SlidingError("the reference path reached a sliding kink")
        return field(theta)

    sol = solve_ivp(
        rhs,
        (0.0, T),
        np.asarray(theta0, dtype=float),
        method="DOP853",
        rtol=1e-12,
        atol=1e-14,
        t_eval=np.linspace(0.0, T, K),
    )
    assert sol.success, sol.message
    return sol.y.T


def gradient_descent(field, theta0, *, eta, steps):
    thetas = [np.asarray(theta0, dtype=float)]
    for _ in range(steps):
        thetas.append(thetas[-1] + eta * field(thetas[-1]))
    return np.array(thetas)


@pytest.fixture(scope="module")
def flows():
    """The reference GF path of every case, integrated once per module."""
    return {
        name: integrate(exact_gradient(net, X, y), theta0)
        for name, (net, X, y, theta0) in CASES.items()
    }


# -- 1. true gradient flow passes -----------------------------------------------------


@pytest.mark.parametrize("name", sorted(CASES))
def test_every_law_holds_along_gradient_flow(flows, name):
    network = CASES[name][0]
    thetas = flows[name]
    squared = [np.sum(thetas[:, s] ** 2, axis=1) for s in network.layer_slices]
    # Each layer's squared norm changes by over 30 %: the difference is not
    # conserved merely because nothing moved.
    assert min(abs(s[-1] - s[0]) / s[0] for s in squared) > 0.3

    drifts = assert_balanced(network, thetas, rtol=REFERENCE_RTOL)
    assert drifts, "at least C.2 applies to every depth-2+ network"
    assert largest_drift(drifts).relative_drift < REFERENCE_RTOL


@pytest.mark.parametrize("name", sorted(CASES))
def test_laws_that_apply_are_listed(flows, name):
    network = CASES[name][0]
    keys = set(balance_drifts(network, flows[name]))
    c2 = {f"C.2 layers {l}-{l + 1}" for l in range(1, network.depth)}
    if name.startswith("fc"):
        c3 = {f"C.3 neuron {j}" for j in (1, 2, 3)}
        assert keys == c2 | {"C.1 layers 1-2"} | c3
    elif name.startswith("diagonal"):
        neurons = {f"C.1/C.3 neuron ({l}, {j})" for l in (1, 2) for j in (1, 2)}
        assert keys == c2 | neurons
    else:
        assert keys == c2  # shared filter: only the layer law


def test_frobenius_pairs_equal_layer_law_on_fully_connected(flows):
    network = CASES["fc-2-3-1-relu"][0]
    thetas = flows["fc-2-3-1-relu"]
    fro = frobenius_balance(network, thetas)
    c2 = layer_balance(network, thetas)
    np.testing.assert_allclose(
        fro["C.1 layers 1-2"].values, c2["C.2 layers 1-2"].values, rtol=1e-14
    )
    per_neuron = neuron_balance(network, thetas)
    for j in (1, 2, 3):
        np.testing.assert_array_equal(
            fro[f"C.1 neuron (1, {j})"].values, per_neuron[f"C.3 neuron {j}"].values
        )


def test_deeper_fully_connected_per_neuron_law():
    network = nw.fully_connected([2, 3, 2, 1], "linear")
    theta0 = np.linspace(-1.0, 1.0, network.num_parameters) + 0.1
    thetas = integrate(exact_gradient(network, X2, Y2), theta0)
    drifts = assert_balanced(network, thetas, rtol=REFERENCE_RTOL)
    assert "C.1 neuron (2, 2)" in drifts and "C.1 layers 2-3" in drifts


@pytest.mark.parametrize("act", ["linear", "relu"])
def test_per_neuron_law_fails_and_is_refused_with_a_shared_filter(flows, act):
    network = CASES[f"conv-4-2-2-{act}"][0]
    thetas = flows[f"conv-4-2-2-{act}"]
    with pytest.raises(ValueError, match="no-share"):
        neuron_balance(network, thetas)
    # What neuron_balance would measure if it ignored sharing: ||w||^2 - v_j^2 with
    # w the one filter both neurons use. It drifts by O(1) while C.2 holds.
    w2 = np.sum(thetas[:, :2] ** 2, axis=1)
    naive = [
        Drift(f"naive neuron {j}", "||w||^2 - v_j^2", w2 - v**2, w2 + v**2)
        for j, v in enumerate(thetas[:, 2:].T, start=1)
    ]
    assert largest_drift(naive).relative_drift > 0.1
    assert layer_balance(network, thetas)["C.2 layers 1-2"].relative_drift < 1e-10


# -- 2. paths that are not gradient flow fail ------------------------------------------


def test_large_step_gradient_descent_is_flagged():
    network, X, y, theta0 = CASES["fc-2-3-1-relu"]
    thetas = gradient_descent(exact_gradient(network, X, y), theta0, eta=0.5, steps=20)
    with pytest.raises(AssertionError) as info:
        assert_balanced(network, thetas)
    message = str(info.value)
    worst = largest_drift(balance_drifts(network, thetas))
    assert worst.name in message
    assert f"checkpoint {worst.worst_checkpoint} of 21" in message
    assert network.describe() in message


def test_gradient_descent_drift_is_first_order_in_the_step():
    # Why GD has no default tolerance: over a fixed time its drift scales like eta.
    network, X, y, theta0 = CASES["fc-2-3-1-linear"]
    field = exact_gradient(network, X, y)
    drift = [
        largest_drift(
            balance_drifts(
                network, gradient_descent(field, theta0, eta=eta, steps=round(2 / eta))
            )
        ).relative_drift
        for eta in (0.01, 0.005)
    ]
    assert 1.6 < drift[0] / drift[1] < 2.4
    assert drift[1] > TOLERANCES["gradient_flow"].rtol


def test_flipped_layer_gradient_is_flagged():
    network, X, y, theta0 = CASES["fc-2-3-1-relu"]
    exact = exact_gradient(network, X, y)
    sign = np.ones(network.num_parameters)
    sign[network.layer_slices[1]] = -1.0
    thetas = integrate(lambda theta: sign * exact(theta), theta0, T=1.0)
    with pytest.raises(AssertionError, match=r"C\.\d .*checkpoint \d+ of 21"):
        assert_balanced(network, thetas)


def first_use_gradient(network, X, y):
    """-grad L with each shared parameter's gradient taken from its first use only
    (row-major in its index map) instead of summed over uses: a classic bug."""
    masks = [P >= 0 for P in network.index_maps]
    unshared = nw.no_share(masks, network.activation)
    # unshared parameter -> the shared parameter it copies, per layer, row-major
    sources = [P[M] for P, M in zip(network.index_maps, masks)]
    expand = np.concatenate(
        [s.start + src for s, src in zip(network.layer_slices, sources)]
    )
    first = np.array([np.flatnonzero(expand == p)[0] for p in range(expand.max() + 1)])

    def field(theta):
        q, J_unshared = unshared.unchecked_margin_jacobian(theta[expand], X, y)
        # Sanity of the construction: summing over uses gives the true gradient.
        J_true = np.zeros((len(q), network.num_parameters))
        np.add.at(J_true.T, expand, J_unshared.T)
        np.testing.assert_allclose(J_true, network.margin_jacobian(theta, X, y)[1])
        return J_unshared[:, first].T @ np.exp(-q)

    return field


@pytest.mark.parametrize("act", ["linear", "relu"])
def test_shared_gradient_counted_once_is_flagged(act):
    network, X, y, theta0 = CASES[f"conv-4-2-2-{act}"]
    thetas = integrate(first_use_gradient(network, X, y), theta0, T=1.0)
    assert layer_balance(network, thetas)["C.2 layers 1-2"].relative_drift > 1e-2
    with pytest.raises(AssertionError, match=r"relative drift of C\.2 layers 1-2"):
        assert_balanced(network, thetas)


def test_one_bad_checkpoint_mid_path_is_found(flows):
    # A drift that comes back (or a single corrupted checkpoint) must not hide
    # behind a good final point.
    network = CASES["diagonal-2-3-relu"][0]
    thetas = flows["diagonal-2-3-relu"].copy()
    thetas[10, network.layer_slices[0]] *= 1.01
    with pytest.raises(AssertionError, match=r"checkpoint 10 of 21"):
        assert_balanced(network, thetas)


def test_drift_arithmetic():
    # |Q_k - Q_0| / max(S_0, S_k), worst over k, 0 where both scales are 0
    drift = Drift("Q", "a - b", [1.0, 2.0, 1.5, 1.0], [1.0, 4.0, 1.0, 1.0])
    np.testing.assert_allclose(drift.relative_drifts, [0.0, 0.25, 0.5, 0.0])
    assert (drift.relative_drift, drift.worst_checkpoint) == (0.5, 2)
    assert drift.absolute_drift == 1.0
    assert Drift("Q", "a - b", [0.0, 1.0], [10.0, 2.0]).relative_drift == 0.1
    assert Drift("Q", "a - b", [0.0, 0.0], [0.0, 0.0]).relative_drift == 0.0
    assert drift.summary()["worst_checkpoint"] == 2
    with pytest.raises(ValueError, match="one length"):
        Drift("Q", "a - b", [0.0, 1.0], [1.0])


def test_unbalanced_limit_is_flagged():
    network = nw.fully_connected([2, 2, 1], "relu")
    # neuron 1: ||w_1|| = 2 = 2 |v_1|; neuron 2 balanced
    theta_tilde = np.array([2.0, 0.0, 0.0, -1.0, 1.0, 1.0])
    imbalance = limit_balance(network, theta_tilde)
    assert imbalance["C.4 neuron 1"] == pytest.approx(1.0 / np.sqrt(7.0))
    assert imbalance["C.4 neuron 2"] == 0.0
    with pytest.raises(AssertionError, match=r"C\.4 neuron 1.* should be <= 1\.0e-06"):
        assert_limit_balanced(network, theta_tilde)


def test_balanced_limit_passes_at_any_scale():
    # Thm 4.2 (2): w~_j = x_j, v~_j = 1.
    network = nw.fully_connected([2, 4, 1], "relu")
    theta_tilde = np.array([0, 1, 1, 0, 0, -1, -1, 0, 1, 1, 1, 1], dtype=float)
    for c in (1.0, 1e8):
        assert max(assert_limit_balanced(network, c * theta_tilde).values()) == 0.0


# -- 3. tolerances respect scale ------------------------------------------------------


def test_scaled_path_passes_where_an_absolute_check_would_not(flows):
    network = CASES["fc-2-3-1-relu"][0]
    far = 1e6 * flows["fc-2-3-1-relu"]
    drifts = assert_balanced(network, far)  # default tolerance
    worst = largest_drift(drifts)
    assert worst.relative_drift < REFERENCE_RTOL
    # The same drift measured absolutely is far above any sensible absolute bound.
    assert max(d.absolute_drift for d in drifts.values()) > 1e3 * default_rtol(float)


def test_dead_neuron_is_judged_against_the_floor():
    network, X, y, theta0 = CASES["fc-2-3-1-relu"]
    theta0 = np.array(theta0)
    theta0[[4, 5, 8]] = 0.0  # w_3 = 0, v_3 = 0: no gradient reaches neuron 3
    thetas = integrate(exact_gradient(network, X, y), theta0, T=1.0)
    dead = neuron_balance(network, thetas)["C.3 neuron 3"]
    assert np.all(dead.values == 0.0) and dead.relative_drift == 0.0
    np.testing.assert_allclose(dead.scales, SCALE_FLOOR * np.sum(thetas**2, axis=1))
    zero = layer_balance(network, np.zeros((3, network.num_parameters)))
    assert zero["C.2 layers 1-2"].relative_drift == 0.0  # 0/0 is no drift


def test_tiny_neuron_with_integrator_sized_errors_is_not_flagged():
    # An integrator controls errors relative to ||theta||, so a neuron far smaller
    # than theta carries errors of ~rtol ||theta|| in each coordinate. Judged
    # against its own ||w||^2 + v^2 that would look like a large drift; the floor
    # SCALE_FLOOR ||theta||^2 keeps it at the size the integrator answers for.
    network, X, y, theta0 = CASES["fc-2-3-1-relu"]
    theta0 = np.array(theta0)
    theta0[[4, 5, 8]] = 0.0
    thetas = integrate(exact_gradient(network, X, y), theta0, T=1.0)
    noise = np.random.default_rng(0).normal(scale=1e-9, size=(len(thetas), 3))
    thetas[:, [4, 5, 8]] = 1e-4 + noise * np.linalg.norm(thetas, axis=1)[:, None]
    tiny = neuron_balance(network, thetas)["C.3 neuron 3"]
    own_scale = np.sum(thetas[:, [4, 5, 8]] ** 2, axis=1)
    unfloored = np.max(tiny.absolute_drifts / np.maximum(own_scale[0], own_scale))
    assert unfloored > default_rtol(float)  # would be flagged without the floor
    assert tiny.relative_drift < 1e-9
    assert_balanced(network, thetas)


def test_tolerance_boundary(flows):
    network, thetas = CASES["fc-2-3-1-relu"][0], flows["fc-2-3-1-relu"]
    measured = largest_drift(balance_drifts(network, thetas)).relative_drift
    assert_balanced(network, thetas, rtol=1.01 * measured)
    with pytest.raises(AssertionError, match=f"= {measured:.3e}, should be <="):
        assert_balanced(network, thetas, rtol=0.99 * measured)


def test_single_checkpoint_has_no_drift():
    network, _, _, theta0 = CASES["diagonal-2-3-relu"]
    assert largest_drift(assert_balanced(network, [theta0])).relative_drift == 0.0


def test_default_tolerance_follows_the_dtype(flows):
    assert default_rtol(np.float64) == TOLERANCES["gradient_flow"].rtol
    assert default_rtol(np.float32) == TOLERANCES["float32"].rtol > 1e-4
    assert all(t.reason and 0 < t.rtol < 1e-2 for t in TOLERANCES.values())
    # A float32 copy of an exact path is rounded at ~6e-8: within the float32 default.
    network = CASES["fc-2-3-1-relu"][0]
    assert_balanced(network, flows["fc-2-3-1-relu"].astype(np.float32))


# -- one message shape -----------------------------------------------------------------

MESSAGE = re.compile(
    r"^relative (drift|imbalance) of (?P<name>C\.[\d/C.]+ [^\[]+) \[.+\] = "
    r"\d\.\d{3}e[+-]\d+, should be <= \d\.\de[+-]\d+; network: .+; .+; case X$"
)


def test_every_failure_has_one_message_shape():
    network, X, y, theta0 = CASES["fc-2-3-1-linear"]
    thetas = gradient_descent(exact_gradient(network, X, y), theta0, eta=0.5, steps=5)
    messages = []
    with pytest.raises(AssertionError) as drift_info:
        assert_balanced(network, thetas, context="case X")
    messages.append(str(drift_info.value))
    with pytest.raises(AssertionError) as limit_info:
        assert_limit_balanced(network, [2.0, 0, 0, 1, 0, 1, 1, 1, 1], context="case X")
    messages.append(str(limit_info.value))
    for message in messages:
        assert MESSAGE.match(message), message


# -- 4. bad input --------------------------------------------------------------------

FC = nw.fully_connected([2, 3, 1], "relu")
GOOD = np.ones((2, FC.num_parameters))
BAD_THETAS = {
    "1-D": (np.ones(FC.num_parameters), r"2-D \(K, P\).*shape \(9,\)"),
    "3-D": (np.ones((2, 9, 1)), r"2-D.*shape \(2, 9, 1\)"),
    "wrong P": (np.ones((2, 8)), r"P = 8 columns \(shape \(2, 8\)\).*9 parameters"),
    "empty": (np.ones((0, 9)), r"empty \(K = 0"),
    "NaN": (np.where(np.eye(2, 9) == 1, np.nan, GOOD), r"finite; thetas\[0, 0\] = nan"),
    "inf": (np.where(np.eye(2, 9, 3) == 1, np.inf, GOOD), r"thetas\[0, 3\] = inf"),
    "complex": (GOOD + 1j, r"real numbers"),
    "strings": (np.full((2, 9), "a"), r"real numbers"),
    "ragged": ([[1.0] * 9, [1.0] * 8], r"thetas must be a \(K, 9\) array"),
}
CHECKERS = {
    "layer_balance": layer_balance,
    "frobenius_balance": frobenius_balance,
    "neuron_balance": neuron_balance,
    "balance_drifts": balance_drifts,
    "assert_balanced": assert_balanced,
}


@pytest.mark.parametrize("bad", sorted(BAD_THETAS))
@pytest.mark.parametrize("checker", sorted(CHECKERS))
def test_bad_thetas_raise_value_error(checker, bad):
    thetas, pattern = BAD_THETAS[bad]
    with pytest.raises(ValueError, match=pattern):
        CHECKERS[checker](FC, thetas)


CONV = nw.convolutional(4, 2, 2, "relu")
DIAG = nw.diagonal(2, 2, "relu")
WRONG_NETWORK = {
    "frobenius on diagonal": (frobenius_balance, DIAG, "requires a fully-connected"),
    "frobenius on conv": (frobenius_balance, CONV, "requires a fully-connected"),
    "neuron on conv": (neuron_balance, CONV, r"requires N_no-share.*shared"),
    "layer law at depth 1": (layer_balance, nw.fully_connected([2, 1]), "depth >= 2"),
}


@pytest.mark.parametrize("case", sorted(WRONG_NETWORK))
def test_laws_refuse_networks_they_do_not_cover(case):
    checker, network, pattern = WRONG_NETWORK[case]
    with pytest.raises(ValueError, match=pattern):
        checker(network, np.ones((2, network.num_parameters)))


def test_depth_one_has_no_law():
    linear = nw.fully_connected([2, 1], "linear")
    assert balance_drifts(linear, np.ones((2, 2))) == {}


@pytest.mark.parametrize(
    "network, theta, pattern",
    [
        (CONV, np.ones(4), "depth-2 N_no-share"),
        (nw.diagonal(2, 3), np.ones(6), "depth-2 N_no-share"),
        (FC, np.ones(8), r"theta_tilde must have shape \(9,\)"),
        (FC, np.zeros(9), "no direction"),
    ],
)
def test_limit_balance_rejects_bad_input(network, theta, pattern):
    with pytest.raises(ValueError, match=pattern):
        limit_balance(network, theta)


@pytest.mark.parametrize("rtol", [0.0, -1e-6, np.nan, np.inf, "tight"])
def test_bad_rtol_raises(rtol):
    with pytest.raises(ValueError, match="rtol="):
        assert_balanced(FC, GOOD, rtol=rtol)
    with pytest.raises(ValueError, match="rtol="):
        assert_limit_balanced(FC, GOOD[0], rtol=rtol)


def test_network_must_be_a_network():
    with pytest.raises(TypeError, match="invariants.networks.Network"):
        layer_balance("fc", GOOD)


def test_largest_drift_of_nothing_raises():
    with pytest.raises(ValueError, match="empty"):
        largest_drift({})
