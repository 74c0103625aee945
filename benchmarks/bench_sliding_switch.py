"""How far the sliding switch moves the path: random teacher cases simulated to
||theta|| = 1e6 with sliding_margin 1e4, 1e5, 1e6, each compared in direction with a
run that switches at 1e8. Run: python benchmarks/bench_sliding_switch.py
"""

import numpy as np
from bench_random_cases import cases

from invariants.flow import FlowError, gradient_flow


def main():
    for trial, network, X, y, theta0 in cases(seed=2, count=24):
        runs = {}
        for switch in (1e4, 1e5, 1e6, 1e8):
            try:
                runs[switch] = gradient_flow(
                    network, X, y, theta0, target_norm=1e6, sliding_margin=switch,
                    max_evaluations=30_000,
                ).direction  # fmt: skip
            except FlowError as exc:
                runs[switch] = type(exc).__name__
        ref = runs[1e8]
        if isinstance(ref, str):
            print(f"{trial:6s} {network.describe()[:34]:34s} reference: {ref}")
            continue
        diffs = [
            "-" if isinstance(runs[s], str) else f"{np.linalg.norm(runs[s] - ref):.1e}"
            for s in (1e4, 1e5, 1e6)
        ]
        print(f"{trial:6s} {network.describe()[:34]:34s} " + " ".join(diffs))


if __name__ == "__main__":
    main()
