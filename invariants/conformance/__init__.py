"""The conformance suite: this package's properties, run against anyone's trainer.

    pytest --pyargs invariants.conformance --trainer=package.module:function

One test module per result of the paper; each property draws training cases from
the public strategies (`strategies.training_cases`), trains them with the trainer
(once per case, shared by every module) and judges the output with the library's own
checkers (`invariants.checkpoints`):

- test_balance: the conserved quantities of Lemmas C.1-C.3 (C.4 is their limit);
- test_update: a gradient-descent trainer's steps are -eta_k grad L of the declared
  loss, with the declared step size;
- test_loss: the loss never rises and does fall;
- test_convergence: the direction has converged as claimed, to a KKT point of
  Problem 2 (Theorem 2.1);
- test_certificate: where the regime promises a global or local optimum (Theorems
  3.1, 4.2, 4.3, 5.2, 5.4), a certificate proves it.

The trainer protocol is in `invariants.trainer`; which properties run, and their
tolerances, follow from the trainer's claims (`invariants.conformance._properties`).
Options: --margin-max-examples, --margin-families, --margin-repro-dir, and the
Hypothesis profiles of `invariants.profiles` (``--hypothesis-profile=margin-ci``).
A failing case (the one reported) is written out with the command that replays it,
running the trainer and judging its output with every property, as the run did:

    python -m invariants.conformance package.module:function CASE.json

Importing this package imports nothing: the modules load only when collected.
"""

__all__: list[str] = []
