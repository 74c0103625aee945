"""Theorem 2.1: gradient flow converges in direction to a KKT point of Problem 2.

Judged only on a trainer that claims a converged direction (direction_tol): the
last interval's rate must meet the claim, and the last direction must be a KKT
point to a tolerance set by that rate.
"""

from invariants.conformance._harness import check_property, conformance, skip_if


@skip_if("direction")
@conformance
def test_direction_has_converged_as_claimed(case):
    check_property("direction", case)


@skip_if("kkt")
@conformance
def test_limit_is_a_kkt_point_of_problem_2(case):
    check_property("kkt", case)
