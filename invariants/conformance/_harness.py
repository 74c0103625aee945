"""What every conformance module shares: the cases, the cached training runs, the
failure report with its reproduction.

Cases come from the public strategies (`strategies.training_cases`), drawn with one
seed shared by every property, so the same cases reach every module and the trainer
runs once per case and process (`train` caches by the case's JSON).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict

import numpy as np
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
        raise TrainerError(str(result))
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

_CLI_TOLERANCE = {
    "balance": "--balance-tol",
    "direction": "--direction-tol",
    "kkt": "--kkt-tol",
    "certificate": "--certificate-tol",
}


def report(name: str, case, checkpoints: Checkpoints, check: Check) -> str:
    trainer = session.trainer
    case_path, npz_path = write_reproduction(name, case, checkpoints)
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
        "  reproduce (with the trainer importable, as in this run):",
        f"    python -m invariants.conformance {trainer.spec} {case_path}",
    ]
    option = _CLI_TOLERANCE.get(name)
    judge = f"    python -m invariants check {npz_path} --case {case_path}"
    if option is not None and check.threshold is not None and name != "direction":
        judge += f" {option} {check.threshold:.6g}"
    lines.append(judge + "   # the saved checkpoints, judged alone")
    return "\n".join(lines)


def write_reproduction(name: str, case, checkpoints: Checkpoints) -> tuple[str, str]:
    """The case as JSON and the trainer's checkpoints as .npz, named by the case's
    hash so the shrinker's many failing cases do not pile up copies."""
    text = case.to_json()
    digest = hashlib.sha256(text.encode()).hexdigest()[:12]
    folder = session.repro_dir
    folder.mkdir(parents=True, exist_ok=True)
    case_path = folder / f"case-{digest}.json"
    case_path.write_text(text)
    npz_path = folder / f"case-{digest}-{_slug(session.trainer.spec)}.npz"
    arrays = {"thetas": checkpoints.thetas}
    if checkpoints.times is not None:
        arrays["times"] = checkpoints.times
    np.savez(npz_path, **arrays)
    return str(case_path), str(npz_path)


def _slug(spec: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in spec)


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.3e}"
