"""What running one row of the report produces: the records the renderers read.

A row is one lemma or theorem of THEOREMS.md. A positive row (a guarantee) is run
as a property over generated cases and `holds` when every case passes its checker;
a negative row (a counterexample) reproduces the paper's constructions and is
`reproduced` when every step of each one comes out as the paper says. `failed`
means the run contradicts the paper (or a checker broke); `inconclusive` means no
generated case could be judged, which shows nothing either way.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

__all__ = [
    "CONTRADICTS",
    "FAILED",
    "HOLDS",
    "INCONCLUSIVE",
    "REPRODUCED",
    "Measurement",
    "Outcome",
    "Reproduction",
    "Step",
]

HOLDS = "holds"
REPRODUCED = "reproduced counterexample"
FAILED = "failed"
INCONCLUSIVE = "inconclusive"
# Only a failure contradicts the paper: an inconclusive row proved nothing, and the
# report says so rather than turning it into a verdict.
CONTRADICTS = frozenset({FAILED})


@dataclass(frozen=True)
class Measurement:
    """One generated case judged by a checker: the measured quantity, the bound it
    must meet, and a line saying where it came from."""

    value: float
    tolerance: float
    ok: bool
    where: str

    def __post_init__(self) -> None:
        # numpy scalars in, plain floats and bools out: the records go to JSON.
        object.__setattr__(self, "value", float(self.value))
        object.__setattr__(self, "tolerance", float(self.tolerance))
        object.__setattr__(self, "ok", bool(self.ok))

    @property
    def ratio(self) -> float:
        # How close to its bound: the worst case of a row is the largest ratio, so
        # cases with different per-case bounds (Lemma C.4) compare fairly.
        if self.value != self.value:  # NaN: a checker that crashed
            return float("inf")
        return self.value / self.tolerance if self.tolerance > 0 else self.value


@dataclass(frozen=True)
class Step:
    """One check of a reproduction: what was checked, whether it came out as the
    paper says, and the measured detail."""

    name: str
    ok: bool
    detail: str


@dataclass
class Reproduction:
    """One construction of `invariants.cases`, simulated, classified, certified and
    refuted. `trajectory`, `witness` (a verified `Witness` found by a search) and
    `paper_witness` (the paper's own theta', made exactly feasible) are kept for
    the figures; each may be None when its step failed."""

    construction: object
    steps: list[Step] = field(default_factory=list)
    trajectory: object = None
    witness: object = None
    paper_witness: object = None
    witness_gap: float | None = None
    direction_error: float | None = None

    @property
    def ok(self) -> bool:
        return bool(self.steps) and all(s.ok for s in self.steps)


@dataclass
class Outcome:
    """The result of one row."""

    key: str
    title: str
    sign: str
    claim: str
    status: str
    examples: int
    quantity: str
    worst: Measurement | None = None
    witness: str = ""
    measurements: list[Measurement] = field(default_factory=list)
    rejected: Counter = field(default_factory=Counter)
    reproductions: list[Reproduction] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def contradicts_paper(self) -> bool:
        return self.status in CONTRADICTS

    def headline(self) -> str:
        """`holds (20 examples, worst excess 3e-11)`: the progress line's verdict."""
        noun = "construction" if self.sign == "-" else "example"
        count = f"{self.examples} {noun}{'' if self.examples == 1 else 's'}"
        if self.worst is not None:
            count += f", worst {self.quantity} {self.worst.value:.1e}"
        return f"{self.status} ({count})"
