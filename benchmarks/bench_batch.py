"""Batch against single runs: trajectories per second, evaluations, memory, answers.

    python benchmarks/bench_batch.py thm3.2 --runs 1000 --singles 100
    python benchmarks/bench_batch.py random --inits 200 --singles 20

Each measurement runs in its own subprocess (so peak RSS is its own), single and
batch back to back. Singles run on a seeded subsample of the batch's rows and are
extrapolated to the full count when the subsample is smaller; the answers are
compared on that subsample. The batch side is measured whole: the batch, then the
single runs of the rows it hands off, as `gradient_flows` does. "Answers" are what a
verdict reads: the outcome kind (Trajectory, StationaryPointError = "no fit",
FlowError = "simulator failed"), the limit direction, and which hidden neurons are
zero at the limit.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np

# A neuron is zero at the limit when its weights are this small against theta~.
ZERO_NEURON_TOL = 1e-6
SWEEP_OPTIONS = {"direction_tol": 1e-9, "max_evaluations": 60_000}


def thm32_problem(runs, seed=0):
    from invariants.cases import get

    c = get("thm3.2")
    net = c.network
    thetas = np.array(
        [
            np.random.default_rng([seed, k]).standard_normal(net.num_parameters)
            for k in range(runs)
        ]
    )
    return [("thm3.2 sweep", net, c.case.X, c.case.y, thetas)]


def random_problems(inits, seed=0):
    """Depth-2/3 linear and ReLU fully-connected nets, one teacher-labelled dataset
    each (as tests/test_flow.py draws them), many Gaussian inits per net."""
    from invariants.networks import fully_connected

    nets = [
        fully_connected([2, 3, 1], "linear"),
        fully_connected([3, 4, 1], "relu"),
        fully_connected([2, 3, 2, 1], "linear"),
        fully_connected([3, 3, 2, 1], "relu"),
    ]
    out = []
    for j, net in enumerate(nets):
        rng = np.random.default_rng([seed, j])
        while True:
            teacher = rng.normal(size=net.num_parameters)
            X = rng.normal(size=(5, net.input_dim))
            f = net.outputs(teacher, X)
            if np.min(np.abs(f)) > 1e-2 * np.max(np.abs(f)):
                break
        y = np.where(f > 0, 1.0, -1.0)
        thetas = teacher + 0.5 * rng.normal(size=(inits, net.num_parameters))
        out.append((net.describe(), net, X, y, thetas))
    return out


def answer(net, result):
    """The verdict inputs of one outcome, JSON-ready."""
    from invariants.batch import HandoffRequired

    if isinstance(result, HandoffRequired):
        return {"kind": "handoff", "error": str(result)}
    if isinstance(result, Exception):
        from invariants.field import StationaryPointError

        kind = "no fit" if isinstance(result, StationaryPointError) else "failed"
        return {"kind": kind, "error": f"{type(result).__name__}: {str(result)[:60]}"}
    d = result.direction
    Ws = net.weight_matrices(result.theta_tilde)
    zero = []
    for l in range(net.depth - 1):
        incoming = np.linalg.norm(Ws[l], axis=1)
        outgoing = np.linalg.norm(Ws[l + 1], axis=0)
        scale = np.linalg.norm(result.theta_tilde)
        zero += [
            [l + 1, a]
            for a in range(len(incoming))
            if max(incoming[a], outgoing[a]) < ZERO_NEURON_TOL * scale
        ]
    return {
        "kind": "limit",
        "direction": d.tolist(),
        "zero_neurons": zero,
        "evaluations": result.jacobian_evaluations,
    }


def measure(mode, problem, runs, singles, seed, count=4):
    problems = (
        thm32_problem(runs, seed)
        if problem == "thm3.2"
        else random_problems(runs, seed)[:count]
    )
    report = []
    for name, net, X, y, thetas in problems:
        B = len(thetas)
        sub = np.sort(
            np.random.default_rng(12345).choice(B, min(singles, B), replace=False)
        )
        started = time.perf_counter()
        if mode == "single":
            from invariants.flow import gradient_flow

            answers = {}
            for k in sub:
                t = time.perf_counter()
                try:
                    r = gradient_flow(net, X, y, thetas[k], **SWEEP_OPTIONS)
                except Exception as exc:  # noqa: BLE001 - an answer, recorded
                    r = exc
                answers[int(k)] = answer(net, r)
                answers[int(k)]["seconds"] = time.perf_counter() - t
            count = len(sub)
            stats = {}
        else:
            from invariants.batch import gradient_flows
            from invariants.flow import gradient_flow

            stats = {}
            # handoff=False, then the handed-off rows' single runs, timed apart:
            # together what handoff=True does, with the two costs separated.
            results = gradient_flows(
                net, X, y, thetas, stats=stats, handoff=False, **SWEEP_OPTIONS
            )
            answers = {int(k): answer(net, results[k]) for k in sub}
            handoff_started = time.perf_counter()
            for k, r in enumerate(results):
                if type(r).__name__ == "HandoffRequired":
                    try:
                        results[k] = gradient_flow(
                            net, X, y, thetas[k], **SWEEP_OPTIONS
                        )
                    except Exception as exc:  # noqa: BLE001 - an answer, recorded
                        results[k] = exc
            handoff_seconds = time.perf_counter() - handoff_started
            count = B
            stats = {
                "handoffs": stats["handoffs"],
                "handoff_reasons": stats["handoff_reasons"],
                "handoff_seconds": handoff_seconds,
                "batch_seconds": stats["batch_seconds"],
                "batch_evaluations_mean": float(np.mean(stats["batch_evaluations"])),
                "kinds": _kinds(results),
            }
        wall = time.perf_counter() - started
        report.append(
            {
                "name": name,
                "rows": B,
                "measured": count,
                "wall": wall,
                "per_second": count / wall,
                "answers": answers,
                "stats": stats,
            }
        )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    return {"mode": mode, "peak_rss_mb": peak, "problems": report}


def _kinds(results):
    out: dict[str, int] = {}
    for r in results:
        k = type(r).__name__
        out[k] = out.get(k, 0) + 1
    return out


def compare(single, batch, tol):
    """Per problem: throughput single vs batch, and agreement on the subsample.

    Handed-off rows are single runs by construction (same answer); their cost is
    the single run's, taken from the subsample's mean over handed-off rows."""
    rows = []
    for s, b in zip(single["problems"], batch["problems"]):
        same, worst, diffs, gaps = 0, 0.0, [], []
        own_t, own_n = 0.0, 0
        for k, a in s["answers"].items():
            c = b["answers"][k]
            if c["kind"] == "handoff":
                continue
            own_t, own_n = own_t + a["seconds"], own_n + 1
            ok = a["kind"] == c["kind"]
            if ok and a["kind"] == "limit":
                gap = float(np.linalg.norm(np.subtract(a["direction"], c["direction"])))
                gaps.append(gap)
                worst = max(worst, gap)
                ok = gap <= tol and a["zero_neurons"] == c["zero_neurons"]
            same += ok
            if not ok:
                diffs.append((k, a["kind"], c["kind"], a.get("error", "")))
        B, handed = b["rows"], b["stats"]["handoffs"]
        per_single = s["wall"] / s["measured"]
        end_to_end = b["stats"]["batch_seconds"] + b["stats"]["handoff_seconds"]
        evals_s = [
            a["evaluations"] for a in s["answers"].values() if "evaluations" in a
        ]
        evals_b = [
            a["evaluations"] for a in b["answers"].values() if "evaluations" in a
        ]
        rows.append(
            {
                "name": s["name"],
                "rows": B,
                "single_measured": s["measured"],
                "single_per_s": 1.0 / per_single,
                "single_wall_extrapolated": per_single * B,
                "batch_only_wall": b["stats"]["batch_seconds"],
                "batch_own_rows": B - handed,
                "batch_own_per_s": (B - handed) / b["stats"]["batch_seconds"],
                "single_per_s_on_batch_own_rows": own_n / own_t if own_t else None,
                "speedup_on_batch_own_rows": (
                    (B - handed) / b["stats"]["batch_seconds"] / (own_n / own_t)
                    if own_t
                    else None
                ),
                "handoffs": handed,
                "handoff_reasons": b["stats"]["handoff_reasons"],
                "handoff_seconds": b["stats"]["handoff_seconds"],
                # Batch and handed-off rows measured; the single side extrapolated
                # from its subsample when that is smaller than the batch.
                "end_to_end_wall": end_to_end,
                "end_to_end_speedup": per_single * B / end_to_end,
                "evals_per_traj_single": float(np.mean(evals_s)) if evals_s else None,
                "evals_per_traj_batch": float(np.mean(evals_b)) if evals_b else None,
                "batch_kinds": b["stats"]["kinds"],
                "agree_on_batch_own_rows": f"{same}/{own_n}",
                "worst_direction_gap": worst,
                "median_direction_gap": float(np.median(gaps)) if gaps else None,
                "disagreements": diffs[:10],
            }
        )
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("problem", choices=("thm3.2", "random"))
    parser.add_argument("--runs", type=int, default=1000, help="rows per problem")
    parser.add_argument("--singles", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tol", type=float, default=1e-6)
    parser.add_argument("--problems", type=int, default=4, help="random nets to run")
    parser.add_argument("--mode", choices=("single", "batch"), help=argparse.SUPPRESS)
    parser.add_argument("--out", help="write the JSON report here")
    args = parser.parse_args(argv)
    if args.mode:
        print(json.dumps(measure(args.mode, args.problem, args.runs, args.singles,
                                 args.seed, args.problems)))  # fmt: skip
        return
    results = {}
    for mode in ("single", "batch"):
        cmd = [sys.executable, __file__, args.problem, "--runs", str(args.runs),
               "--singles", str(args.singles), "--seed", str(args.seed),
               "--problems", str(args.problems), "--mode", mode]  # fmt: skip
        done = subprocess.run(cmd, capture_output=True, text=True, check=True)
        results[mode] = json.loads(done.stdout.strip().splitlines()[-1])
    table = compare(results["single"], results["batch"], args.tol)
    summary = {
        "peak_rss_mb": {m: results[m]["peak_rss_mb"] for m in results},
        "problems": table,
        "load": os.getloadavg(),
    }
    text = json.dumps(summary, indent=1)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as fh:
            fh.write(text)
        # Every answer of both modes, so the agreement can be audited row by row.
        with open(args.out + ".raw", "w", encoding="utf-8") as fh:
            fh.write(json.dumps(results))
    print(text)


if __name__ == "__main__":
    main()
