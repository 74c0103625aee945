"""Meta-tests of the suite's Hypothesis profiles and how conftest.py selects one."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, settings

REPO_ROOT = Path(__file__).resolve().parents[1]
PROFILES = ("dev", "margin-ci", "thorough")
SUBPROCESS_TIMEOUT_SECONDS = 120


def _run_pytest(*args: str, **env_overrides: str) -> subprocess.CompletedProcess[str]:
    """Run a fresh pytest on this file from the repository root, output captured."""
    env = dict(os.environ)
    for name in ("PYTEST_ADDOPTS", "MARGIN_INVARIANTS_PROFILE", "CI"):
        env.pop(name, None)
    env.update(env_overrides)
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "--collect-only",
            "-p",
            "no:cacheprovider",
            *args,
            "tests/test_meta_profiles.py",
        ],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT_SECONDS,
        check=False,
    )


@pytest.mark.parametrize("name", PROFILES)
def test_profile_is_registered(name: str) -> None:
    assert isinstance(settings.get_profile(name), settings)


def test_ci_profile_is_deterministic() -> None:
    ci = settings.get_profile("margin-ci")
    assert ci.derandomize is True
    assert ci.database is None
    assert ci.deadline is None
    assert ci.print_blob is True
    assert ci.max_examples == 50
    assert ci.report_multiple_bugs is False
    assert set(ci.suppress_health_check) == {
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    }
    assert tuple(ci.phases) == tuple(Phase)


@pytest.mark.parametrize("name", ["dev", "thorough"])
def test_other_profiles_do_not_inherit_hypothesis_ci_profile(name: str) -> None:
    # Hypothesis loads its own derandomised `ci` profile when it detects CI; a profile
    # registered without an explicit parent would silently inherit from it.
    profile = settings.get_profile(name)
    assert profile.derandomize is False
    assert profile.database is not None


def test_bad_profile_environment_variable_is_a_usage_error() -> None:
    result = _run_pytest("-q", MARGIN_INVARIANTS_PROFILE="no-such-profile")
    output = result.stdout + result.stderr
    assert result.returncode == pytest.ExitCode.USAGE_ERROR, output
    assert "no-such-profile" in output
    for name in PROFILES:
        assert name in output


@pytest.mark.parametrize(
    ("env", "args", "expected"),
    [
        ({}, (), "dev"),
        ({"CI": "true"}, (), "margin-ci"),
        ({"CI": "false"}, (), "dev"),
        ({"CI": "true", "MARGIN_INVARIANTS_PROFILE": "thorough"}, (), "thorough"),
        (
            {"MARGIN_INVARIANTS_PROFILE": "thorough"},
            ("--hypothesis-profile=margin-ci",),
            "margin-ci",
        ),
    ],
)
def test_profile_selection_precedence(
    env: dict[str, str], args: tuple[str, ...], expected: str
) -> None:
    result = _run_pytest(*args, **env)
    output = result.stdout + result.stderr
    assert result.returncode == pytest.ExitCode.OK, output
    assert f"hypothesis profile {expected!r}," in result.stdout, output
