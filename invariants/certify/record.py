"""What a certificate is: a convex problem solved, and the numbers that prove a bound.

Every certificate turns a solver's answer into two numbers checked here, not taken
from the solver: `primal`, the objective at a point verified feasible (rescaled into
the feasible set if the solver left it slightly outside), and `dual`, a lower bound
from multipliers verified dual-feasible (rescaled likewise). Both are in the units of
the limit's own value (||theta~||^2, or ||u~^(l)||^2 for one layer), so

    dual <= optimum <= primal,   and the limit is optimal iff its value is <= optimum.

The limit is certified when its value exceeds `dual` by at most `tol` relative.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Literal

from invariants.validation import check_tolerance

__all__ = [
    "CERTIFICATE_TOL",
    "MAX_CERTIFICATE_TOL",
    "Certificate",
    "CertificateError",
    "NotApplicableError",
    "assert_certified",
]

# Relative excess of the limit's value over the verified lower bound that still
# counts as optimal. The limit is read at ||theta|| ~ 1e8 with the simulator's
# direction accurate to ~1e-9 and the margins entering the value to first order at
# a non-smooth maximum; conic solvers are run to a relative gap of ~1e-10.
CERTIFICATE_TOL = 1e-6
# A tolerance is a statement about numerical accuracy, not a licence: at 1e-2 a
# limit 1% above a verified bound would already count as optimal.
MAX_CERTIFICATE_TOL = 1e-2


class CertificateError(RuntimeError):
    """A solver failed, or its answer is inconsistent with its own re-check or with
    a point known to be feasible. Never a silent pass."""


class NotApplicableError(ValueError):
    """The theorem's hypotheses do not hold for this network and point."""


@dataclass(frozen=True)
class Certificate:
    """A verified bound on one optimisation problem, compared with the GF limit."""

    theorem: str
    claim: Literal["global", "local"]
    problem: str
    solver: str
    primal: float
    dual: float
    limit_value: float
    layer: int | None = None
    tol: float = CERTIFICATE_TOL
    residuals: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        tol = check_tolerance(self.tol, "tol", high=MAX_CERTIFICATE_TOL)
        object.__setattr__(self, "tol", tol)
        for name in ("primal", "dual", "limit_value"):
            v = getattr(self, name)
            if not math.isfinite(v):
                raise CertificateError(f"{self.theorem}: {name}={v!r} is not finite")
        scale = max(abs(self.primal), abs(self.limit_value), 1e-300)
        if self.dual > self.primal + self.tol * scale:
            raise CertificateError(
                f"{self.theorem}: verified lower bound {self.dual!r} exceeds the "
                f"verified feasible value {self.primal!r}; the solver is wrong"
            )
        if self.dual > self.limit_value + self.tol * scale:
            raise CertificateError(
                f"{self.theorem}: the limit's value {self.limit_value!r} is below the "
                f"verified lower bound {self.dual!r}: the limit is not feasible for "
                "the problem, or the bound is wrong"
            )

    @property
    def gap(self) -> float:
        """(primal - dual) / primal: how well the convex problem itself was solved."""
        return (self.primal - self.dual) / max(abs(self.primal), 1e-300)

    @property
    def excess(self) -> float:
        """(limit_value - dual) / limit_value: how far the limit may be from optimal."""
        return (self.limit_value - self.dual) / max(abs(self.limit_value), 1e-300)

    @property
    def holds(self) -> bool:
        return self.excess <= self.tol

    @property
    def scope(self) -> str:
        return "theta" if self.layer is None else f"layer {self.layer}"

    def to_json(self) -> dict:
        out = asdict(self)
        out.update(gap=self.gap, excess=self.excess, holds=self.holds)
        return out

    def summary(self) -> str:
        verdict = "certified" if self.holds else "NOT certified"
        return (
            f"Theorem {self.theorem}: {self.claim} optimality of {self.scope} "
            f"{verdict}: limit value {self.limit_value:.12g}, verified lower bound "
            f"{self.dual:.12g} (excess {self.excess:.2e}, tol {self.tol:.0e}), "
            f"feasible value {self.primal:.12g} (gap {self.gap:.2e}); "
            f"{self.problem}, solved by {self.solver}"
        )


def assert_certified(certificate: Certificate, context: str = "") -> None:
    """Raise AssertionError unless the certificate proves the limit optimal."""
    if not certificate.holds:
        where = f" [{context}]" if context else ""
        raise AssertionError(certificate.summary() + where)
