"""The class N: outputs, margins and their Jacobian, on every family."""

import numpy as np
import pytest
from hypothesis import event, given, note
from hypothesis import strategies as st

from invariants.networks import (
    convolutional,
    diagonal,
    from_index_maps,
    fully_connected,
    no_share,
)
from strategies import architectures


def draw_point(data, network, n=4):
    seed = data.draw(st.integers(0, 2**32 - 1), label="seed")
    rng = np.random.default_rng(seed)
    theta = rng.normal(size=network.num_parameters)
    X = rng.normal(size=(n, network.input_dim))
    y = rng.choice([-1.0, 1.0], size=n)
    return theta, X, y


def central_difference(network, theta, X, y, h=1e-6):
    cols = []
    for e in np.eye(network.num_parameters):
        up = network.margins(theta + h * e, X, y)
        down = network.margins(theta - h * e, X, y)
        cols.append((up - down) / (2 * h))
    return np.array(cols).T


@given(architectures(), st.data())
def test_jacobian_matches_finite_differences_away_from_kinks(network, data):
    theta, X, y = draw_point(data, network)
    event(f"{network.family} depth {network.depth}")
    note(repr(network))
    fwd = network.forward(theta, X)
    if network.activation == "relu":
        # The finite difference straddles a kink only if some pre-activation is
        # within a few steps h of zero; such draws say nothing about the Jacobian.
        closest = min([np.min(np.abs(Z)) for Z in fwd.preactivations[:-1]] or [np.inf])
        if closest < 1e-4:
            event("near a kink: skipped")
            return
    _, J = network.margin_jacobian(theta, X, y)
    ref = central_difference(network, theta, X, y)
    scale = max(1.0, float(np.max(np.abs(ref))))
    # Central differences with h = 1e-6 carry O(h^2 |Phi'''|) + O(eps / h) error:
    # about 1e-10 relative here; 1e-7 bounds it with room.
    np.testing.assert_allclose(J, ref, rtol=0, atol=1e-7 * scale)


@given(architectures(), st.data(), st.floats(0.1, 10.0))
def test_outputs_are_m_homogeneous(network, data, c):
    theta, X, _ = draw_point(data, network)
    a = network.outputs(c * theta, X)
    b = c**network.depth * network.outputs(theta, X)
    np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12 * np.max(np.abs(b)))


@given(architectures(), st.data())
def test_euler_identity_for_margins(network, data):
    # theta . grad q_i = m q_i for an m-homogeneous margin, kinks included when
    # ReLU'(0) = 0, because z sigma'(z) = sigma(z) there too.
    theta, X, y = draw_point(data, network)
    q, J = network.margin_jacobian(theta, X, y)
    np.testing.assert_allclose(
        J @ theta,
        network.depth * q,
        rtol=1e-10,
        atol=1e-12 * max(1.0, np.max(np.abs(q))),
    )


def test_shared_weight_gradient_is_the_sum_over_its_uses():
    net = convolutional(4, 2, 2, "linear")  # theta = [w_1, w_2, v_1, v_2]
    theta = np.array([0.3, -0.7, 1.5, 2.0])
    x = np.array([[1.0, 2.0, 3.0, 4.0]])
    _, J = net.margin_jacobian(theta, x, np.array([1.0]))
    # Phi = v_1 (w . x[0:2]) + v_2 (w . x[2:4]): dPhi/dw = v_1 x[0:2] + v_2 x[2:4]
    expected_w = 1.5 * x[0, 0:2] + 2.0 * x[0, 2:4]
    np.testing.assert_allclose(J[0, :2], expected_w, rtol=1e-15)
    np.testing.assert_allclose(J[0, 2:], [theta[:2] @ x[0, :2], theta[:2] @ x[0, 2:]])


def test_families_are_told_apart():
    fc = fully_connected([3, 2, 1])
    assert fc.is_fully_connected and fc.is_no_share and fc.depth == 2
    assert fc.num_parameters == 3 * 2 + 2
    dg = diagonal(3, 4)
    assert not dg.is_fully_connected and dg.is_no_share and dg.depth == 4
    assert dg.num_parameters == 12
    cv = convolutional(5, 2, 1)
    assert cv.shares_weights and not cv.is_fully_connected
    ns = no_share([[[True, False], [True, True]], [[True, True]]])
    assert ns.is_no_share and not ns.is_fully_connected and ns.num_parameters == 5


def test_layer_views_follow_the_public_parameter_order():
    net = fully_connected([2, 2, 1])
    theta = np.arange(6.0)  # [w_1, w_2, v]
    W1, W2 = net.weight_matrices(theta)
    np.testing.assert_array_equal(W1, [[0, 1], [2, 3]])
    np.testing.assert_array_equal(W2, [[4, 5]])
    u1, _ = net.layer_parameters(theta)
    np.testing.assert_array_equal(u1, [0, 1, 2, 3])


BAD = [
    (lambda: fully_connected([2, 3]), "last width must be 1"),
    (lambda: fully_connected([2]), "at least an input"),
    (lambda: fully_connected([2, 0, 1]), "positive integer"),
    (lambda: diagonal(0, 2), "dim=0"),
    (lambda: diagonal(2, 1), "depth=1"),
    (lambda: convolutional(2, 3, 1), "kernel_size=3"),
    (
        lambda: from_index_maps(
            [
                [[0, 2]],
            ]
        ),
        "skips parameter",
    ),
    (lambda: from_index_maps([[0, 1]]), "must be 2-D"),
    (lambda: from_index_maps([[[0, -2]]]), "entries are -1"),
    (lambda: from_index_maps([[[0, 1], [1, 0]]]), "one row"),
    (lambda: from_index_maps([[[0, 1]], [[0, 1]]]), "columns but layer"),
    (lambda: from_index_maps([]), "at least one layer"),
    (lambda: fully_connected([2, 1], "tanh"), "activation="),
]


@pytest.mark.parametrize("build, message", BAD)
def test_bad_structure_is_refused_with_a_named_reason(build, message):
    with pytest.raises(ValueError, match=message):
        build()


DATA_BAD = [
    (np.zeros((0, 2)), [], "empty"),
    ([], [], "X is empty"),
    (np.ones((2, 3)), [1, 1], "columns"),
    (np.ones(2), [1], "2-D"),
    ([[1.0, np.nan]], [1], "finite"),
    ([[1.0, np.inf]], [1], "finite"),
    ([[1.0, 2.0]], [0], "labels must be -1 or \\+1; y\\[0\\] = 0.0$"),
    ([[1.0, 2.0]], [1, 1], "shape"),
]


@pytest.mark.parametrize("X, y, message", DATA_BAD)
def test_bad_data_is_refused_before_any_numerics(X, y, message):
    net = fully_connected([2, 2, 1])
    with pytest.raises(ValueError, match=message):
        net.margin_jacobian(np.ones(6), X, y)


@pytest.mark.parametrize(
    "theta, message", [(np.ones(5), "shape"), ([np.nan] * 6, "finite")]
)
def test_bad_theta(theta, message):
    net = fully_connected([2, 2, 1])
    with pytest.raises(ValueError, match=message):
        net.outputs(theta, [[1.0, 2.0]])


def test_complex_input_is_refused_not_truncated():
    net = fully_connected([2, 1], "linear")
    with pytest.raises(ValueError, match="real"):
        net.margins([1.0, 1.0], [[1j, 2.0]], [1.0])
    with pytest.raises(ValueError, match="real"):
        net.outputs(np.array([1.0 + 1j, 1.0]), [[1.0, 2.0]])
