"""For each paper construction: Jacobian evaluations, seconds and direction error of
the simulator at ||theta|| = 1e8, next to plain gradient descent with a constant step
(direction error after 1e5 steps). Run: python benchmarks/bench_constructions.py
"""

import time

import numpy as np

from invariants.cases import CONSTRUCTIONS
from invariants.flow import simulate
from invariants.losses import loss_weights


def direction_error(theta, limit):
    a = theta / np.linalg.norm(theta)
    b = limit / np.linalg.norm(limit)
    return float(np.linalg.norm(a - b))


def gradient_descent(case, steps=100_000, eta=0.1):
    theta = case.theta0.copy()
    for _ in range(steps):
        q, J = case.network.unchecked_margin_jacobian(theta, case.X, case.y)
        # -grad L = sum_i e^{-q_i} grad q_i, formed stably from the weights
        w = (
            loss_weights(q, case.loss)
            * np.exp(-np.min(q))
            * np.sum(np.exp(-(q - np.min(q))))
        )
        theta = theta + eta * (J.T @ w)
    return theta


def main(gd_steps=100_000):
    print(
        f"{'construction':22s} {'jac evals':>9s} {'seconds':>8s} {'dir err':>9s}"
        f" {'GD dir err':>10s}"
    )
    for name, con in CONSTRUCTIONS.items():
        t = time.perf_counter()
        traj = simulate(con.case)
        sec = time.perf_counter() - t
        err = direction_error(traj.direction, con.limit)
        gd = direction_error(gradient_descent(con.case, gd_steps), con.limit)
        print(
            f"{name:22s} {traj.jacobian_evaluations:9d} {sec:8.3f} {err:9.1e}"
            f" {gd:10.1e}"
        )


if __name__ == "__main__":
    main()
