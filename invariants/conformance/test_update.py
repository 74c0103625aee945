"""Gradient descent as declared: every step is -eta_k grad L(theta_k) of the
declared loss, with eta_k the declared step size (or within it, for an adaptive
step). Balance and loss decrease hold for any positive reweighting of the margins'
gradients, so only this property sees a wrong loss derivative or step size; a
gradient-flow trainer has no steps and skips it."""

from invariants.conformance._harness import check_property, conformance, skip_if


@skip_if("update")
@conformance
def test_steps_are_gradient_steps_of_the_declared_loss(case):
    check_property("update", case)
