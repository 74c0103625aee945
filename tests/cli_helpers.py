"""Running `python -m invariants` as a subprocess, and what every failure must
look like: one `error:` line on stderr, nothing on stdout, no traceback."""

import json
import subprocess
import sys

TIMEOUT_SECONDS = 120


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "invariants", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_SECONDS,
        check=False,
    )


def write_json(path, data) -> str:
    path.write_text(json.dumps(data))
    return str(path)


def assert_one_error_line(result: subprocess.CompletedProcess[str], code: int) -> None:
    assert result.returncode == code, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), result.stderr
