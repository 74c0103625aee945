"""Theorem 5.2: for linear networks in N of any depth, sharing included, every
layer u~^(l) of the GF limit is a global optimum of Problem 4 (the other layers
fixed at the limit)."""

import pytest
from hypothesis import event, given, note, target
from hypothesis import strategies as st
from limits import limit_of, off_optimum

from invariants.cases import get
from invariants.certify.linear import certify_layer
from invariants.certify.record import assert_certified
from invariants.kkt import rescale
from strategies import architectures, training_cases

linear_cases = training_cases(
    networks=architectures(max_depth=4, max_width=3, activations=st.just("linear"))
)


@given(linear_cases)
def test_every_layer_of_the_limit_is_globally_optimal(case):
    """And the same layer moved off its optimum (see `limits.off_optimum`) is
    rejected by at least the excess theory predicts: the certificate can fail."""
    net = case.network
    note(repr(case))
    event(f"{net.family} depth {net.depth}")
    traj = limit_of(case)
    size = 0.1
    for layer in range(1, net.depth + 1):
        cert = certify_layer(net, case.X, case.y, traj.theta_tilde, layer)
        note(cert.summary())
        assert cert.theorem == "5.2" and cert.claim == "global"
        target(cert.excess, label=f"excess, layer {layer}")
        assert_certified(cert, context=repr(case))

        moved = off_optimum(net, traj.theta_tilde, case.X, case.y, layer, size)
        if moved is None:
            event("layer has one parameter or the move breaks separation")
            continue
        off = certify_layer(net, case.X, case.y, moved, layer)
        note(off.summary())
        assert not off.holds
        # Less the limit's own inaccuracy (its KKT residual is ~1e-9).
        assert off.excess >= size**2 / (1 + size**2) * (1 - 1e-6)


def test_a_layer_index_out_of_range_is_refused():
    c = get("thm4.4-linear")
    with pytest.raises(ValueError, match="layer must be an integer in 1..2"):
        certify_layer(c.network, c.case.X, c.case.y, c.limit, 3)
    theta = rescale(c.network, c.case.X, c.case.y, c.limit)
    assert_certified(certify_layer(c.network, c.case.X, c.case.y, theta, 2))
