"""Theorem 5.4: for ReLU networks in N, layer l of the GF limit is a local optimum
of Problem 4 when every input to a neuron in layers l..m-1 is non-zero (and the
last layer, whose Problem 4 is convex, a global one)."""

import numpy as np
import pytest
from hypothesis import event, given, note, target
from hypothesis import strategies as st
from limits import limit_of, off_optimum

from invariants.activation import activation_pattern
from invariants.cases import get
from invariants.certify.linear import certify_layer
from invariants.certify.record import NotApplicableError, assert_certified
from strategies import architectures, training_cases

relu_cases = training_cases(
    networks=architectures(max_depth=3, max_width=3, activations=st.just("relu"))
)


def certifiable_layers(net, theta, X, y):
    """(layer, certificate) for every layer where Theorem 5.4 applies."""
    out = []
    for layer in range(1, net.depth + 1):
        try:
            out.append((layer, certify_layer(net, X, y, theta, layer)))
        except NotApplicableError:
            event(f"layer {layer} of {net.depth}: a zero input blocks Theorem 5.4")
    return out


@given(relu_cases)
def test_layers_without_zero_inputs_above_them_are_locally_optimal(case):
    """And each such layer moved by 1% of its size orthogonally to itself is
    rejected: where the activation pattern is unchanged the local problem is the
    same, and the relative excess is at least 1e-4 / (1 + 1e-4) (see
    `limits.off_optimum` for why)."""
    net, X, y = case.network, case.X, case.y
    note(repr(case))
    event(f"{net.family} depth {net.depth}")
    traj = limit_of(case)
    size = 0.01
    before = activation_pattern(net, traj.theta_tilde, X)
    for layer, cert in certifiable_layers(net, traj.theta_tilde, X, y):
        note(cert.summary())
        assert cert.theorem == "5.4"
        target(cert.excess, label=f"excess, layer {layer}")
        assert cert.claim == ("global" if layer == net.depth else "local")
        assert_certified(cert, context=repr(case))

        moved = off_optimum(net, traj.theta_tilde, X, y, layer, size)
        if moved is None:
            continue
        after = activation_pattern(net, moved, X)
        if any(np.any(a != b) for a, b in zip(before, after)):
            event("the move changed the activation pattern")
            continue
        off = certify_layer(net, X, y, moved, layer)
        assert not off.holds
        assert off.excess >= size**2 / (1 + size**2) * (1 - 1e-3)


def test_the_paper_not_global_case_is_certified_local_only():
    """Lemma C.6's limit: layer 1 is certified locally optimal, yet the paper's
    better point (which changes layer 1 alone) is feasible and shorter."""
    c = get("thm5.4-not-global")
    net, X, y = c.network, c.case.X, c.case.y
    cert = certify_layer(net, X, y, c.limit, 1)
    assert cert.claim == "local"
    assert_certified(cert)
    better = c.better_point
    assert np.min(net.margins(better, X, y)) >= 1 - 1e-12
    sl = net.layer_slices[0]
    assert better[sl] @ better[sl] < c.limit[sl] @ c.limit[sl]
    np.testing.assert_array_equal(
        better[net.layer_slices[1]], c.limit[net.layer_slices[1]]
    )


def test_a_zero_input_above_the_layer_blocks_the_certificate():
    """Theorem 5.3's limit has zero inputs in layer 1, and its witness changes layer
    1 alone: the certificate must refuse rather than certify."""
    c = get("thm5.3")
    with pytest.raises(NotApplicableError, match="input to neuron"):
        certify_layer(c.network, c.case.X, c.case.y, c.limit, 1)
