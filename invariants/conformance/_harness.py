"""What every conformance module shares: the cases, the cached training runs, the
failure report with its reproduction.

Cases come from the public strategies (`strategies.training_cases`), drawn with one
seed shared by every property, so the same cases reach every module and the trainer
runs once per case and process (`train` caches by the case's JSON).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict

import pytest
from hypothesis import event, example, given, note, reject, seed, settings
from hypothesis import strategies as st

import strategies
from invariants import cases
from invariants.checkpoints import Check, Checkpoints
from invariants.conformance._properties import (
    LABELS,
    PROPERTIES,
    skip_reason,
    tolerance_reason,
)
from invariants.pytest_plugin import FAMILIES, case_seed, conformance_session
from invariants.trainer import Budget, TrainerError, Unsupported, run_trainer

__all__ = ["PropertyFailure", "check_property", "conformance", "session", "skip_if"]

session = conformance_session()
if session is None:
    pytest.skip(
        "no trainer: run with --trainer=package.module:function or set "
        "MARGIN_INVARIANTS_TRAINER (see invariants.trainer)",
        allow_module_level=True,
    )

BUDGET = Budget()
_CACHE_SIZE = 128
_cache: OrderedDict[str, object] = OrderedDict()

_FAMILY_STRATEGIES = {
    "fully_connected": strategies.fully_connected_networks,
    "diagonal": strategies.diagonal_networks,
    "no_share": strategies.no_share_networks,
    "convolutional": strategies.convolutional_networks,
    "shared": strategies.shared_weight_networks,
}


class PropertyFailure(AssertionError):
    """A property failed on the trainer's output; the message is the report."""


def _networks():
    if session.families == FAMILIES:
        return strategies.architectures()
    return st.one_of([_FAMILY_STRATEGIES[name]() for name in session.families])


# The paper's constructions, one per family, run before any generated case: a few
# random draws need not include a network with shared weights, the one place a
# trainer that sums a tied weight's gradient wrongly shows it.
PAPER_EXAMPLES = {
    "fully_connected": "lemmaC.6",
    "diagonal": "thm5.1-m3-linear",
    "convolutional": "thm4.4-linear",
    "shared": "thm4.4-relu",
}


def conformance(test):
    """@given a training case, with the session's example count and shared seed, and
    the paper's construction of every selected family as an explicit example."""
    overrides = {}
    if session.max_examples is not None:
        overrides["max_examples"] = session.max_examples
    test = given(case=strategies.training_cases(networks=_networks()))(test)
    for family in reversed(session.families):
        if family in PAPER_EXAMPLES:
            test = example(case=cases.get(PAPER_EXAMPLES[family]).case)(test)
    # No example database and no blob: Hypothesis' own reproduction advice (replay
    # from .hypothesis/, @reproduce_failure, patches) edits or writes into the
    # user's project; the report prints ours instead.
    overrides.update(database=None, print_blob=False)
    return seed(case_seed())(settings(**overrides)(test))


def skip_if(name: str):
    """Skip the test of property `name` when the trainer's claims rule it out."""
    reason = skip_reason(name, session.trainer.spec, session.trainer.claims)
    return pytest.mark.skipif(reason is not None, reason=reason or "")


def train(case) -> Checkpoints:
    """The trainer's validated output on `case`, computed once per process."""
    __tracebackhide__ = True
    key = case.to_json()
    if key not in _cache:
        try:
            _cache[key] = run_trainer(session.trainer, case, BUDGET)
        except (TrainerError, Unsupported) as exc:
            _cache[key] = exc
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    _cache.move_to_end(key)
    result = _cache[key]
    if isinstance(result, Unsupported):
        event("trainer declined the case")
        note(f"trainer declined: {result}")
        reject()
    if isinstance(result, TrainerError):
        # A fresh exception each time: re-raising one object grows its traceback.
        raise TrainerError("\n".join([str(result), *reproduction(case)]))
    return result


def check_property(name: str, case) -> Check:
    """Judge property `name` on the trainer's run of `case`; PropertyFailure with a
    readable report if it fails."""
    __tracebackhide__ = True
    checkpoints = train(case)
    check = PROPERTIES[name](case, checkpoints, session.trainer.claims)
    event(f"{name}: {check.status}")
    if check.passed is None:
        note(f"{name} says nothing about this case: {check.reason}")
    if check.passed is False:
        raise PropertyFailure(report(name, case, checkpoints, check))
    return check


# -- the report ------------------------------------------------------------------------


def report(name: str, case, checkpoints: Checkpoints, check: Check) -> str:
    trainer = session.trainer
    measured = f"  measured {check.name}: {_fmt(check.value)}, tolerance "
    measured += _fmt(check.threshold)
    if check.reason:
        measured += f"  ({check.reason})"
    lines = [
        f"{LABELS[name]} FAILED for trainer {trainer.spec!r} ("
        + trainer.claims.describe()
        + ")",
        measured,
        f"  tolerance from: {tolerance_reason(name, trainer.claims)}",
        f"  case: {case.network.describe()}; n = {len(case.y)}; loss {case.loss}; "
        + f"{len(checkpoints.thetas)} checkpoints returned",
    ]
    return "\n".join(lines + reproduction(case))


def reproduction(case) -> list[str]:
    """The replay command of a failing case. The file is only named here: the
    plugin writes it once the test's failure is final (`pending_cases`), so the
    many failing cases tried while shrinking leave no files behind."""
    text = case.to_json()
    digest = hashlib.sha256(text.encode()).hexdigest()[:12]
    case_path = session.repro_dir / f"case-{digest}.json"
    session.pending_cases[str(case_path)] = text
    return [
        "  reproduce (the trainer importable, as in this run): runs the trainer on",
        "  the case and judges its output with every conformance property, as here",
        f"    python -m invariants.conformance {session.trainer.spec} {case_path}",
    ]


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.3e}"
