"""Theorem 3.2's "constant probability", estimated: Gaussian inits, GF, verdicts.

Theorem 3.2 says that on its dataset (x_1 = (1, 1/4), x_2 = (-1, 1/4), both labelled
+1) gradient flow from a random initialisation reaches, with constant probability, a
KKT point that is not a local optimum. The proof uses a sufficient event: one neuron
sees both points positively with a positive output weight while the other sees both
negatively (and then never moves). Under i.i.d. standard Gaussian init its
probability is ((pi - arccos(-15/17)) / (2 pi))^2 ~ 0.0061, in closed form below.

`run(k, seed)` draws theta0 from `numpy.random.default_rng([seed, k])`, follows GF
to its converged limit and decides, honestly:

- "not local": `invariants.witness.find_local_improvement` returned a witness that
  re-verified in exact arithmetic;
- "local": Theorem 4.3's certificate holds (every input non-zero at the limit);
- "undecided": neither (no witness found proves nothing);
- "no fit": GF from this init never gets the loss below the threshold of Theorem 2.1
  (dead ReLUs, or a sample stuck at margin 0), so it has no KKT limit;
- "simulator failed": the simulator gave up (budget, or too slow to converge); the
  summary bounds the estimate both ways for these.

`run_batch(ks, seed)` does the same for many k at once, their flows simulated
together by `invariants.batch.gradient_flows` (which re-runs the rows it cannot
batch by the single run); each record names its simulator. The two differ on runs
where the single run spends its budget chattering on a kink into a point with a
margin stuck at 0: the batch pins that kink and says "no fit" there.

Runs are independent and seeded by (seed, k), so a sweep can be split across
machines and resumed: `sweep` appends one JSON line per run to `out` and skips the
k already there; `shard` splits one seed's runs by k. `load` merges the files of a
split sweep and `summary` gives the estimate with a Wilson interval.
"""

from __future__ import annotations

import json
import math
import operator
import sys
import time
from pathlib import Path

import numpy as np

from invariants.cases import get

__all__ = [
    "BATCH",
    "EVENT_PROBABILITY",
    "in_proof_event",
    "load",
    "run",
    "run_batch",
    "summary",
    "sweep",
    "theta0_of",
]

_ANGLE = math.acos(-15.0 / 17.0)  # between x_1 and x_2
# P(w . x_1 > 0 and w . x_2 > 0) for Gaussian w is (pi - angle) / (2 pi); the event
# needs that for one neuron, the opposite for the other, and v > 0 for the first,
# in either order: 2 * p * p / 2.
EVENT_PROBABILITY = ((math.pi - _ANGLE) / (2.0 * math.pi)) ** 2
# Radius of the local witness search around theta~ (||theta~||^2 = 8 there).
WITNESS_RADIUS = 0.05
# The single run's budget of field evaluations per run, in both simulators.
MAX_EVALUATIONS = 60_000
# Runs simulated together by the sweep command (`--batch`; `sweep(batch=...)` runs
# each alone unless asked): enough rows to amortise the batch's per-step overhead,
# few enough that an interrupted sweep loses little.
BATCH = 50
# The simulator named by the record of a row the batch handed to the single run.
HANDED_OFF = "single (handed off)"


def in_proof_event(theta0) -> bool:
    """Whether theta0 = [w_1, w_2, v_1, v_2] lies in the proof's sufficient event."""
    c = get("thm3.2")
    w = np.asarray(theta0, dtype=float)[:4].reshape(2, 2) @ c.case.X.T
    v = np.asarray(theta0, dtype=float)[4:]
    for a, b in ((0, 1), (1, 0)):
        if np.all(w[a] > 0) and np.all(w[b] < 0) and v[a] > 0:
            return True
    return False


def theta0_of(k: int, seed: int) -> np.ndarray:
    """Run k's initialisation: i.i.d. standard Gaussians, `default_rng([seed, k])`."""
    P = get("thm3.2").network.num_parameters
    return np.random.default_rng([seed, k]).standard_normal(P)


def run(k: int, seed: int, *, direction_tol: float = 1e-9) -> dict:
    """One seeded run of the sweep (see the module docstring), by the single run."""
    theta0 = theta0_of(k, seed)
    started = time.perf_counter()
    flow = _single_flow(theta0, direction_tol)
    return verdict(k, seed, theta0, flow, started, "single")


def _single_flow(theta0, direction_tol):
    """The single run's `Trajectory` from theta0, or the exception it raised (for
    `verdict` to judge, as the batch returns its rows' exceptions)."""
    from invariants.flow import gradient_flow

    c = get("thm3.2")
    try:
        return gradient_flow(
            c.network, c.case.X, c.case.y, theta0,
            direction_tol=direction_tol, max_evaluations=MAX_EVALUATIONS,
        )  # fmt: skip
    except Exception as exc:  # noqa: BLE001 - an answer, judged by `verdict`
        return exc


def run_batch(ks, seed: int, *, direction_tol: float = 1e-9) -> list[dict]:
    """The runs `ks` of the sweep, their flows simulated together by
    `invariants.batch.gradient_flows`; the verdicts are decided row by row, as in
    `run`. A row the batch hands off is run alone here, timed on its own, and
    recorded as "single (handed off)"; the others' `seconds` is their share of the
    batch plus their own verdict."""
    from invariants.batch import HandoffRequired, gradient_flows

    ks = [_index(k, "k") for k in ks]
    if not ks:
        return []
    c = get("thm3.2")
    thetas0 = np.array([theta0_of(k, seed) for k in ks])
    started = time.perf_counter()
    flows = gradient_flows(
        c.network, c.case.X, c.case.y, thetas0, handoff=False,
        direction_tol=direction_tol, max_evaluations=MAX_EVALUATIONS,
    )  # fmt: skip
    share = (time.perf_counter() - started) / len(ks)
    records = []
    for k, theta0, flow in zip(ks, thetas0, flows):
        if isinstance(flow, HandoffRequired):
            alone = time.perf_counter()
            flow = _single_flow(theta0, direction_tol)
            records.append(verdict(k, seed, theta0, flow, alone, HANDED_OFF))
        else:
            began = time.perf_counter() - share
            records.append(verdict(k, seed, theta0, flow, began, "batch"))
    return records


def _index(value, name: str) -> int:
    """An integer argument (numpy's too), never a bool."""
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an integer, got {value!r}") from None


def verdict(k, seed, theta0, flow, started, simulator) -> dict:
    """The record of run k: `flow` is its `Trajectory` or the exception the
    simulator raised (see the module docstring for the verdicts)."""
    from invariants.certify.conic import certify_theorem_4_3
    from invariants.certify.record import CertificateError, NotApplicableError
    from invariants.flow import FlowError, StationaryPointError
    from invariants.witness import find_local_improvement

    c = get("thm3.2")
    net, X, y = c.network, c.case.X, c.case.y
    record = {"k": k, "seed": seed, "theta0": np.asarray(theta0).tolist()}
    record["in_proof_event"] = in_proof_event(theta0)
    record["simulator"] = simulator
    if isinstance(flow, StationaryPointError):
        # GF itself never passes the loss threshold: Theorem 2.1 does not apply.
        record.update(verdict="no fit", reason=str(flow))
    elif isinstance(flow, FlowError):
        record.update(verdict="simulator failed", reason=str(flow))
    elif isinstance(flow, BaseException):
        raise flow
    else:
        theta = flow.theta_tilde
        record.update(theta_tilde=theta.tolist(), norm_squared=flow.norm_squared)
        try:
            if certify_theorem_4_3(net, X, y, theta).holds:
                record["verdict"] = "local"
        except NotApplicableError:
            pass
        except CertificateError as exc:
            # A solve that failed its re-check decides nothing: the witness may.
            record["certificate_error"] = str(exc)
        if "verdict" not in record:
            witness = find_local_improvement(net, X, y, theta, WITNESS_RADIUS, seed=k)
            if witness is not None and witness.verify():
                record["verdict"] = "not local"
                record["witness"] = witness.to_dict()
            else:
                record["verdict"] = "undecided"
    record["seconds"] = time.perf_counter() - started
    return record


def sweep(
    runs: int,
    seed: int,
    out=None,
    *,
    progress=None,
    shard: tuple[int, int] = (0, 1),
    batch: int = 1,
) -> list[dict]:
    """Runs k = 0..runs-1 (those not already in `out`), appending each to `out` as a
    JSON line; returns every record for this seed. `progress(done, total, record)` is
    called after each run. `shard=(i, n)` keeps the k with k % n == i, so n machines
    can share one seed's runs, each with its own file (merge them with `load`).

    batch > 1 simulates that many runs at a time with the batch simulator
    (`run_batch`), appending them as each group finishes; batch=1 runs each alone
    (`run`). Each record names the simulator that produced it."""
    if not (_is_count(runs) and runs >= 1):
        raise ValueError(f"runs must be an integer >= 1, got runs={runs!r}")
    i, n = shard
    if not (_is_count(n) and _is_count(i) and n >= 1 and 0 <= i < n):
        raise ValueError(f"shard=(i, n) needs integers 0 <= i < n, got {shard!r}")
    if not (_is_count(batch) and batch >= 1):
        raise ValueError(f"batch must be an integer >= 1, got batch={batch!r}")
    runs, i, n, batch = int(runs), int(i), int(n), int(batch)
    path = Path(out) if out is not None else None
    records = {}
    if path is not None:
        if path.exists():
            records = {r["k"]: r for r in load([path]) if r["seed"] == seed}
        # Opened before any run, so a path that cannot be written fails now, not
        # after the first group; a complete last line without its newline gets one,
        # or the next record would be glued to it.
        with path.open("a+", encoding="utf-8") as fh:
            if fh.tell() > 0:
                fh.seek(fh.tell() - 1)
                if fh.read(1) != "\n":
                    fh.write("\n")
    todo = [k for k in range(i, runs, n) if k not in records]
    done = 0
    for start in range(0, len(todo), batch):
        group = todo[start : start + batch]
        if batch == 1:
            new = [run(group[0], seed)]
        else:
            new = run_batch(group, seed)
        if path is not None:
            with path.open("a", encoding="utf-8") as fh:
                fh.writelines(json.dumps(record) + "\n" for record in new)
        for record in new:
            records[record["k"]] = record
            done += 1
            if progress is not None:
                progress(done, len(todo), record)
    return [records[k] for k in sorted(records) if k < runs and k % n == i]


def _is_count(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def load(paths, conflicts: list | None = None) -> list[dict]:
    """The runs recorded in the JSON-lines files `paths`, one per (seed, k): the
    union of a sweep split across machines, seeds or shards. A line that is not a
    run (a file cut off mid-write, or another program's output) is an error naming
    the file and line. A (seed, k) recorded more than once keeps its last record;
    where two records of it disagree on the verdict (a run redone with the other
    simulator), `conflicts`, if given, receives "seed/k: verdict, verdict"."""
    runs: dict[tuple[int, int], dict] = {}
    for path in map(Path, paths):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                r = _run_record(line, f"{path}:{number}")
                key = (int(r["seed"]), int(r["k"]))
                before = runs.get(key)
                if (
                    conflicts is not None
                    and before
                    and before["verdict"] != r["verdict"]
                ):
                    conflicts.append(
                        f"{key[0]}/{key[1]}: {before['verdict']}, {r['verdict']}"
                    )
                runs[key] = r
    return [runs[key] for key in sorted(runs)]


def _run_record(line: str, where: str) -> dict:
    try:
        r = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ValueError(
            f"{where} is not JSON ({exc.msg}): a line cut off by an interrupted "
            "write can be deleted and its run redone"
        ) from None
    fields = ("seed", "k", "verdict", "in_proof_event")
    missing = [k for k in fields if k not in r] if isinstance(r, dict) else fields
    if missing:
        raise ValueError(
            f"{where} is not a run of this sweep (missing {missing or 'fields'}): is "
            "it the output of `python -m invariants sweep`?"
        )
    return r


def wilson(successes: int, n: int, z: float = 1.959963984540054) -> tuple:
    """The Wilson score interval for a binomial proportion (95% by default)."""
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    # At 0 or n successes the bound is exactly 0 or 1; the formula leaves an ulp.
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return (low, high)


def summary(records: list[dict]) -> dict:
    """Counts per verdict, the estimated probability of a non-local KKT limit with
    its 95% Wilson interval, and the proof's event: its closed-form probability, the
    fraction of these inits in it, and how those runs ended. `gaps` counts, per
    seed, the k missing below the largest one recorded (a shard left out of a
    merge)."""
    n = len(records)
    counts: dict[str, int] = {}
    for r in records:
        counts[r["verdict"]] = counts.get(r["verdict"], 0) + 1
    hits = counts.get("not local", 0)
    open_ = counts.get("simulator failed", 0) + counts.get("undecided", 0)
    in_event = [r for r in records if r["in_proof_event"]]
    return {
        "runs": n,
        "verdicts": counts,
        "p_not_local": hits / n if n else math.nan,
        "p_not_local_95": wilson(hits, n),
        # Counting every failed or undecided run as a hit bounds the estimate above.
        "p_not_local_upper_95": wilson(hits + open_, n)[1],
        "event_probability": EVENT_PROBABILITY,
        "event_fraction": len(in_event) / n if n else math.nan,
        "event_verdicts": {
            v: sum(r["verdict"] == v for r in in_event)
            for v in {r["verdict"] for r in in_event}
        },
        "undecided_note": "undecided runs prove nothing either way",
        "gaps": _gaps(records),
    }


def _gaps(records: list[dict]) -> dict:
    """Per seed, the k below its largest recorded k that have no run: a shard or a
    machine whose file is missing from a merged summary."""
    ks: dict[int, set[int]] = {}
    for r in records:
        ks.setdefault(int(r["seed"]), set()).add(int(r["k"]))
    return {
        seed: len(set(range(max(k))) - k)
        for seed, k in sorted(ks.items())
        if len(k) < max(k) + 1
    }


def print_progress(done: int, total: int, record: dict) -> None:
    """A one-line progress bar on stderr."""
    width = 30
    filled = int(width * done / max(total, 1))
    sys.stderr.write(
        f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} "
        f"k={record['k']} {record['verdict']:<10s}"
    )
    if done == total:
        sys.stderr.write("\n")
    sys.stderr.flush()
