"""The conformance mode: `pytest --pyargs invariants.conformance --trainer=...`.

Each run is a real pytest subprocess started outside the repository (so neither
conftest.py nor pyproject's options apply, as in another project), with tests/ on
PYTHONPATH for the reference trainers of tests/trainers.py, the derandomised
margin-ci profile (CI=true) and a few cases per property. Validation of a trainer's
output and of its claims is tested in-process.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import trainers

from invariants import cases
from invariants.conformance._properties import balance
from invariants.trainer import (
    Budget,
    Claims,
    TrainerError,
    TrainerSpecError,
    declare,
    load_trainer,
    run_trainer,
)

TESTS = Path(__file__).resolve().parent
TIMEOUT_SECONDS = 300
SHARED_FAMILIES = "--margin-families=convolutional,shared"


def run_conformance(
    tmp_path,
    *args: str,
    examples: int = 3,
    target: str = "invariants.conformance",
    **extra_env: str,
):
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PYTEST_", "MARGIN_INVARIANTS_", "HYPOTHESIS"))
    }
    env["CI"] = "true"  # the derandomised margin-ci profile: the same cases each run
    env["PYTHONPATH"] = os.pathsep.join(
        [str(TESTS), *filter(None, [os.environ.get("PYTHONPATH")])]
    )
    env.update(extra_env)
    command = [
        sys.executable,
        "-m",
        "pytest",
        "--pyargs",
        target,
        "-p",
        "no:cacheprovider",
        "-rfs",
        f"--margin-max-examples={examples}",
        f"--margin-repro-dir={tmp_path / 'repro'}",
        *args,
    ]
    return subprocess.run(
        command,
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_SECONDS,
        check=False,
    )


def outcome(result) -> dict[str, int]:
    """The counts of the final summary line, e.g. {'passed': 2, 'skipped': 3}."""
    last = result.stdout.strip().splitlines()[-1]
    return {
        word: int(n) for n, word in re.findall(r"(\d+) (passed|failed|skipped)", last)
    }


def test_ours_passes_every_property(tmp_path):
    result = run_conformance(tmp_path, "--trainer=trainers:ours")
    assert result.returncode == 0, result.stdout + result.stderr
    assert outcome(result) == {"passed": 5, "skipped": 1}
    assert "'trainers:ours' is a gradient-flow trainer: it returns checkpoints" in (
        result.stdout
    )
    header = "trainer 'trainers:ours' (gradient flow, direction_tol=1e-09)"
    assert header in result.stdout
    assert "hypothesis profile 'margin-ci', derandomize on" in result.stdout


def test_gradient_descent_passes_what_holds_and_skips_the_limit(tmp_path):
    # On the weight-sharing families, where `faulty` below fails.
    result = run_conformance(tmp_path, "--trainer=trainers:gd", SHARED_FAMILIES)
    assert result.returncode == 0, result.stdout + result.stderr
    assert outcome(result) == {"passed": 3, "skipped": 3}
    skips = [line for line in result.stdout.splitlines() if "SKIPPED" in line]
    assert len(skips) == 3
    for line in skips:
        assert "gradient-descent trainer with step 0.01" in line
        assert "claims no direction_tol" in line


def test_faulty_shared_weight_gradient_fails_with_a_report(tmp_path):
    # All families: the paper's shared-weight constructions run as explicit examples,
    # so the fault is caught however few networks with tied weights are drawn.
    result = run_conformance(tmp_path, "--trainer=trainers:faulty")
    out = result.stdout
    assert result.returncode == 1, out + result.stderr
    assert outcome(result) == {"failed": 2, "passed": 1, "skipped": 3}
    assert "FAILED test_balance.py" in out and "FAILED test_update.py" in out
    assert "balancedness (Lemmas C.1-C.3) FAILED for trainer 'trainers:faulty'" in out
    measured = re.search(r"measured balance: (\S+), tolerance (\S+)", out)
    assert measured, out
    assert float(measured[1]) > float(measured[2])
    assert "C.2 layers 1-2" in out
    assert re.search(
        # Hypothesis 6.170 prints "Failing" where earlier versions print "Falsifying".
        r"(Falsifying|Failing) (explicit )?example: "
        r"test_conserved_quantities_of_lemmas_c1_to_c3\(",
        out,
    )
    # The only reproduction advice is ours: no patch, no blob, no .hypothesis/ here,
    # and no `python -m invariants check`, which judges something else.
    for advice in ("git apply", "reproduce_failure", "python -m invariants check"):
        assert advice not in out, advice
    assert not (tmp_path / ".hypothesis").exists()

    # Only the reported cases are written, and the printed replay gives the verdict.
    printed = set(re.findall(r"python -m invariants\.conformance \S+ (\S+\.json)", out))
    written = {str(path) for path in (tmp_path / "repro").glob("*.json")}
    assert printed and written == printed, (printed, written)
    replay = subprocess.run(
        [sys.executable, "-m", "invariants.conformance", "trainers:faulty", *printed],
        env={
            **os.environ,
            "PYTHONPATH": os.pathsep.join(
                [str(TESTS), *filter(None, [os.environ.get("PYTHONPATH")])]
            ),
        },
        capture_output=True,
        text=True,
        timeout=TIMEOUT_SECONDS,
        check=False,
    )
    assert replay.returncode == 1, replay.stdout + replay.stderr
    assert replay.stdout.splitlines()[-1].startswith("overall: FAIL (balance")


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("wrong_loss", "is not along -grad L of the declared"),
        ("ten_times_the_step", "has eta_k = 0.1, not the declared step_size 0.01"),
    ],
)
def test_wrong_gradient_step_fails_the_update_property(tmp_path, name, message):
    # Balance and loss decrease pass for these: any positive reweighting keeps them.
    result = run_conformance(
        tmp_path,
        f"--trainer=trainers:{name}",
        examples=1,
        target="invariants.conformance.test_update",
    )
    out = result.stdout
    assert result.returncode == 1, out + result.stderr
    assert (
        f"gradient step of the declared loss FAILED for trainer 'trainers:{name}'"
        in out
    )
    assert message in out
    assert "judged steps fail (first: step 0)" in out
    assert "tolerance from: per step, eps x" in out
    assert f"python -m invariants.conformance trainers:{name} " in out


def test_clipped_descent_declared_adaptive_passes_the_update_property(tmp_path):
    result = run_conformance(
        tmp_path,
        "--trainer=trainers:clipped",
        target="invariants.conformance.test_update",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert outcome(result) == {"passed": 1}
    assert "(gradient descent, adaptive step <= 0.01" in result.stdout


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("trainers.ours", "is not of the form package.module:function"),
        ("no_such_module_xyz:train", "cannot import module 'no_such_module_xyz'"),
        ("trainers:missing", "has no attribute 'missing'"),
        ("trainers:not_callable", "not a callable trainer"),
        ("trainers:undeclared", "declares no claims"),
    ],
    ids=[
        "no-colon",
        "missing-module",
        "missing-attribute",
        "not-callable",
        "no-claims",
    ],
)
def test_bad_trainer_spec_is_named(spec, message):
    with pytest.raises(TrainerSpecError, match=re.escape(message)) as info:
        load_trainer(spec)
    assert "\n" not in str(info.value)


def assert_one_usage_error(
    result, message: str, prefix: str = "ERROR: margin-invariants --trainer:"
) -> None:
    assert result.returncode == pytest.ExitCode.USAGE_ERROR, result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(errors) == 1, result.stderr
    assert errors[0].startswith(prefix)
    assert message in errors[0]


@pytest.mark.parametrize(
    ("where", "message"),
    [("a-file", "is a file; name a directory"), ("/proc/nope", "cannot be created")],
)
def test_bad_repro_dir_is_a_one_line_usage_error(tmp_path, where, message):
    (tmp_path / "a-file").write_text("")
    result = run_conformance(
        tmp_path,
        "--trainer=trainers:faulty",
        f"--margin-repro-dir={tmp_path / where}",
    )
    assert_one_usage_error(result, message, "ERROR: margin-invariants: ")
    assert "--margin-repro-dir=" in result.stderr


def test_unwritable_reproduction_falls_back_to_the_case_inline(tmp_path):
    from types import SimpleNamespace

    from invariants.pytest_plugin import _write_case

    blocked = tmp_path / "a-file"
    blocked.write_text("")
    report = SimpleNamespace(sections=[])
    _write_case(report, blocked / "case-x.json", '{"loss": "exponential"}')
    [(title, text)] = report.sections
    assert title == "margin-invariants reproduction"
    assert text.startswith(f"could not write {blocked / 'case-x.json'}")
    assert text.endswith('{"loss": "exponential"}')


def test_bad_trainer_is_a_one_line_usage_error(tmp_path):
    result = run_conformance(tmp_path, "--trainer=trainers:not_callable")
    assert_one_usage_error(result, "'trainers:not_callable' is an object of type int")


def test_trainer_from_the_environment_variable(tmp_path):
    result = run_conformance(tmp_path, MARGIN_INVARIANTS_TRAINER="no_such_xyz:train")
    assert_one_usage_error(result, "cannot import module 'no_such_xyz'")


def test_nan_output_fails_the_example_with_its_position(tmp_path):
    # One module is enough: the same validation runs before every property.
    result = run_conformance(
        tmp_path,
        "--trainer=trainers:nan_trainer",
        examples=1,
        target="invariants.conformance.test_loss",
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert outcome(result)["failed"] >= 1
    assert "TrainerError: trainer 'trainers:nan_trainer' returned an invalid" in (
        result.stdout
    )
    assert "must be finite; thetas[5, 0] = nan" in result.stdout
    # An invalid output is replayed like any failure, from the file it names.
    replay = re.search(
        r"python -m invariants\.conformance \S+ (\S+\.json)", result.stdout
    )
    assert replay, result.stdout
    assert Path(replay[1]).is_file()


def test_without_a_trainer_the_suite_is_skipped(tmp_path):
    result = run_conformance(tmp_path)
    assert result.returncode == pytest.ExitCode.NO_TESTS_COLLECTED, result.stdout
    assert "no trainer: run with --trainer=package.module:function" in result.stdout
    # Without a trainer the plugin adds nothing to the session.
    assert "margin-invariants conformance" not in result.stdout


def test_plugin_imports_nothing_heavy():
    # pytest loads the plugin in every session of every project that installs us.
    code = (
        "import sys, invariants.pytest_plugin; "
        "print([m for m in ('numpy', 'scipy', 'hypothesis', 'cvxpy', "
        "'invariants.trainer', 'invariants.networks') if m in sys.modules])"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_SECONDS,
        check=True,
    )
    assert result.stdout.strip() == "[]"


# -- in-process: the output validation and the claims ----------------------------------


@pytest.fixture(scope="module")
def case():
    return cases.get("lemmaC.6").case


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("nan_trainer", "must be finite; thetas[5, 0] = nan"),
        ("wrong_shape", "P = 5 columns but the case's network has 6 parameters"),
        ("not_an_array", "returned str 'thetas'"),
        ("empty", "returned an empty trajectory"),
        ("ignores_theta0", "does not start at theta0"),
    ],
)
def test_malformed_output_is_named(case, name, message):
    with pytest.raises(TrainerError) as info:
        run_trainer(load_trainer(f"trainers:{name}"), case, Budget())
    assert f"trainer 'trainers:{name}'" in str(info.value)
    assert message in str(info.value)


def test_too_many_descent_steps_are_refused(case, monkeypatch):
    def over_budget(problem):
        return np.tile(problem.theta0, (problem.budget.max_steps + 2, 1))

    over_budget.margin_invariants_claims = Claims("gradient_descent", step_size=0.1)
    monkeypatch.setattr(trainers, "over_budget", over_budget, raising=False)
    with pytest.raises(TrainerError, match="4 steps, more than max_steps=3"):
        run_trainer(load_trainer("trainers:over_budget"), case, Budget(max_steps=3))


def test_trainer_exception_is_a_failure_not_a_crash(case, monkeypatch):
    def broken(problem):
        raise RuntimeError("out of memory")

    broken.margin_invariants_claims = Claims("gradient_flow")
    monkeypatch.setattr(trainers, "broken", broken, raising=False)
    with pytest.raises(TrainerError, match="raised RuntimeError: out of memory"):
        run_trainer(load_trainer("trainers:broken"), case, Budget())


@pytest.mark.parametrize(
    ("claims", "message"),
    [
        ({"method": "sgd"}, "method='sgd' must be one of"),
        ({"method": "gradient_descent"}, "needs step_size=eta > 0"),
        ({"method": "gradient_flow", "step_size": 0.1}, "is for gradient_descent"),
        ({"method": "gradient_flow", "direction_tol": 0.1}, "direction_tol=0.1"),
        (
            {"method": "gradient_descent", "step_size": 0.1, "balance_tol": 0.1},
            "derived from gradient descent",
        ),
    ],
)
def test_bad_claims_are_refused(claims, message):
    with pytest.raises(TrainerSpecError, match=re.escape(message)):
        Claims(**claims)


def test_descent_balance_bound_holds_for_exact_steps_and_not_for_the_bug():
    # The conv network of test_check_cli.py (one filter of 2 weights, 2 patches),
    # from a start past the loss threshold (L(theta0) = 0.75).
    from invariants.casefile import Case
    from invariants.networks import convolutional

    conv = Case(
        convolutional(3, 2, activation="linear"),
        np.array([[1.0, 0.5, 0.25], [0.5, 1.0, -0.5]]),
        np.ones(2),
        np.array([0.72, 0.48, 0.96, 0.24]),
    )
    claims = Claims("gradient_descent", step_size=trainers.GD_STEP)
    exact = run_trainer(load_trainer("trainers:gd"), conv, Budget())
    faulty = run_trainer(load_trainer("trainers:faulty"), conv, Budget())
    good, bad = balance(conv, exact, claims), balance(conv, faulty, claims)
    assert good.passed, good
    assert not bad.passed and bad.value > 10 * bad.threshold, bad


def _attach(monkeypatch, name, function, **claims):
    function.margin_invariants_claims = Claims(**claims)
    monkeypatch.setattr(trainers, name, function, raising=False)
    return load_trainer(f"trainers:{name}")


@pytest.mark.parametrize(
    ("case_name", "trainer", "declared", "message"),
    [
        ("lemmaC.6", "gd", {}, None),
        ("lemmaC.6", "clipped", {}, None),
        ("lemmaC.6", "wrong_loss", {}, "is not along -grad L of the declared"),
        ("lemmaC.6", "ten_times_the_step", {}, "not the declared step_size 0.01"),
        ("lemmaC.6", "gd", {"step_size": 1e-12}, "not the declared step_size 1e-12"),
        ("lemmaC.6", "gd", {"step_size": 1e6}, "not the declared step_size 1e+06"),
        # Labels flipped: q < 0, ||grad L|| > 1, so the clip is active.
        ("lemmaC.6-flipped", "clipped", {"fixed_step": True}, "not the declared"),
        ("lemmaC.6-flipped", "clipped", {}, None),
        # n = 1: every weighting points the same way; the step length catches it.
        ("thm4.4-linear", "wrong_loss", {}, "not the declared step_size 0.01"),
        ("thm4.4-linear", "gd", {"step_size": 0.1, "fixed_step": False}, None),
        ("thm4.4-linear", "ten_times_the_step", {"fixed_step": False}, "> the dec"),
    ],
)
def test_update_property_checks_the_declared_step(
    case_name, trainer, declared, message
):
    from dataclasses import replace

    from invariants.conformance._properties import PROPERTIES

    case = cases.get(case_name.removesuffix("-flipped")).case
    if case_name.endswith("-flipped"):
        case = replace(case, y=-case.y)
    loaded = load_trainer(f"trainers:{trainer}")
    checkpoints = run_trainer(loaded, case, Budget())
    check = PROPERTIES["update"](case, checkpoints, replace(loaded.claims, **declared))
    assert check.passed is (message is None), check
    if message is not None:
        assert message in check.reason and check.value > check.threshold, check


def test_update_property_catches_the_derivative_of_exp_minus_2q(monkeypatch):
    from invariants.conformance._properties import PROPERTIES

    def doubled(problem):
        net, X, y = problem.network, problem.X, problem.y
        theta, path = problem.theta0.copy(), [problem.theta0.copy()]
        for _ in range(20):
            q, J = net.margin_jacobian(theta, X, y)
            theta = theta + trainers.GD_STEP * (2 * np.exp(-2 * q) @ J)
            path.append(theta)
        return path

    case = cases.get("lemmaC.6").case
    loaded = _attach(
        monkeypatch, "doubled", doubled, method="gradient_descent", step_size=0.01
    )
    check = PROPERTIES["update"](
        case, run_trainer(loaded, case, Budget()), loaded.claims
    )
    assert check.passed is False and "20 of 20 judged steps fail" in check.reason


@pytest.mark.parametrize(
    ("output", "message"),
    [
        ({1: 2, "a": 3}, "a mapping without 'thetas' (keys: 1, 'a')"),
        ((row for row in ()), "a generator/iterator (generator): return a list"),
        ({"thetas": iter([])}, "a generator/iterator (list_iterator) for 'thetas'"),
    ],
    ids=["unsortable-keys", "generator", "iterator-thetas"],
)
def test_unusual_output_is_named(case, monkeypatch, output, message):
    loaded = _attach(monkeypatch, "odd", lambda problem: output, method="gradient_flow")
    with pytest.raises(TrainerError) as info:
        run_trainer(loaded, case, Budget())
    assert message in str(info.value) and "\n" not in str(info.value)


def test_array_conversion_error_is_named(case, monkeypatch):
    class Tensor:  # like a torch tensor that requires grad
        def __array__(self, dtype=None, copy=None):
            raise RuntimeError("Can't call numpy() on Tensor that requires grad")

    loaded = _attach(
        monkeypatch, "tensor", lambda problem: Tensor(), method="gradient_flow"
    )
    with pytest.raises(TrainerError, match="type Tensor that does not convert") as info:
        run_trainer(loaded, case, Budget())
    assert "RuntimeError: Can't call numpy()" in str(info.value)


def test_integer_output_is_accepted_as_float(case, monkeypatch):
    theta0 = case.theta0.astype(int)  # lemmaC.6 starts at integers
    loaded = _attach(
        monkeypatch,
        "ints",
        lambda problem: np.array([theta0, theta0 + 1]),
        method="gradient_flow",
    )
    assert run_trainer(loaded, case, Budget()).thetas.dtype == np.float64


def test_claims_with_an_unknown_key_are_a_usage_error(monkeypatch):
    def dict_claims(problem):
        return [problem.theta0, problem.theta0]

    dict_claims.margin_invariants_claims = {"method": "gd", "lr": 1}
    monkeypatch.setattr(trainers, "dict_claims", dict_claims, raising=False)
    with pytest.raises(TrainerSpecError) as info:
        load_trainer("trainers:dict_claims")
    assert "unknown claim 'lr'; the claims are method, step_size" in str(info.value)
    assert "\n" not in str(info.value)
    with pytest.raises(TrainerSpecError, match="unknown claim 'lr'"):
        declare(method="gradient_descent", lr=0.1)


def test_loss_rise_says_at_how_many_steps(case):
    from invariants.checkpoints import Checkpoints
    from invariants.conformance._properties import loss_decrease

    down = run_trainer(load_trainer("trainers:gd"), case, Budget()).thetas[-1]
    thetas = np.array([case.theta0, down, case.theta0, down, case.theta0])
    check = loss_decrease(case, Checkpoints(thetas, None, np.dtype(float), ()), None)
    assert check.passed is False
    assert check.reason.startswith("log L rose at 2 of 4 steps, most from checkpoint")
