"""Cases round-trip exactly through their JSON form and their printed form."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis.vendor.pretty import pretty

from invariants.casefile import Case, network_from_spec, network_to_spec
from invariants.networks import convolutional, diagonal, fully_connected, no_share
from strategies import architectures, training_cases

NETWORKS = [
    fully_connected([2, 3, 1], "relu"),
    diagonal(3, 4, "linear"),
    convolutional(7, 3, 2, "relu", depth=3),
    convolutional(4, 2, 2, "linear"),
    no_share([[[True, False], [True, True]], [[True, True]]], "relu"),
]


@pytest.mark.parametrize("network", NETWORKS, ids=lambda n: n.family)
def test_network_spec_keeps_the_family(network):
    spec = network_to_spec(network)
    assert spec["family"] == network.family
    rebuilt = network_from_spec(spec)
    assert rebuilt.family == network.family
    for a, b in zip(rebuilt.index_maps, network.index_maps, strict=True):
        np.testing.assert_array_equal(a, b)


@given(architectures())
def test_any_network_round_trips_through_its_spec(network):
    rebuilt = network_from_spec(network_to_spec(network))
    for a, b in zip(rebuilt.index_maps, network.index_maps, strict=True):
        np.testing.assert_array_equal(a, b)
    assert rebuilt.activation == network.activation


@given(training_cases())
def test_printed_case_is_the_case(case):
    """What Hypothesis prints for a failing case evaluates back to it bit for bit."""
    text = pretty(case)
    assert text.startswith("Case.from_dict(")
    back = eval(text, {"Case": Case})
    for name in ("X", "y", "theta0"):
        assert np.array_equal(getattr(back, name), getattr(case, name))
    assert back.loss == case.loss
