"""The example downstream project's suite passes against the installed package.

examples/downstream is a separate project that imports `invariants` and `strategies`
the way another lab would. Its tests run in a subprocess whose cwd is that project
and whose sys.path does not contain this repository's root, so the packages are
found through their installation (editable or not) and a public name that is
removed or renamed breaks this test.
"""

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOWNSTREAM = REPO / "examples" / "downstream"
# The downstream suite takes ~3 s; a generous cap so a hang fails instead of stalling.
TIMEOUT = 120


def _run(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    # Its own profile, not ours: this repository's conftest.py is outside its rootdir.
    env.pop("MARGIN_INVARIANTS_PROFILE", None)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return subprocess.run(
        [sys.executable, *args],
        cwd=DOWNSTREAM,
        env=env,
        check=False,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )


def test_the_repository_root_is_not_on_the_downstream_path():
    probe = _run(
        "-c",
        "import json, sys, invariants, strategies; "
        "print(json.dumps([sys.path, invariants.__file__, strategies.__file__]))",
    )
    assert probe.returncode == 0, probe.stderr
    path, invariants_file, strategies_file = json.loads(probe.stdout)
    resolved = {str((DOWNSTREAM / p).resolve()) for p in path}
    assert str(REPO) not in resolved, path
    # Found through the installation; an editable install points back into the repo.
    for name, file in (
        ("invariants", invariants_file),
        ("strategies", strategies_file),
    ):
        assert Path(file).name == "__init__.py", (name, file)


def test_the_downstream_suite_passes():
    result = _run("-m", "pytest", "-q", "-p", "no:cacheprovider")
    report = f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert result.returncode == 0, report
    assert " passed" in result.stdout and "failed" not in result.stdout, report


def test_the_downstream_trainer_passes_the_conformance_gate():
    # The command its CI runs, with the CI profile the plugin offers; GD claims no
    # converged direction, so the limit properties are skipped, each with a reason.
    result = _run(
        "-m", "pytest", "-p", "no:cacheprovider", "-rs", "--pyargs",
        "invariants.conformance", "--trainer=downstream_trainer:gate",
        "--hypothesis-profile=margin-ci", "--margin-max-examples=5",
    )  # fmt: skip
    report = f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert result.returncode == 0, report
    assert "3 passed, 3 skipped" in result.stdout, report
    assert "trainer 'downstream_trainer:gate' (gradient descent" in result.stdout
    assert "hypothesis profile 'margin-ci'" in result.stdout, report
    assert "SKIPPED" in result.stdout and "direction" in result.stdout, report


def _library_imports(path: Path):
    """(module, name) for every import of `invariants` or `strategies` in a file."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from ((alias.name, "") for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield from ((node.module, alias.name) for alias in node.names)


def test_the_downstream_project_imports_only_public_names():
    # Private modules and names (a leading underscore) may change without notice.
    files = [DOWNSTREAM / "downstream_trainer.py", *DOWNSTREAM.glob("tests/*.py")]
    seen = 0
    for path in files:
        for module, name in _library_imports(path):
            if module.split(".")[0] not in ("invariants", "strategies"):
                continue
            seen += 1
            parts = [*module.split("."), name]
            assert not any(p.startswith("_") for p in parts), (path.name, module, name)
    assert seen > 0
