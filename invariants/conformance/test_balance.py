"""Lemmas C.1-C.3: the conserved quantities of gradient flow, on the trainer's path.

C.4 (||w~_j|| = |v~_j| in the limit) follows from C.3 as ||theta|| grows: with Q_j
conserved, | ||w_j|| - |v_j| | <= sqrt|Q_j| / ||theta||.
"""

from invariants.conformance._harness import check_property, conformance, skip_if


@skip_if("balance")
@conformance
def test_conserved_quantities_of_lemmas_c1_to_c3(case):
    check_property("balance", case)
