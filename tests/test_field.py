"""The reparameterised GF field and the exact Jacobian the stiff integrator uses."""

import numpy as np
import pytest

from invariants.field import Field
from invariants.networks import convolutional, fully_connected


@pytest.mark.parametrize("loss", ["exponential", "logistic"])
@pytest.mark.parametrize(
    "network", [fully_connected([2, 3, 2, 1], "linear"), convolutional(5, 2, 1, "relu")]
)
@pytest.mark.parametrize("s", [0.5, 2.0, 4.0])
def test_log_norm_jacobian_matches_central_differences(loss, network, s):
    rng = np.random.default_rng(1)
    teacher = rng.normal(size=network.num_parameters)
    X = rng.normal(size=(5, network.input_dim))
    y = np.where(network.outputs(teacher, X) > 0, 1.0, -1.0)
    phi = teacher / np.linalg.norm(teacher)
    field = Field(network, X, y, loss)
    J = field.log_norm_jacobian(s, phi)
    h = 1e-6
    ref = np.array(
        [
            (
                field.log_norm_velocity(s, phi + h * e)
                - field.log_norm_velocity(s, phi - h * e)
            )
            / (2 * h)
            for e in np.eye(network.num_parameters)
        ]
    ).T
    # The curvature term is a forward difference (error ~1e-7 |Hess|) and the
    # reference a central one; the stiff term reaches |J| ~ 1e2 at s = 4.
    np.testing.assert_allclose(J, ref, rtol=0, atol=1e-6 * max(1.0, np.abs(ref).max()))


def test_velocity_keeps_the_norm_of_phi():
    network = fully_connected([2, 2, 1], "relu")
    X = np.array([[1.0, 0.25], [-1.0, 0.25], [0.0, -1.0]])
    field = Field(network, X, np.ones(3), "exponential")
    phi = np.array([0.1, 3.0, 0.2, -2.0, 3.0, 2.0])
    phi /= np.linalg.norm(phi)
    assert abs(phi @ field.log_norm_velocity(1.0, phi)) < 1e-14


def test_sliding_velocity_grows_the_active_margins_equally():
    """The minimal-norm point makes every weighted active margin grow at one rate."""
    network = fully_connected([2, 2, 1], "relu")
    X = np.array([[1.0, 0.25], [-1.0, 0.25], [0.0, -1.0]])
    y = np.ones(3)
    field = Field(network, X, y, "exponential")
    phi = np.array([0.05, 2.0, 0.0, -1.0, 2.0, 1.0])
    phi /= np.linalg.norm(phi)
    q, J = network.margin_jacobian(phi, X, y)
    velocity = field.sliding_velocity(phi, np.arange(3))
    # d q_i / ds = g_i . (velocity + phi) - m q_i: the first term must be common.
    rates = J @ (velocity + phi)
    assert np.ptp(rates) < 1e-12 * np.abs(rates).max(), (q, rates)
