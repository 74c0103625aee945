"""How far the sliding switch moves the path: random teacher cases simulated to
||theta|| = 1e6 with sliding_margin 1e4, 1e5, 1e6, each compared in direction with a
run that switches at 1e8. Run: python benchmarks/bench_sliding_switch.py
"""

import numpy as np

from invariants.flow import FlowError, gradient_flow
from invariants.networks import convolutional, diagonal, fully_connected


def cases(seed=2, count=24):
    rng = np.random.default_rng(seed)
    for trial in range(count):
        activation = ["relu", "linear"][trial % 2]
        network = [
            fully_connected([3, 3, 1], activation),
            fully_connected([2, 3, 2, 1], activation),
            diagonal(3, 3, activation),
            convolutional(5, 2, 1, activation),
        ][trial % 4]
        teacher = rng.normal(size=network.num_parameters)
        X = rng.normal(size=(5, network.input_dim))
        f = network.outputs(teacher, X)
        y = np.where(f >= 0, 1.0, -1.0)
        if np.min(y * f) <= 1e-3 * np.max(np.abs(f)):
            continue
        theta0 = 0.5 * teacher + 0.3 * rng.normal(size=network.num_parameters)
        yield trial, network, X, y, theta0


def main():
    for trial, network, X, y, theta0 in cases():
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
            print(f"{trial:3d} {network.describe()[:34]:34s} reference: {ref}")
            continue
        diffs = [
            "-" if isinstance(runs[s], str) else f"{np.linalg.norm(runs[s] - ref):.1e}"
            for s in (1e4, 1e5, 1e6)
        ]
        print(f"{trial:3d} {network.describe()[:34]:34s} " + " ".join(diffs))


if __name__ == "__main__":
    main()
