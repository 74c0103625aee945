"""Zero inputs to neurons are judged against the layer's own scale.

An input to a neuron is "zero" when it is within ZERO_INPUT_TOL of ||h|| ||W||_F, the
largest it could be. Scaling the data or the weights scales the pre-activations and
that bound together, so the verdict must not change; an absolute threshold would call
every input zero on small data and none on large data.
"""

import numpy as np
import pytest

from invariants.activation import ZERO_INPUT_TOL, activation_pattern, zero_inputs
from invariants.networks import fully_connected

NET = fully_connected([2, 2, 1], "relu")
# Neuron 1 reads x_1 - x_2: zero on the first sample up to 1e-9 of the layer's
# scale; neuron 2 reads x_2, half its scale on the first sample.
THETA = np.array([1.0, -1.0, 0.0, 1.0, 1.0, 1.0])
X = np.array([[1.0 + 1e-9, 1.0], [2.0, 0.5]])


@pytest.mark.parametrize("c", [1e-8, 1.0, 1e8])
def test_zero_inputs_do_not_depend_on_the_data_scale(c):
    assert zero_inputs(NET, THETA, c * X) == [(1, 0, 0)]


@pytest.mark.parametrize("c", [1e-6, 1e6])
def test_zero_inputs_do_not_depend_on_the_weights_scale(c):
    theta = THETA.copy()
    theta[:4] *= c
    assert zero_inputs(NET, theta, X) == [(1, 0, 0)]


def test_a_nonzero_input_is_not_zero_however_small_the_data():
    pattern = activation_pattern(NET, THETA, 1e-9 * X)[0]
    assert pattern[1].tolist() == [1, 1]  # x_1 - x_2 = 1.5e-9 > 0, x_2 = 5e-10 > 0
    assert ZERO_INPUT_TOL > 1e-9  # the first sample's neuron 1 is inside the band
