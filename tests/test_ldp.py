"""Least-distance problems through NNLS, and the re-check that guards them."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from invariants.ldp import (
    InfeasibleError,
    SolverCheckError,
    check_least_distance,
    least_distance,
)


def test_known_answer():
    # The hard-margin SVM of x_1 = (1, 1/4), x_2 = (-1, 1/4): u* = (0, 4).
    G = np.array([[1.0, 0.25], [-1.0, 0.25]])
    sol = least_distance(G, np.ones(2))
    np.testing.assert_allclose(sol.d, [0.0, 4.0], atol=1e-12)
    np.testing.assert_allclose(G.T @ sol.multipliers, sol.d, atol=1e-12)


@given(st.integers(0, 2**32 - 1), st.integers(1, 6), st.integers(1, 5))
def test_optimality_against_a_feasible_competitor(seed, n, P):
    """Any other feasible point is at least as long: the point is the optimum."""
    rng = np.random.default_rng(seed)
    u = rng.normal(size=P)
    G = rng.normal(size=(n, P))
    G *= np.sign(G @ u)[:, None]  # make u strictly feasible up to scale
    h = np.ones(n)
    sol = least_distance(G, h)
    assert np.min(G @ sol.d - h) >= -1e-9
    competitor = u / np.min(G @ u)
    assert np.linalg.norm(sol.d) <= np.linalg.norm(competitor) * (1 + 1e-12)


def test_infeasible_constraints_are_reported():
    G = np.array([[1.0], [-1.0]])  # d >= 1 and -d >= 1
    with pytest.raises(InfeasibleError):
        least_distance(G, np.ones(2))


def test_the_recheck_rejects_a_broken_answer():
    G = np.array([[1.0, 0.25], [-1.0, 0.25]])
    sol = least_distance(G, np.ones(2))
    with pytest.raises(SolverCheckError, match="feasibility"):
        check_least_distance(G, np.ones(2), 0.9 * sol.d, sol.multipliers, tol=1e-9)
    with pytest.raises(SolverCheckError, match="stationarity"):
        check_least_distance(
            G, np.ones(2), sol.d + [0.1, 0.0], sol.multipliers, tol=1e-9
        )
    with pytest.raises(SolverCheckError, match="dual_sign"):
        check_least_distance(G, np.ones(2), sol.d, -sol.multipliers, tol=1e-9)


@pytest.mark.parametrize(
    "G, h, message",
    [
        (np.zeros((0, 2)), np.zeros(0), "non-empty"),
        (np.ones((2, 2)), np.ones(3), "shape"),
        (np.array([[np.nan, 1.0]]), np.ones(1), "finite"),
    ],
)
def test_bad_input(G, h, message):
    with pytest.raises(ValueError, match=message):
        least_distance(G, h)
