"""`python -m invariants report`: the pages, the figures, the statuses and the exit
codes, on small subsets of rows (the full report takes minutes)."""

import dataclasses
import subprocess
import sys

import numpy as np
import pytest
from cli_helpers import TIMEOUT_SECONDS, assert_one_error_line, run_cli

from invariants import cases, cli
from invariants.report import rows, write_report
from invariants.report.figures import INSTALL_HINT

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# Cheap rows: a pure inequality, one property with flows, two constructions.
SUBSET = ("C.5", "2.1", "3.2", "5.3")


def test_the_rows_cover_every_construction_and_keys_are_unique():
    named = [n for r in rows.ROWS for n in r.constructions]
    assert sorted(named) == sorted(cases.CONSTRUCTIONS)
    assert len(set(rows.KEYS)) == len(rows.KEYS)
    assert {r.sign for r in rows.ROWS} == {"+", "-"}


def test_a_subset_writes_both_pages_with_figures(tmp_path):
    out = tmp_path / "report"
    result = run_cli(
        "report", "--out", out, "--only", ",".join(SUBSET), "--examples", "2"
    )
    assert result.returncode == 0, result.stderr

    # One progress line per row on stderr, the summary table on stdout.
    progress = result.stderr.splitlines()
    assert len(progress) == len(SUBSET), result.stderr
    assert progress[0].startswith("[1/4] Lemma C.5 ... holds (2 examples")
    assert "Theorem 3.2 ... reproduced counterexample (1 construction" in progress[2]
    assert "is as the paper says" in result.stdout

    md = (out / "report.md").read_text(encoding="utf-8")
    page = (out / "report.html").read_text(encoding="utf-8")
    table = [line for line in md.splitlines() if line.startswith("| ✔ |")]
    assert [line.split(" | ")[1] for line in table] == [
        "Lemma C.5", "Theorem 2.1", "Theorem 3.2", "Theorem 5.3",
    ]  # fmt: skip
    assert "| holds |" in table[1] and "| reproduced counterexample |" in table[3]
    assert "Theorem 4.3" not in md  # rows not selected are not run
    assert "--only C.5,2.1,3.2,5.3" in md and "seed 0" in md

    for name in ("positive", "thm3.2", "thm5.3"):
        png = out / "figures" / f"{name}.png"
        assert png.read_bytes()[:8] == PNG_MAGIC
        assert f"figures/{name}.png" in md and f'src="figures/{name}.png"' in page


def test_the_same_seed_writes_the_same_pages(tmp_path):
    only = rows.select(["C.5", "5.3"])
    first = write_report(tmp_path / "a", rows=only, examples=3, seed=7)
    second = write_report(tmp_path / "b", rows=only, examples=3, seed=7)
    assert first.outcomes[0].measurements == second.outcomes[0].measurements
    for page in ("report.md", "report.html"):
        assert (tmp_path / "a" / page).read_text() == (
            tmp_path / "b" / page
        ).read_text()


def off_balance(network, theta):
    """The limit with its first layer scaled up and the second down: the same
    margins, no KKT point (as in tests/test_theorem_2_1.py)."""
    moved = theta.copy()
    moved[network.layer_slices[0]] *= 1.2
    moved[network.layer_slices[1]] /= 1.2
    return moved


def test_a_checker_fed_a_broken_limit_fails_the_row_and_exits_1(
    tmp_path, monkeypatch, capsys
):
    row = next(r for r in rows.ROWS if r.key == "2.1")
    monkeypatch.setattr(rows, "ROWS", (dataclasses.replace(row, perturb=off_balance),))
    code = cli.main(["report", "--out", str(tmp_path), "--only", "2.1",
                     "--examples", "2", "-q"])  # fmt: skip
    assert code == 1
    stdout = capsys.readouterr().out
    assert "1 row(s) contradict the paper: Theorem 2.1" in stdout
    md = (tmp_path / "report.md").read_text(encoding="utf-8")
    assert "| ✘ | Theorem 2.1 |" in md and "| failed |" in md
    assert "2 of 2 cases fail" in md


def test_a_construction_whose_limit_is_wrong_fails_its_row(tmp_path, monkeypatch):
    c = cases.get("thm5.3")
    wrong = dataclasses.replace(c, limit=np.roll(c.limit, 1))
    monkeypatch.setitem(cases.CONSTRUCTIONS, "thm5.3", wrong)
    report = write_report(tmp_path, rows=rows.select(["5.3"]), examples=1)
    (outcome,) = report.contradictions
    assert outcome.status == "failed"
    assert "flow reaches the closed-form limit failed" in outcome.witness


def test_without_matplotlib_the_report_is_text_only_and_says_how(tmp_path):
    out = tmp_path / "report"
    code = (
        "import sys; sys.modules['matplotlib'] = None\n"
        "from invariants.cli import main\n"
        f"raise SystemExit(main(['report', '--out', {str(out)!r}, '--only', '5.3', "
        "'-q']))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_SECONDS,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # -q: no progress
    assert INSTALL_HINT == 'pip install "margin-invariants[report]"'
    assert INSTALL_HINT in result.stdout
    for page in ("report.md", "report.html"):
        text = (out / page).read_text(encoding="utf-8")
        assert "margin-invariants[report]" in text
        assert ".png" not in text
    assert not list((out / "figures").glob("*.png"))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--out", "{file}"], "is not a directory"),
        (["--out", "{file}/sub"], "cannot create --out"),
        (["--only", "9.9,C.1"], "unknown row(s) 9.9"),
        (["--examples", "0"], "must be >= 1"),
    ],
    ids=["out is a file", "out under a file", "unknown row", "no examples"],
)
def test_bad_input_is_one_error_line_and_exit_2(tmp_path, args, message):
    file = tmp_path / "taken"
    file.write_text("not a directory")
    result = run_cli("report", *(a.format(file=file) for a in args))
    assert_one_error_line(result, 2)
    assert message in result.stderr


def test_rows_are_selected_by_key_prefix_or_construction():
    from invariants.report.rows import select

    assert [r.key for r in select(["4.2"])] == ["4.2.1", "4.2.2"]
    assert [r.key for r in select(["5.4"])] == ["5.4", "5.4-not-global"]
    assert [r.key for r in select(["thm3.2", "C.1"])] == ["C.1", "3.2"]
    assert [r.key for r in select(["thm5.1-m4-relu"])] == ["5.1"]
    with pytest.raises(ValueError, match="unknown row.*4.9"):
        select(["4.9"])
