"""One table of bad inputs for every public entry point.

Each row calls one entry point on one bad input and names what must happen: the
exception type and a phrase of its message that names the problem. Nothing here may
crash with an unrelated exception, hang (every flow runs on a small evaluation
budget), or return a silently wrong answer. The command line's rows run the real
subprocess and expect exit code 2 with one `error:` line.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from cli_helpers import assert_one_error_line, run_cli
from hypothesis.errors import InvalidArgument

import strategies
from invariants import balance, networks
from invariants.casefile import Case
from invariants.certify import optimality
from invariants.certify.linear import certify_theorem_3_1
from invariants.field import FlowError, StationaryPointError
from invariants.flow import gradient_flow
from invariants.kkt import kkt_point
from invariants.regimes import classify
from invariants.trainer import Budget, LoadedTrainer, TrainerError, declare, run_trainer
from invariants.witness import find_local_improvement

RELU = networks.fully_connected([2, 2, 1], "relu")
LINEAR = networks.fully_connected([2, 1, 1], "linear")
X_GOOD = np.array([[1.0, 0.0], [0.0, 1.0]])
Y_GOOD = np.array([1.0, -1.0])
# Separates X_GOOD with RELU: neuron 1 reads x_1 (v = +1), neuron 2 reads x_2 (v = -1).
THETA = np.array([1.0, 0.0, 0.0, 1.0, 1.0, -1.0])
# A budget small enough that no row can run for long, large enough to fit good data.
BUDGET = {"max_evaluations": 5_000}

# (label, X, y): data no entry point may accept as a margin problem.
BAD_DATA = {
    "empty dataset": (np.zeros((0, 2)), np.zeros(0)),
    "y shorter than X": (X_GOOD, np.array([1.0])),
    "X with the wrong number of columns": (np.ones((2, 3)), Y_GOOD),
    "label 0": (X_GOOD, np.array([0.0, -1.0])),
    "label 2": (X_GOOD, np.array([2.0, -1.0])),
    "label NaN": (X_GOOD, np.array([np.nan, -1.0])),
    "NaN in X": (np.array([[np.nan, 0.0], [0.0, 1.0]]), Y_GOOD),
    "inf in X": (np.array([[np.inf, 0.0], [0.0, 1.0]]), Y_GOOD),
}
DATA_MESSAGES = {
    "empty dataset": "X is empty",
    "y shorter than X": r"y must have shape \(2,\)",
    "X with the wrong number of columns": "3 columns but the network's input",
    "label 0": "labels must be -1 or",
    "label 2": "labels must be -1 or",
    "label NaN": "labels must be -1 or",
    "NaN in X": "X must be finite",
    "inf in X": "X must be finite",
}
# Arrays that are well formed but that no network of the class N separates: the
# flow and the case refuse them up front, by the reason.
INSEPARABLE = {
    "a point at the origin": (
        np.array([[0.0, 0.0], [0.0, 1.0]]),
        Y_GOOD,
        "is the origin",
    ),
    "a subnormal point": (
        np.array([[5e-324, 0.0], [0.0, 1.0]]),
        Y_GOOD,
        "is subnormal",
    ),
    "duplicated points with opposite labels": (
        np.array([[1.0, 2.0], [1.0, 2.0]]),
        Y_GOOD,
        "lie on one ray from the origin",
    ),
    "points on one ray with opposite labels": (
        np.array([[1.0, 2.0], [3.0, 6.0]]),
        Y_GOOD,
        r"X\[1\] = 3 X\[0\]",
    ),
}


@dataclass(frozen=True)
class Row:
    entry: str
    bad: str
    call: Callable[[], Any]
    error: type[BaseException] | tuple[type[BaseException], ...]
    match: str

    @property
    def id(self) -> str:
        return f"{self.entry}:{self.bad.replace(' ', '-')}"


def _checkers(X, y, theta):
    """Every entry point that takes (network, X, y, theta), on the ReLU net."""
    return {
        "gradient_flow": lambda: gradient_flow(RELU, X, y, theta, **BUDGET),
        "Case": lambda: Case(RELU, X, y, theta),
        "kkt_point": lambda: kkt_point(RELU, X, y, theta),
        "optimality": lambda: optimality(RELU, X, y, theta),
        "classify": lambda: classify(RELU, theta, X, y=y),
        "find_local_improvement": lambda: find_local_improvement(
            RELU, X, y, theta, 0.1
        ),
    }


def _rows() -> list[Row]:
    rows = []
    for bad, (X, y) in BAD_DATA.items():
        for entry, call in _checkers(X, y, THETA).items():
            rows.append(Row(entry, bad, call, ValueError, DATA_MESSAGES[bad]))
    for bad, (X, y, message) in INSEPARABLE.items():
        rows.append(Row("gradient_flow", bad, _checkers(X, y, THETA)["gradient_flow"],
                        ValueError, message))  # fmt: skip
        rows.append(Row("Case", bad, _checkers(X, y, THETA)["Case"], ValueError,
                        message))  # fmt: skip
        # A checker judges a given theta: it refuses one that does not separate.
        for entry in ("kkt_point", "optimality", "classify"):
            rows.append(Row(entry, bad, _checkers(X, y, THETA)[entry], ValueError,
                            "does not separate the data"))  # fmt: skip

    bad_thetas = {
        "theta of the wrong length": (np.ones(5), r"must have shape \(6,\)"),
        "NaN in theta": (np.array([np.nan, 0, 0, 1, 1, -1.0]), "must be finite"),
        "inf in theta": (np.array([np.inf, 0, 0, 1, 1, -1.0]), "must be finite"),
        "zero theta": (np.zeros(6), r"= 0"),
        "theta that does not separate": (-THETA, "does not separate the data"),
    }
    for bad, (theta, message) in bad_thetas.items():
        for entry, call in _checkers(X_GOOD, Y_GOOD, theta).items():
            if entry == "gradient_flow" and bad in (
                "zero theta",
                "theta that does not separate",
            ):
                continue  # a start, not a limit: rows of their own below
            if entry == "Case" and bad in (
                "zero theta",
                "theta that does not separate",
            ):
                continue  # a legitimate theta0
            if (
                entry == "find_local_improvement"
                and bad == "theta that does not separate"
            ):
                # It takes a feasible theta~ of Problem 2 and says so.
                message = "not feasible for Problem 2"
            error = StationaryPointError if entry == "gradient_flow" else ValueError
            rows.append(Row(entry, bad, call, (error, ValueError), message))

    # Starts from which gradient flow cannot reach the regime of Theorem 2.1.
    X1, y1 = np.array([[1.0, 0.0]]), np.array([1.0])
    flows = {
        "zero initialisation": (RELU, X1, y1, np.zeros(6), StationaryPointError,
                                "theta0 = 0 is a stationary point"),
        "all-dead ReLU initialisation": (RELU, X1, y1,
                                         np.array([-1.0, 0, -1.0, 0, 1.0, 1.0]),
                                         StationaryPointError, "dead ReLUs"),
        # x and -x with one label: a linear network's outputs there have opposite
        # signs, so the loss never falls below the threshold.
        "an initial loss above the threshold that never drops": (
            LINEAR, np.array([[1.0, 0.0], [-1.0, 0.0]]), np.array([1.0, 1.0]),
            np.array([1.0, 1.0, 1.0]), (StationaryPointError, FlowError),
            "does not fit|cannot separate|did not fall below",
        ),
        "data separable only by a 1e-12 margin": (
            LINEAR, np.array([[1.0, 1e-12], [1.0, -1e-12]]), np.array([1.0, -1.0]),
            np.array([1.0, 0.0, 1.0]), (StationaryPointError, FlowError),
            "tiny margin|budget",
        ),
    }  # fmt: skip
    for bad, (net, X, y, theta0, error, message) in flows.items():
        rows.append(
            Row("gradient_flow", bad,
                lambda net=net, X=X, y=y, t=theta0: gradient_flow(
                    net, X, y, t, **BUDGET),
                error, message)
        )  # fmt: skip

    # The class N itself.
    maps = {
        "index maps with a gap": ([[[0, 2]], [[0]]], "skips parameter"),
        "an index below -1": ([[[0, -2]], [[0]]], "entries are -1"),
        "non-integer index maps": ([[[0.5, 1.0]], [[0]]], "must hold integers"),
        "an output layer of width 2": ([[[0, 1]], [[0], [1]]], "one row"),
    }
    for bad, (layers, message) in maps.items():
        rows.append(Row("from_index_maps", bad,
                        lambda m=layers: networks.from_index_maps(
                            [np.array(P) for P in m]),
                        ValueError, message))  # fmt: skip
    rows += [
        Row("fully_connected", "a zero width",
            lambda: networks.fully_connected([2, 0, 1]), ValueError, "positive"),
        Row("fully_connected", "two outputs",
            lambda: networks.fully_connected([2, 2, 2]), ValueError, "must be 1"),
        Row("fully_connected", "an unknown activation",
            lambda: networks.fully_connected([2, 2, 1], "tanh"), ValueError,
            "must be one of"),
        Row("diagonal", "depth 1", lambda: networks.diagonal(2, 1), ValueError,
            "depth"),
        Row("gradient_flow", "an unknown loss",
            lambda: gradient_flow(RELU, X_GOOD, Y_GOOD, THETA, "hinge"), ValueError,
            "must be one of"),
        Row("gradient_flow", "a negative target norm",
            lambda: gradient_flow(RELU, X_GOOD, Y_GOOD, THETA, target_norm=-1.0),
            ValueError, "target_norm"),
        Row("certify_theorem_3_1", "a ReLU network",
            lambda: certify_theorem_3_1(RELU, X_GOOD, Y_GOOD, THETA),
            ValueError, "linear|fully"),
    ]  # fmt: skip

    # Checkers of a path.
    rows += [
        Row("assert_balanced", "one checkpoint of the wrong length",
            lambda: balance.assert_balanced(RELU, np.ones((2, 5))), ValueError,
            "columns"),
        Row("assert_balanced", "NaN in a checkpoint",
            lambda: balance.assert_balanced(RELU, np.array([THETA, THETA * np.nan])),
            ValueError, "must be finite"),
        Row("assert_balanced", "a negative tolerance",
            lambda: balance.assert_balanced(RELU, np.array([THETA, THETA]), rtol=-1.0),
            ValueError, "rtol"),
    ]  # fmt: skip

    # The conformance mode's trainer protocol.
    case = Case(RELU, X_GOOD, Y_GOOD, THETA)
    trainers = {
        "a trainer that returns NaN": (lambda p: [p.theta0, p.theta0 * np.nan],
                                       "NaN|finite"),
        "a trainer that returns the wrong shape": (lambda p: [p.theta0[:5]] * 2,
                                                   "shape|columns|P"),
        "a trainer that returns one point": (lambda p: [p.theta0], "at least 2|K"),
        "a trainer that returns None": (lambda p: None, "None|array"),
        "a trainer that raises": (lambda p: 1 / 0, "ZeroDivisionError"),
    }  # fmt: skip
    for bad, (function, message) in trainers.items():
        fn = declare(method="gradient_descent", step_size=0.01)(function)
        loaded = LoadedTrainer("table:trainer", fn, fn.margin_invariants_claims)
        rows.append(Row("run_trainer", bad,
                        lambda t=loaded: run_trainer(t, case, Budget()),
                        TrainerError, message))  # fmt: skip

    # Strategies: options are checked on first draw.
    rows += [
        Row("separable_datasets", "min_points > max_points",
            lambda: strategies.separable_datasets(
                RELU, min_points=3, max_points=2).validate(),
            InvalidArgument, "min_points"),
        Row("fully_connected_networks", "depth 0",
            lambda: strategies.fully_connected_networks(min_depth=0).validate(),
            InvalidArgument, "depth"),
        Row("training_cases", "a negative margin",
            lambda: strategies.training_cases(min_margin=-1.0).validate(),
            InvalidArgument, "margin"),
    ]  # fmt: skip
    return rows


ROWS = _rows()


@pytest.mark.parametrize("row", ROWS, ids=[r.id for r in ROWS])
def test_a_bad_input_is_refused_by_name(row):
    with pytest.raises(row.error, match=row.match):
        row.call()


def test_the_table_covers_every_entry_point():
    entries = {r.entry for r in ROWS}
    assert {
        "gradient_flow", "Case", "kkt_point", "optimality", "classify",
        "find_local_improvement", "from_index_maps", "fully_connected", "diagonal",
        "certify_theorem_3_1", "assert_balanced", "run_trainer",
        "separable_datasets", "fully_connected_networks", "training_cases",
    } <= entries  # fmt: skip
    assert len(ROWS) >= 100


# -- the command line: the same bad data in a case file --------------------------------

CASE_FILE_ROWS = {
    **{bad: (X, y, DATA_MESSAGES[bad]) for bad, (X, y) in BAD_DATA.items()},
    **{bad: (X, y, message) for bad, (X, y, message) in INSEPARABLE.items()},
}


def _case_json(X, y) -> dict:
    return {
        "network": {"family": "fully_connected", "widths": [2, 2, 1],
                    "activation": "relu"},
        # JSON has no NaN or inf: json.dumps writes them as bare words, which the
        # command's parser must refuse as well.
        "X": np.asarray(X).tolist(),
        "y": np.asarray(y).tolist(),
        "theta0": THETA.tolist(),
        "loss": "exponential",
    }  # fmt: skip


@pytest.mark.parametrize("bad", sorted(CASE_FILE_ROWS))
def test_examine_refuses_a_bad_case_file_by_name(bad, tmp_path):
    X, y, message = CASE_FILE_ROWS[bad]
    path = tmp_path / "case.json"
    path.write_text(json.dumps(_case_json(X, y)))
    result = run_cli("examine", str(path))
    assert_one_error_line(result, 2)
    if "NaN" not in bad and "inf" not in bad:
        assert re.search(message, result.stderr), result.stderr
