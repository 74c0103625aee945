"""`python -m invariants`: the examine report, bad case files, flow failures, list.

Every run is a real subprocess, so the tests see exactly what a user sees: the exit
code, one JSON object on stdout and, on failure, one `error:` line on stderr.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from cli_helpers import assert_one_error_line, run_cli, write_json

from invariants import cases
from invariants.casefile import Case

# Theorem 4.1, diagonal linear: fast (well under a second) and its limit is known.
GOOD_CASE = {
    "network": {"family": "diagonal", "dim": 2, "depth": 2, "activation": "linear"},
    "X": [[1.0, 2.0]],
    "y": [1],
    "theta0": [1.0, 0.0, 1.0, 0.0],
    "loss": "exponential",
}
REPORT_KEYS = {
    "theta_tilde",
    "norm_squared",
    "min_margin_direction",
    "log_norm",
    "jacobian_evaluations",
    "seconds",
    "steps",
    "balance",
    "case",
    "kkt_residual",
    "multipliers",
    "active_set",
    "optimality",
}
CASE_KEYS = {"family", "depth", "activation", "n", "loss"}


# -- a good case -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def good_run(tmp_path_factory):
    path = write_json(tmp_path_factory.mktemp("cli") / "thm41.json", GOOD_CASE)
    return run_cli("examine", path)


@pytest.fixture(scope="module")
def good_report(good_run) -> dict:
    assert good_run.returncode == 0, good_run.stderr
    return json.loads(good_run.stdout)


def test_examine_prints_one_json_object_and_nothing_on_stderr(good_run):
    assert good_run.returncode == 0, good_run.stderr
    assert good_run.stderr == ""
    assert good_run.stdout.count("\n") == 1
    report = json.loads(good_run.stdout)
    assert isinstance(report, dict)


def test_examine_report_has_every_key(good_report):
    assert REPORT_KEYS <= set(good_report)
    assert CASE_KEYS <= set(good_report["case"])
    assert good_report["case"] == good_report["case"] | {
        "family": "diagonal",
        "depth": 2,
        "activation": "linear",
        "n": 1,
        "loss": "exponential",
    }
    assert good_report["jacobian_evaluations"] > 0
    assert good_report["seconds"] >= 0
    assert isinstance(good_report["steps"], dict)
    # ||theta|| = 1e8 is the default target.
    assert good_report["log_norm"] == pytest.approx(np.log(1e8), rel=1e-9)


def test_examine_theta_tilde_is_the_limit_with_min_margin_one(good_report):
    case = Case.from_dict(GOOD_CASE)
    theta = np.array(good_report["theta_tilde"])
    margins = case.network.margins(theta, case.X, case.y)
    assert np.min(margins) == pytest.approx(1.0, abs=1e-12)
    assert good_report["norm_squared"] == pytest.approx(theta @ theta, rel=1e-14)
    np.testing.assert_allclose(theta, [1.0, 0.0, 1.0, 0.0], atol=1e-8)
    # ||direction|| = 1 and m = 2, so its margin is ||theta_tilde||^-2.
    assert good_report["min_margin_direction"] == pytest.approx(
        1.0 / good_report["norm_squared"], rel=1e-12
    )


def test_examine_reports_balance_drifts(good_report):
    balance = good_report["balance"]
    if balance.get("available") is False:
        pytest.skip(f"invariants.balance not importable yet: {balance.get('reason')}")
    assert balance, "a diagonal depth-2 network has conserved quantities"
    for name, drift in balance.items():
        assert isinstance(drift, float), name
        assert 0.0 <= drift < 1e-6, (name, drift)


def test_options_are_applied(tmp_path):
    path = write_json(tmp_path / "case.json", GOOD_CASE)
    result = run_cli(
        "examine", path, "--target-norm", "1e4", "--rtol", "1e-9", "--loss", "logistic"
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["log_norm"] == pytest.approx(np.log(1e4), rel=1e-9)
    assert report["case"]["loss"] == "logistic"


def test_verbose_logs_progress_on_stderr_only(tmp_path):
    path = write_json(tmp_path / "case.json", GOOD_CASE)
    result = run_cli("examine", path, "-v")
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip(), "-v should report progress"
    assert "Traceback" not in result.stderr
    assert REPORT_KEYS <= set(json.loads(result.stdout))


# -- built-in constructions ------------------------------------------------------------


def test_list_prints_the_construction_names():
    result = run_cli("list")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == list(cases.CONSTRUCTIONS)


def test_examine_a_construction():
    result = run_cli("examine", "--construction", "thm4.4-relu")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["construction"]["theorem"] == "Theorem 4.4"
    assert report["construction"]["direction_error"] < 1e-8
    assert report["case"]["family"] == "convolutional"


def test_the_report_says_what_is_proved_and_how():
    """Lemma C.6: a KKT point, certified locally optimal by Theorem 4.3, and not
    globally optimal, with a better point that re-verifies here."""
    result = run_cli("examine", "--construction", "lemmaC.6")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["kkt_residual"] < 1e-9
    assert report["active_set"] == [0, 1, 2]
    assert all(lam > 0 for lam in report["multipliers"])
    verdict = report["optimality"]
    assert verdict["local"] is True and verdict["global"] is False
    kinds = {e["kind"]: e for e in verdict["evidence"]}
    local = next(e for e in verdict["evidence"] if e.get("theorem") == "4.3")
    assert local["holds"] and local["solver"] and local["excess"] <= local["tol"]
    better = kinds["better_point"]
    net = cases.get("lemmaC.6").network
    c = cases.get("lemmaC.6").case
    theta = np.array(better["theta"])
    assert np.min(net.margins(theta, c.X, c.y)) >= 1 - 1e-12
    assert theta @ theta < report["norm_squared"] - 1.0


def test_nothing_proved_is_reported_as_null():
    """Theorem 4.4's shared-weight limit: no certificate covers it and, with the
    search turned off, no witness either, so both verdicts are null, with the
    reason."""
    result = run_cli("examine", "--construction", "thm4.4-relu", "--no-search")
    assert result.returncode == 0, result.stderr
    verdict = json.loads(result.stdout)["optimality"]
    assert verdict["local"] is None and verdict["global"] is None
    assert verdict["evidence"][0]["kind"] == "none"


def test_a_found_witness_makes_the_verdict_false():
    """With the search on, the same limit gets a local witness that re-verifies."""
    from invariants.exact_check import Witness

    result = run_cli("examine", "--construction", "thm4.4-relu")
    assert result.returncode == 0, result.stderr
    verdict = json.loads(result.stdout)["optimality"]
    assert verdict["local"] is False and verdict["global"] is False
    found = next(e for e in verdict["evidence"] if e["kind"] == "local_witness")
    found = {k: v for k, v in found.items() if k != "kind"}
    assert Witness.from_dict(found).verify()


def test_direction_tol_zero_stops_at_the_target(tmp_path):
    path = write_json(tmp_path / "case.json", GOOD_CASE)
    result = run_cli("examine", path, "--target-norm", "1e4", "--direction-tol", "0")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["log_norm"] == pytest.approx(np.log(1e4), rel=1e-9)
    assert report["settings"]["direction_tol"] is None


def test_unknown_construction_is_a_usage_error():
    result = run_cli("examine", "--construction", "thm9.9")
    assert_one_error_line(result, 2)
    assert "thm3.2" in result.stderr  # the message lists the known names


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["examine", "--help"],
        ["list", "--help"],
    ],
)
def test_help(args):
    result = run_cli(*args)
    assert result.returncode == 0, result.stderr
    assert "usage:" in result.stdout


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["frobnicate"],
        ["examine"],
        ["examine", "a.json", "--construction", "thm3.2"],
        ["examine", "--construction", "thm3.2", "--target-norm", "-1"],
        ["examine", "--construction", "thm3.2", "--target-norm", "inf"],
        ["examine", "--construction", "thm3.2", "--rtol", "0.5"],
        ["examine", "--construction", "thm3.2", "--loss", "hinge"],
        ["examine", "--construction", "thm3.2", "--direction-tol", "-1e-9"],
        ["examine", "--construction", "thm3.2", "--direction-tol", "one"],
    ],
    ids=lambda a: " ".join(a) or "no-args",
)
def test_bad_arguments(args):
    assert_one_error_line(run_cli(*args), 2)


# -- bad case files --------------------------------------------------------------------


def _with(**changes):
    data = json.loads(json.dumps(GOOD_CASE))
    for key, value in changes.items():
        if value is _DROP:
            del data[key]
        else:
            data[key] = value
    return json.dumps(data)


_DROP = object()

BAD_CASE_FILES = [
    # (id, file contents; None = no file at all)
    ("missing-key", _with(y=_DROP)),
    ("unknown-family", _with(network={"family": "resnet", "depth": 2})),
    ("labels-zero", _with(y=[0])),
    ("labels-two", _with(y=[2])),
    ("nan-in-X", _with(X=[[float("nan"), 2.0]])),
    ("inf-in-theta0", _with(theta0=[1.0, float("inf"), 1.0, 0.0])),
    ("X-wrong-width", _with(X=[[1.0, 2.0, 3.0]])),
    ("X-ragged", _with(X=[[1.0, 2.0], [1.0]], y=[1, 1])),
    ("X-strings", _with(X=[["a", "b"]])),
    ("y-wrong-length", _with(y=[1, -1])),
    ("theta0-wrong-length", _with(theta0=[1.0, 0.0, 1.0])),
    ("empty-X", _with(X=[], y=[])),
    ("not-json", '{"network": {"family": '),
    ("empty-file", ""),
    ("not-an-object", "[1, 2, 3]"),
    ("missing-file", None),
    ("bad-loss-name", _with(loss="hinge")),
    ("unknown-top-level-key", _with(epochs=10)),
    ("network-not-object", _with(network="diagonal")),
    ("network-missing-size", _with(network={"family": "diagonal", "dim": 2})),
    (
        "bad-activation",
        _with(
            network={"family": "diagonal", "dim": 2, "depth": 2, "activation": "tanh"}
        ),
    ),
    (
        "width-overflows",
        _with(network={"family": "fully_connected", "widths": [2, 1e999, 1]}),
    ),
    ("family-unhashable", _with(network={"family": ["diagonal"]})),
    ("labels-as-strings", _with(y=["1"])),
    ("labels-as-booleans", _with(y=[True])),
    ("name-not-a-string", _with(name={"a": 1})),
    ("widths-not-a-list", _with(network={"family": "fully_connected", "widths": 3})),
    (
        "width-too-large",
        _with(network={"family": "fully_connected", "widths": [2, 10**9, 1]}),
    ),
    (
        "index-maps-with-a-gap",
        _with(
            network={
                "family": "index_maps",
                "activation": "linear",
                "layers": [[[0, -1], [-1, 2]], [[0, 1]]],
            }
        ),
    ),
    (
        "index-maps-mismatched-layers",
        _with(
            network={
                "family": "index_maps",
                "activation": "linear",
                "layers": [[[0, -1], [-1, 1]], [[0, 1, 2]]],
            }
        ),
    ),
]


@pytest.mark.parametrize(
    "contents", [c for _, c in BAD_CASE_FILES], ids=[i for i, _ in BAD_CASE_FILES]
)
def test_bad_case_file_is_one_error_line_and_exit_2(tmp_path, contents):
    path = tmp_path / "case.json"
    if contents is not None:
        path.write_text(contents)
    assert_one_error_line(run_cli("examine", path), 2)


def test_case_file_that_is_not_utf8(tmp_path):
    path = tmp_path / "case.json"
    path.write_bytes(b"\xff\xfe{\x00")
    assert_one_error_line(run_cli("examine", path), 2)


def test_case_path_that_is_a_directory(tmp_path):
    assert_one_error_line(run_cli("examine", tmp_path), 2)


# -- the flow cannot be followed -------------------------------------------------------


@pytest.mark.parametrize(
    "theta0",
    [
        [0.0, 0.0, 0.0, 0.0],  # theta = 0 is a stationary point of every network here
    ],
)
def test_stationary_start_is_exit_3(tmp_path, theta0):
    path = write_json(tmp_path / "case.json", json.loads(_with(theta0=theta0)))
    assert_one_error_line(run_cli("examine", path), 3)


def test_dead_relu_start_is_exit_3(tmp_path):
    # Every hidden pre-activation is negative: no gradient reaches any parameter.
    case = {
        "network": {"family": "fully_connected", "widths": [2, 2, 1]},
        "X": [[1.0, 0.25], [-1.0, 0.25]],
        "y": [1, 1],
        "theta0": [0.0, -1.0, 0.0, -2.0, 1.0, 1.0],
    }
    path = write_json(tmp_path / "case.json", case)
    result = run_cli("examine", path)
    assert_one_error_line(result, 3)
    assert "gradient flow failed" in result.stderr
