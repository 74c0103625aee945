"""The regime classifier: it names the theorem the paper proves for each limit, and
what it promises is never contradicted by a certificate or a witness."""

import numpy as np
import pytest
from hypothesis import event, given, note
from limits import limit_of

from invariants.cases import CONSTRUCTIONS, get
from invariants.certify import optimality
from invariants.networks import fully_connected
from invariants.regimes import GUARANTEES, classify
from invariants.witness import find_local_improvement
from strategies import architectures, training_cases

# From THEOREMS.md: (guarantee, proving theorem, counterexample to the next stronger).
EXPECTED = {
    "thm3.2": ("per-layer local", "5.4", "3.2"),
    "thm4.1-linear": ("per-layer global", "5.2", "4.1"),
    "thm4.1-relu": ("per-layer local", "5.4", "4.1"),
    "thm4.2.2": ("per-layer local", "5.4", "4.2 (2)"),
    "lemmaC.6": ("local", "4.3", "Lemma C.6"),
    "thm4.4-relu": ("per-layer local", "5.4", "4.4"),
    "thm4.4-linear": ("per-layer global", "5.2", "4.4"),
    "thm5.1-m3-linear": ("per-layer global", "5.2", "5.1"),
    "thm5.1-m3-relu": ("per-layer local", "5.4", "5.1"),
    "thm5.1-m4-linear": ("per-layer global", "5.2", "5.1"),
    "thm5.1-m4-relu": ("per-layer local", "5.4", "5.1"),
    "thm5.1-m5-linear": ("per-layer global", "5.2", "5.1"),
    "thm5.1-m5-relu": ("per-layer local", "5.4", "5.1"),
    "thm5.3": ("per-layer local", "5.4", "4.2 (2)"),
    "thm5.4-not-global": ("local", "4.3", "Lemma C.6"),
}


def test_every_construction_is_in_the_table():
    assert set(EXPECTED) == set(CONSTRUCTIONS)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_the_classifier_names_each_construction_theorem(name):
    c = get(name)
    regime = classify(c.network, c.limit, c.case.X)
    assert (regime.guarantee, regime.theorem, regime.counterexample) == EXPECTED[name]


def test_theorem_5_3_layer_one_has_no_per_layer_guarantee():
    c = get("thm5.3")
    regime = classify(c.network, c.limit, c.case.X)
    assert regime.layers == {2: ("local", "5.4")}
    assert regime.unguaranteed_layers == {1: "5.3"}


def test_the_regime_depends_on_the_limit_not_only_the_network():
    """The same network is in Theorem 4.3's regime at Lemma C.6's limit and outside
    it at Theorem 3.2's, where a neuron is zero."""
    a, b = get("lemmaC.6"), get("thm3.2")
    assert classify(a.network, a.limit, a.case.X).guarantee == "local"
    assert classify(b.network, b.limit, b.case.X).guarantee == "per-layer local"


def test_guarantees_are_ordered():
    c = get("lemmaC.6")
    regime = classify(c.network, c.limit, c.case.X)
    assert regime.at_least("local") and regime.at_least("kkt")
    assert not regime.at_least("global")
    with pytest.raises(ValueError, match="guarantee must be one of"):
        regime.at_least("optimal")
    assert GUARANTEES[0] == "global" and GUARANTEES[-1] == "kkt"


@pytest.mark.parametrize(
    ("X", "message"),
    [
        (np.ones((2, 3)), "columns"),
        (np.empty((0, 2)), "empty"),
        (np.array([[np.nan, 1.0]]), "finite"),
    ],
)
def test_bad_input(X, message):
    net = fully_connected([2, 2, 1], "relu")
    with pytest.raises(ValueError, match=message):
        classify(net, np.ones(net.num_parameters), X)


@given(training_cases(networks=architectures(max_depth=3, max_width=3)))
def test_no_verdict_contradicts_the_classifier(case):
    """The suite's central consistency check: wherever the classifier promises
    optimality, the certificate of that theorem holds and the witness searches find
    nothing (a witness there would be a bug in the searches, the certificates or the
    classifier); a verified witness only ever appears where nothing is promised."""
    net, X, y = case.network, case.X, case.y
    note(repr(case))
    traj = limit_of(case)
    regime = classify(net, traj.theta_tilde, X, y=y)
    event(f"{regime.guarantee} by Theorem {regime.theorem}")
    verdict = optimality(net, X, y, traj.theta_tilde, exact=False)
    note(repr(verdict.to_json()))
    radius = 1e-2 * float(np.linalg.norm(traj.theta_tilde))
    if verdict.local is False:
        event("limit is not a local optimum (verified witness)")
        assert not regime.at_least("local")
    if regime.at_least("local"):
        assert find_local_improvement(net, X, y, traj.theta_tilde, radius) is None
    if regime.at_least("global"):
        assert verdict.global_ is True
    if regime.at_least("local"):
        assert verdict.local is True
    assert verdict.global_ is not False or not regime.at_least("global")
    by_layer = {entry["layer"]: entry for entry in verdict.layers}
    for layer, (scope, theorem) in regime.layers.items():
        entry = by_layer[layer]
        assert entry["kind"] == "certificate", entry
        assert entry["theorem"] == theorem and entry["holds"], entry
        # The last layer's Problem 4 is convex, so its certificate may claim more.
        assert scope == entry["claim"] or layer == net.depth
        found = find_local_improvement(
            net, X, y, traj.theta_tilde, radius, layer=layer, budget=12
        )
        assert found is None, found


def test_with_labels_a_point_that_is_no_kkt_point_is_refused():
    """An unbalanced point is no GF limit; the structure alone would say global."""
    net = fully_connected([2, 2, 1], "linear")
    X, y = np.array([[1.0, 0.0], [-1.0, 0.0]]), np.array([1.0, -1.0])
    theta = np.array([2.0, 0.0, 0.0, 0.0, 0.5, 0.0])
    assert classify(net, theta, X).guarantee == "global"
    with pytest.raises(ValueError, match="not a KKT point"):
        classify(net, theta, X, y=y)
    balanced = np.array([1.0, 0.0, 0.0, 0.0, 1.0, 0.0])
    assert classify(net, balanced, X, y=y).guarantee == "global"


def test_the_zero_point_is_refused():
    net = fully_connected([2, 2, 1], "relu")
    with pytest.raises(ValueError, match="no direction"):
        classify(net, np.zeros(net.num_parameters), np.ones((1, 2)))
