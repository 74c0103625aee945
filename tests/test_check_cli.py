"""`python -m invariants check`: a saved trajectory judged against a case file.

Every run is a real subprocess, as in test_cli.py: the exit code (0 every check
passed, 1 a check failed, 2 bad input), the summary or JSON on stdout and, for bad
input, one `error:` line on stderr. The trajectories are the simulator's path, which
must pass, and hand-built trainers and edits that each break one property.
"""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest
from cli_helpers import assert_one_error_line, run_cli

from invariants import cases
from invariants.casefile import Case
from invariants.flow import gradient_flow
from invariants.networks import convolutional, from_index_maps, fully_connected

CHECK_NAMES = ["balance", "loss_monotone", "direction", "kkt", "certificate"]


def run_check(*args: str) -> subprocess.CompletedProcess[str]:
    return run_cli("check", *args)


def statuses(result: subprocess.CompletedProcess[str]) -> dict[str, str]:
    """Check name -> PASS / FAIL / SKIP, read off the human summary."""
    out = {}
    for line in result.stdout.splitlines()[:-1]:
        status, name = line.split()[:2]
        out[name] = status
    return out


# -- the simulator's path on Lemma C.6 (depth-2 ReLU, a local optimum) -----------------


@pytest.fixture(scope="module")
def lemma_c6(tmp_path_factory):
    """(case path, the simulator's checkpoints, the case) for Lemma C.6."""
    case = cases.get("lemmaC.6").case
    traj = gradient_flow(
        case.network, case.X, case.y, case.theta0, case.loss, direction_tol=1e-9
    )
    path = tmp_path_factory.mktemp("check") / "lemmaC6.json"
    path.write_text(case.to_json())
    return str(path), traj.thetas, case


def save(tmp_path, name: str, **arrays) -> str:
    path = tmp_path / name
    np.savez(path, **arrays)
    return str(path)


def test_simulator_path_passes(lemma_c6, tmp_path):
    case_path, thetas, _ = lemma_c6
    result = run_check(save(tmp_path, "gf.npz", thetas=thetas), "--case", case_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert statuses(result) == dict.fromkeys(CHECK_NAMES, "PASS")
    assert result.stdout.splitlines()[-1].startswith("overall: PASS")
    assert result.stderr == ""


def test_json_report_has_every_check(lemma_c6, tmp_path):
    case_path, thetas, _ = lemma_c6
    times = np.arange(len(thetas), dtype=float)
    npz = save(tmp_path, "gf.npz", thetas=thetas, times=times, step=np.int64(7))
    result = run_check(npz, "--case", case_path, "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout, parse_constant=pytest.fail)
    assert report["passed"] is True and report["failed"] == []
    assert report["checkpoints"] == len(thetas)
    assert report["ignored_keys"] == ["step"]
    checks = {c["name"]: c for c in report["checks"]}
    assert list(checks) == CHECK_NAMES
    for check in checks.values():
        assert {"name", "status", "passed", "value", "threshold", "reason"} <= set(
            check
        )
        assert check["status"] == "PASS" and check["passed"] is True
        assert check["value"] <= check["threshold"]
    assert checks["certificate"]["details"]["guarantee"] == "local"


def test_fully_connected_linear_path_is_certified_global(tmp_path):
    case = Case(
        fully_connected([2, 2, 1], "linear"),
        np.array([[1.0, 0.5], [0.5, -1.0]]),
        np.array([1.0, -1.0]),
        np.array([0.5, 0.2, -0.3, 0.4, 0.6, 0.1]),
    )
    traj = gradient_flow(
        case.network, case.X, case.y, case.theta0, case.loss, direction_tol=1e-9
    )
    (tmp_path / "case.json").write_text(case.to_json())
    npz = save(tmp_path, "gf.npz", thetas=traj.thetas)
    result = run_check(npz, "--case", tmp_path / "case.json", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    certificate = json.loads(result.stdout)["checks"][-1]
    assert certificate["details"]["guarantee"] == "global"
    assert certificate["passed"] is True


# -- faulty trajectories fail and are named --------------------------------------------


def test_layer_scaled_up_over_time_fails_balance(lemma_c6, tmp_path):
    case_path, thetas, case = lemma_c6
    scaled = thetas.copy()
    first_layer = case.network.layer_slices[0]
    scaled[:, first_layer] *= np.linspace(1.0, 1.5, len(thetas))[:, None]
    result = run_check(save(tmp_path, "s.npz", thetas=scaled), "--case", case_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert statuses(result)["balance"] == "FAIL"
    assert "balance" in result.stdout.splitlines()[-1]


def test_increasing_loss_fails_monotonicity(lemma_c6, tmp_path):
    case_path, thetas, _ = lemma_c6
    # Halving one early checkpoint shrinks its margins four-fold: the loss rises
    # into it from its predecessor.
    edited = thetas.copy()
    edited[5] *= 0.5
    result = run_check(save(tmp_path, "l.npz", thetas=edited), "--case", case_path)
    assert result.returncode == 1, result.stdout
    assert statuses(result)["loss_monotone"] == "FAIL"


def test_non_separating_last_checkpoint_fails_kkt(lemma_c6, tmp_path):
    case_path, thetas, _ = lemma_c6
    edited = np.vstack([thetas, -thetas[-1]])
    result = run_check(save(tmp_path, "k.npz", thetas=edited), "--case", case_path)
    assert result.returncode == 1
    assert statuses(result)["kkt"] == "FAIL"
    assert "does not separate the data" in result.stdout


# A depth-2 linear convolution: one filter of 2 weights shared by 2 patches.
CONV = convolutional(3, 2, activation="linear")
CONV_X = np.array([[1.0, 0.5, 0.25], [0.5, 1.0, -0.5]])
CONV_Y = np.ones(2)
CONV_THETA0 = np.array([0.3, 0.2, 0.4, 0.1])


def _per_use_gradient_counted_once(theta: np.ndarray) -> np.ndarray:
    """A trainer's bug: each use of the shared filter gets its own gradient, then
    they are scattered back by assignment, so the last use overwrites the others."""
    P1 = CONV.index_maps[0]
    uses = np.flatnonzero(P1.ravel() >= 0)
    targets = P1.ravel()[uses]
    U1 = np.full(P1.shape, -1)
    U1.ravel()[uses] = np.arange(len(uses))
    unshared = from_index_maps([U1, CONV.index_maps[1]], "linear")
    k = CONV.layer_sizes[0]
    q, J_uses = unshared.margin_jacobian(
        np.concatenate([theta[:k][targets], theta[k:]]), CONV_X, CONV_Y
    )
    J = np.zeros((len(CONV_Y), CONV.num_parameters))
    J[:, targets] = J_uses[:, : len(uses)]
    J[:, k:] = J_uses[:, len(uses) :]
    return q, J


def _correct_gradient(theta: np.ndarray):
    return CONV.margin_jacobian(theta, CONV_X, CONV_Y)


def _gradient_descent(margin_jacobian, eta=0.05, steps=4000, every=100):
    theta, saved = CONV_THETA0.copy(), [CONV_THETA0.copy()]
    for step in range(1, steps + 1):
        q, J = margin_jacobian(theta)
        theta = theta + eta * (np.exp(-q) @ J)  # exponential loss
        if step % every == 0:
            saved.append(theta.copy())
    return np.array(saved)


@pytest.fixture(scope="module")
def conv_case(tmp_path_factory):
    path = tmp_path_factory.mktemp("check") / "conv.json"
    path.write_text(Case(CONV, CONV_X, CONV_Y, CONV_THETA0).to_json())
    return str(path)


# Plain GD at eta = 0.05 drifts by O(eta) and, after 4000 steps, is still ~6e-2
# from a KKT direction (GD's direction converges like 1 / log t): both allowances
# are the trainer's, not the checker's.
GD_TOLERANCES = ("--balance-tol", "1e-2", "--kkt-tol", "0.1")


def test_correct_gradient_descent_passes_with_its_tolerances(conv_case, tmp_path):
    npz = save(tmp_path, "gd.npz", thetas=_gradient_descent(_correct_gradient))
    result = run_check(npz, "--case", conv_case, *GD_TOLERANCES)
    assert result.returncode == 0, result.stdout + result.stderr
    # A shared-weight network has no whole-network guarantee to certify.
    assert statuses(result)["certificate"] == "SKIP"


def test_shared_weight_gradient_counted_once_fails(conv_case, tmp_path):
    thetas = _gradient_descent(_per_use_gradient_counted_once)
    npz = save(tmp_path, "bad.npz", thetas=thetas)
    result = run_check(npz, "--case", conv_case, *GD_TOLERANCES)
    assert result.returncode == 1, result.stdout + result.stderr
    seen = statuses(result)
    assert seen["balance"] == "FAIL" and seen["kkt"] == "FAIL"
    assert "C.2 layers 1-2" in result.stdout


# -- bad input: exit 2, one error line -------------------------------------------------


def _one_row(thetas):
    return {"thetas": thetas[:1]}


def _with_nan(thetas):
    bad = thetas.copy()
    bad[3, 2] = np.nan
    return {"thetas": bad}


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        (lambda t: {"theta": t}, "missing key 'thetas'"),
        (_with_nan, "must be finite"),
        (lambda t: {"thetas": t[:, :-1]}, "P = 5 columns"),
        (_one_row, "at least 2"),
        (lambda t: {"thetas": t[0]}, "must be 2-D"),
        (lambda t: {"thetas": t.astype(complex)}, "real numbers"),
        (lambda t: {"thetas": t, "times": -np.arange(len(t))}, "strictly increasing"),
        (lambda t: {"thetas": t, "times": np.arange(3)}, "'times' must have shape"),
    ],
    ids=["missing-key", "nan", "wrong-P", "one-checkpoint", "1-D", "complex",
         "times-decreasing", "times-shape"],
)  # fmt: skip
def test_bad_checkpoints_exit_2(lemma_c6, tmp_path, arrays, message):
    case_path, thetas, _ = lemma_c6
    npz = save(tmp_path, "bad.npz", **arrays(thetas))
    result = run_check(npz, "--case", case_path)
    assert_one_error_line(result, 2)
    assert message in result.stderr


def test_missing_checkpoint_file_exits_2(lemma_c6, tmp_path):
    result = run_check(tmp_path / "nowhere.npz", "--case", lemma_c6[0])
    assert_one_error_line(result, 2)
    assert "does not exist" in result.stderr


def test_not_an_npz_exits_2(lemma_c6, tmp_path):
    (tmp_path / "junk.npz").write_text("not a zip")
    result = run_check(tmp_path / "junk.npz", "--case", lemma_c6[0])
    assert_one_error_line(result, 2)
    npy = tmp_path / "plain.npy"
    np.save(npy, lemma_c6[1])
    result = run_check(npy, "--case", lemma_c6[0])
    assert_one_error_line(result, 2)
    assert "not an .npz archive" in result.stderr


def test_bad_case_file_exits_2(lemma_c6, tmp_path):
    npz = save(tmp_path, "gf.npz", thetas=lemma_c6[1])
    (tmp_path / "case.json").write_text('{"network": {}}')
    result = run_check(npz, "--case", tmp_path / "case.json")
    assert_one_error_line(result, 2)
    assert "case file" in result.stderr
    assert_one_error_line(run_check(npz, "--case", tmp_path / "absent.json"), 2)
    assert_one_error_line(run_check(npz), 2)  # --case is required


def test_bad_tolerance_exits_2(lemma_c6, tmp_path):
    npz = save(tmp_path, "gf.npz", thetas=lemma_c6[1])
    for option in ("--kkt-tol", "--direction-tol", "--balance-tol"):
        assert_one_error_line(run_check(npz, "--case", lemma_c6[0], option, "-1"), 2)
    too_loose = run_check(npz, "--case", lemma_c6[0], "--certificate-tol", "0.5")
    assert_one_error_line(too_loose, 2)
