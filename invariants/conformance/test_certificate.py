"""Theorems 3.1, 4.2, 4.3, 5.2, 5.4: where the regime of the limit promises a
global or local optimum of Problem 2, a convex certificate proves it
(`invariants.regimes.classify`, `invariants.certify.optimality`). A regime without
such a guarantee says nothing about the case, and is counted as an event."""

from invariants.conformance._harness import check_property, conformance, skip_if


@skip_if("certificate")
@conformance
def test_regime_guarantee_is_certified(case):
    check_property("certificate", case)
