"""Run the suite against each fault of `catalogue.FAULTS` and report the kill rate.

    python faults/run.py [--only NAME ...] [--profile margin-ci|thorough]
                         [--tests NODEID ...] [--out faults/results.jsonl]
                         [--timeout 1200]

Every run works on a fresh copy of the commit HEAD is at when it starts (`git
archive`), under a temporary directory; the working tree is never edited. The suite
first runs on the clean copy and must pass. Then each fault is applied to its own
copy and the copy's suite runs with `pytest -x -n auto`: a fault is killed by the
first failing test.
Results are appended to --out as one JSON line per fault with the commit they were
measured on; faults already there for HEAD are skipped, so an interrupted run
resumes where it stopped.

`--tests` runs only those test ids (baseline included) instead of the whole suite:
a `thorough` run of the whole suite takes hours on 2 cores, so `thorough` is
measured on the tests that killed each fault under `margin-ci`. Records keep the
selection, and only records of the same profile and selection are resumed.

A fault whose edit does not apply exactly once is an error of the catalogue, not a
survivor: the run stops and names it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "faults"))

from catalogue import FAULTS, Fault


def apply(fault: Fault, tree: Path) -> None:
    path = tree / fault.path
    text = path.read_text()
    count = text.count(fault.old)
    if count != 1:
        raise SystemExit(
            f"fault {fault.name!r}: its edit matches {count} times in {fault.path}, "
            "not once; fix the catalogue"
        )
    path.write_text(text.replace(fault.old, fault.new))


# The clean tree, run first: a suite that fails without any fault would "kill"
# every fault.
BASELINE = Fault("(baseline: no fault)", "none", "", "", "")


def head_commit() -> str:
    return subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "HEAD"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip


def run_one(fault: Fault, profile: str, timeout: float, commit: str, tests=()) -> dict:
    with tempfile.TemporaryDirectory(prefix="fault-") as tmp:
        tree = Path(tmp) / "tree"
        tree.mkdir()
        # The commit HEAD was at when the run started, not the working tree (an
        # edit in progress must not kill or shelter a fault), nor a later HEAD (a
        # commit made during the run would go unchecked by the baseline).
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", commit], capture_output=True, check=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
        if fault is not BASELINE:
            apply(fault, tree)
        env = dict(os.environ, PYTHONPATH=str(tree), COLUMNS="400")
        env.pop("CI", None)
        # The copy must shadow the editable install of the real tree, or the
        # fault would never be exercised.
        where = subprocess.run(
            [sys.executable, "-c", "import invariants; print(invariants.__file__)"],
            cwd=tree, env=env, capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
        if not where.startswith(str(tree)):
            raise SystemExit(f"the copy is not the code under test: {where}")
        command = [
            sys.executable, "-m", "pytest", "-x", "-q", "-n", "auto",
            "-p", "no:cacheprovider", "--hypothesis-profile", profile,
            # It checks that each fault's edit still applies to the clean tree, so
            # it fails on every faulty one: a kill that says nothing.
            "--ignore=tests/test_fault_catalogue.py",
            # It runs the example project against the installed package on purpose
            # (the repository is kept off its path), so it never sees the copy.
            "--ignore=tests/test_downstream.py",
        ]  # fmt: skip
        if profile == "thorough":
            command.append("--run-slow")
        command += list(tests)
        start = time.perf_counter()
        try:
            done = subprocess.run(
                command, check=False, cwd=tree, env=env, capture_output=True,
                text=True,
                timeout=timeout,
            )  # fmt: skip
            status = "survived" if done.returncode == 0 else "killed"
            output = done.stdout + done.stderr
        except subprocess.TimeoutExpired as exc:
            status, output = "killed (timeout)", str(exc.stdout or "")
        seconds = time.perf_counter() - start
    failed = re.findall(
        r"^(?:FAILED|ERROR) (.+?)(?: - .*)?$", output, flags=re.MULTILINE
    )
    # The first failure's one-line reason, so a kill can be told from an accident.
    reasons = re.findall(r"^(?:FAILED|ERROR) .+? - (.*)$", output, flags=re.MULTILINE)
    # Wide lines, so the summary's failure reasons are not cut to a terminal width.
    return {
        "commit": commit,
        "fault": fault.name,
        "kind": fault.kind,
        "equivalent": fault.equivalent,
        "status": status,
        "killed_by": failed[:3],
        "reason": reasons[0][:300] if reasons else "",
        "seconds": round(seconds, 1),
        "profile": profile,
        "tests": list(tests),
    }


def summary(records: list[dict]) -> str:
    meaningful = [r for r in records if not r["equivalent"]]
    killed = [r for r in meaningful if r["status"] != "survived"]
    lines = [
        f"{r['status']:>16}  {r['fault']:<40} {r['seconds']:>7.1f}s  "
        f"{(r['killed_by'] or [''])[0]}"
        for r in records
    ]
    rate = len(killed) / len(meaningful) if meaningful else float("nan")
    lines.append(
        f"kill rate: {len(killed)}/{len(meaningful)} = {rate:.1%} of meaningful "
        f"faults ({len(records) - len(meaningful)} marked equivalent)"
    )
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", default=None)
    parser.add_argument("--profile", default="margin-ci")
    parser.add_argument("--out", default=str(ROOT / "faults" / "results.jsonl"))
    parser.add_argument("--timeout", type=float, default=1200.0)
    parser.add_argument("--tests", nargs="*", default=[], metavar="NODEID")
    args = parser.parse_args(argv)
    names = {f.name for f in FAULTS}
    unknown = set(args.only or ()) - names
    if unknown:
        parser.error(f"unknown faults {sorted(unknown)}; known: {sorted(names)}")
    out = Path(args.out)
    commit = head_commit()
    done = {}
    if out.exists():
        for line in out.read_text().splitlines():
            r = json.loads(line)
            same = r["profile"] == args.profile and r.get("tests", []) == args.tests
            if same and r.get("commit") == commit:
                done[r["fault"]] = r
    if BASELINE.name not in done:
        record = run_one(BASELINE, args.profile, args.timeout, commit, args.tests)
        with out.open("a") as fh:
            fh.write(json.dumps(record) + "\n")
        done[BASELINE.name] = record
    if done[BASELINE.name]["status"] != "survived":
        raise SystemExit(
            f"the suite fails on the clean tree at {commit[:10]} "
            f"({done[BASELINE.name]['killed_by'][:1]}): fix it before measuring faults"
        )
    chosen = [f for f in FAULTS if args.only is None or f.name in args.only]
    for k, fault in enumerate(chosen, 1):
        if fault.name in done:
            continue
        record = run_one(fault, args.profile, args.timeout, commit, args.tests)
        done[fault.name] = record
        with out.open("a") as fh:
            fh.write(json.dumps(record) + "\n")
        print(
            f"[{k}/{len(chosen)}] {fault.name}: {record['status']} "
            f"in {record['seconds']}s {record['killed_by'][:1]}",
            file=sys.stderr,
            flush=True,
        )
    selection = " ".join(args.tests) or "the whole suite"
    print(f"commit {commit[:10]}, profile {args.profile}, {selection}: clean passes")
    print(summary([done[f.name] for f in chosen if f.name in done]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
