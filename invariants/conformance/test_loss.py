"""Gradient flow and small-step gradient descent are descent methods: the loss
never rises along the trainer's path, and it falls from theta0."""

from invariants.conformance._harness import check_property, conformance, skip_if


@skip_if("loss_decrease")
@conformance
def test_loss_decreases(case):
    check_property("loss_decrease", case)
