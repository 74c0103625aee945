"""Cost of the simulator on random teacher cases by family: Jacobian evaluations,
seconds, kinks pinned, to ||theta|| = 1e8. Run: python benchmarks/bench_random_cases.py
"""

import time

import numpy as np

from invariants.flow import FlowError, StationaryPointError, gradient_flow
from invariants.networks import convolutional, diagonal, fully_connected


def cases(seed, count=20):
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
        yield f"{seed}/{trial}", network, X, y, theta0


def main():
    print(f"{'case':6s} {'network':44s} {'evals':>7s} {'seconds':>8s} {'pinned':>6s}")
    for seed in (0, 1):
        for name, network, X, y, theta0 in cases(seed):
            start = time.perf_counter()
            try:
                traj = gradient_flow(network, X, y, theta0, max_evaluations=100_000)
            except (FlowError, StationaryPointError) as exc:
                print(f"{name:6s} {network.describe()[:44]:44s} {type(exc).__name__}")
                continue
            print(
                f"{name:6s} {network.describe()[:44]:44s} "
                f"{traj.jacobian_evaluations:7d} {time.perf_counter() - start:8.2f} "
                f"{traj.steps['kinks_pinned']:6d}"
            )


if __name__ == "__main__":
    main()
