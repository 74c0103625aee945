"""Theorem 3.2 under random initialisation: the proof's event leads to a KKT point
that is not a local optimum, and the sweep that estimates the probability keeps
honest, re-checkable records."""

import json
import math

import numpy as np
import pytest

from invariants import sweep
from invariants.cases import get
from invariants.exact_check import Witness
from tests.cli_helpers import assert_one_error_line, run_cli


def event_inits(count, seed):
    """Gaussian inits conditioned on the proof's event, by rejection (about one
    draw in 164 is kept)."""
    rng = np.random.default_rng(seed)
    found = []
    while len(found) < count:
        theta0 = rng.standard_normal(6)
        if sweep.in_proof_event(theta0):
            found.append(theta0)
    return found


def test_event_probability_closed_form_matches_monte_carlo():
    rng = np.random.default_rng(20261204)
    draws = rng.standard_normal((200_000, 6))
    c = get("thm3.2")
    w = np.einsum("nij,kj->nik", draws[:, :4].reshape(-1, 2, 2), c.case.X)
    v = draws[:, 4:]
    first = np.all(w[:, 0] > 0, axis=1) & np.all(w[:, 1] < 0, axis=1) & (v[:, 0] > 0)
    second = np.all(w[:, 1] > 0, axis=1) & np.all(w[:, 0] < 0, axis=1) & (v[:, 1] > 0)
    p = float(np.mean(first | second))
    # Binomial standard error at p ~ 0.006 and 2e5 draws is 1.7e-4; allow 4 of them.
    assert p == pytest.approx(sweep.EVENT_PROBABILITY, abs=4 * 1.8e-4)
    assert sweep.EVENT_PROBABILITY == pytest.approx(0.0061, abs=5e-5)


@pytest.mark.parametrize("theta0", event_inits(2, seed=7), ids=["init0", "init1"])
def test_every_init_in_the_proof_event_reaches_a_non_local_kkt_point(theta0):
    from invariants.flow import gradient_flow
    from invariants.witness import find_local_improvement

    c = get("thm3.2")
    net, X, y = c.network, c.case.X, c.case.y
    traj = gradient_flow(net, X, y, theta0, direction_tol=1e-9)
    # The proof's limit: w_1 = (0, 2), v_1 = 2, the frozen neuron gone; the event
    # may have the neurons the other way round.
    limit = traj.theta_tilde
    if abs(limit[4]) < abs(limit[5]):
        limit = limit[[2, 3, 0, 1, 5, 4]]
    np.testing.assert_allclose(limit, c.limit, atol=1e-7)
    witness = find_local_improvement(net, X, y, traj.theta_tilde, sweep.WITNESS_RADIUS)
    assert witness is not None and witness.verify()


def test_a_small_sweep_keeps_records_that_resume_and_recheck(tmp_path):
    out = tmp_path / "runs.jsonl"
    first = sweep.sweep(4, seed=3, out=out)
    assert [r["k"] for r in first] == [0, 1, 2, 3]
    # Resuming runs nothing new and returns the same records.
    again = sweep.sweep(4, seed=3, out=out, progress=lambda *a: pytest.fail("re-ran"))
    assert again == first
    for r in first:
        assert r["verdict"] in {
            "local",
            "not local",
            "undecided",
            "no fit",
            "simulator failed",
        }
        if r["verdict"] == "not local":
            assert Witness.from_dict(r["witness"]).verify()
    s = sweep.summary(first)
    assert s["runs"] == 4 and sum(s["verdicts"].values()) == 4
    lo, hi = s["p_not_local_95"]
    assert 0 <= lo <= s["p_not_local"] <= hi <= s["p_not_local_upper_95"] <= 1
    assert len(out.read_text().splitlines()) == 4
    json.loads(out.read_text().splitlines()[0])


def test_shards_in_separate_files_merge_into_the_whole_sweep(tmp_path):
    whole = sweep.sweep(4, seed=3, out=tmp_path / "whole.jsonl")
    parts = [tmp_path / f"shard{i}.jsonl" for i in range(2)]
    for i, part in enumerate(parts):
        done = sweep.sweep(4, seed=3, out=part, shard=(i, 2))
        assert [r["k"] for r in done] == list(range(i, 4, 2))
    merged = sweep.load(parts)
    strip = [{k: v for k, v in r.items() if k != "seconds"} for r in whole]
    assert [{k: v for k, v in r.items() if k != "seconds"} for r in merged] == strip
    assert sweep.summary(merged) == sweep.summary(whole)


def test_a_batched_sweep_gives_the_single_runs_verdicts(tmp_path):
    # Seed 3, k = 0..6: four inits that never fit, one with every neuron dead, two
    # whose limit Theorem 4.3 certifies local. Half the runs first, one at a time;
    # the batch resumes the file.
    out = tmp_path / "runs.jsonl"
    single = sweep.sweep(7, seed=3)
    sweep.sweep(7, seed=3, out=out, shard=(0, 2))
    batched = sweep.sweep(7, seed=3, out=out, batch=7)
    assert [r["verdict"] for r in batched] == [r["verdict"] for r in single]
    assert {r["verdict"] for r in single} == {"no fit", "local"}
    assert [r["simulator"] for r in batched] == ["single", "batch"] * 3 + ["single"]
    for b, s in zip(batched, single):
        if s["verdict"] == "local":
            np.testing.assert_allclose(b["theta_tilde"], s["theta_tilde"], atol=1e-7)
    assert sweep.load([out]) == batched
    with pytest.raises(ValueError, match="batch must be"):
        sweep.sweep(4, seed=0, batch=0)


def test_a_run_cut_off_mid_write_is_named(tmp_path):
    path = tmp_path / "runs.jsonl"
    path.write_text(
        '{"k": 0, "seed": 1, "verdict": "no fit", "in_proof_event": false}\n{"k":'
    )
    with pytest.raises(ValueError, match=r"runs.jsonl:2 is not JSON"):
        sweep.load([path])
    with pytest.raises(ValueError, match="shard"):
        sweep.sweep(4, seed=0, shard=(2, 2))


def test_wilson_interval():
    lo, hi = sweep.wilson(0, 100)
    assert lo == 0.0 and hi == pytest.approx(0.037, abs=1e-3)
    lo, hi = sweep.wilson(50, 100)
    assert lo == pytest.approx(0.4038, abs=1e-3) and hi == pytest.approx(
        0.5962, abs=1e-3
    )
    assert not math.isnan(sweep.wilson(1, 1)[0])


def test_bad_runs_are_refused():
    with pytest.raises(ValueError, match="runs must be"):
        sweep.sweep(0, seed=0)


def test_the_sweep_command_runs_resumes_and_summarises(tmp_path):
    out = tmp_path / "runs.jsonl"
    ran = run_cli("sweep", "thm3.2", "--runs", 3, "--seed", 3, "--batch", 3,
                  "--out", out, "-q")  # fmt: skip
    assert ran.returncode == 0 and ran.stderr == "", ran.stderr
    summary = json.loads(ran.stdout)
    assert summary["runs"] == 3 and summary["verdicts"] == {"no fit": 3}
    assert [r["simulator"] for r in sweep.load([out])] == ["batch"] * 3
    merged = run_cli("sweep", "thm3.2", "--summarize", out)
    assert json.loads(merged.stdout) == summary
    for bad in (("--summarize", out, "--batch", 2), ("--batch", 0)):
        assert_one_error_line(run_cli("sweep", "thm3.2", *bad), 2)


def test_a_handed_off_run_is_recorded_as_the_single_runs(monkeypatch):
    # Seed 0, k = 189 and 214 never fit. The batch finishes them itself; a fit
    # step limit of 1 makes it hand them off ("stiff fit"), as it hands off the
    # rows it cannot finish, and the single run's answers are what is recorded.
    from invariants.batch import fit

    monkeypatch.setattr(fit, "MAX_FIT_STEPS", 1)
    records = sweep.run_batch(np.array([189, 214]), seed=0)
    assert [r["simulator"] for r in records] == [sweep.HANDED_OFF] * 2
    assert all(
        r["verdict"] == "no fit" and "(batch" not in r["reason"] for r in records
    )
    json.dumps(records)  # numpy integers came in; plain ones go out
    assert sweep.run_batch([], seed=0) == []
    with pytest.raises(TypeError, match="k must be an integer"):
        sweep.run_batch([True], seed=0)


def test_a_file_is_checked_before_running_and_its_last_line_completed(tmp_path):
    with pytest.raises(FileNotFoundError):
        sweep.sweep(
            2, seed=3, out=tmp_path / "missing" / "runs.jsonl",
            progress=lambda *a: pytest.fail("ran before the file was checked"),
        )  # fmt: skip
    out = tmp_path / "runs.jsonl"
    first = sweep.sweep(2, seed=3, out=out)
    out.write_text(out.read_text().rstrip("\n"))  # a complete last line, no newline
    sweep.sweep(3, seed=3, out=out)
    assert [r["k"] for r in sweep.load([out])] == [0, 1, 2]
    assert sweep.load([out])[:2] == first
    with pytest.raises(ValueError, match="batch must be"):
        sweep.sweep(2, seed=3, batch=True)


def test_summarize_names_runs_recorded_twice_with_different_verdicts(tmp_path):
    run = {"k": 0, "seed": 1, "in_proof_event": False, "verdict": "no fit"}
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    a.write_text(json.dumps(run) + "\n")
    b.write_text(json.dumps({**run, "verdict": "simulator failed"}) + "\n")
    merged = json.loads(run_cli("sweep", "thm3.2", "--summarize", a, b).stdout)
    assert merged["conflicting_duplicates"] == ["1/0: no fit, simulator failed"]
    assert merged["verdicts"] == {"simulator failed": 1}
    same = json.loads(run_cli("sweep", "thm3.2", "--summarize", a, a).stdout)
    assert "conflicting_duplicates" not in same
