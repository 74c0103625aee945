"""Witnesses of non-optimality: the searches (`invariants.witness`) find the paper's
counterexamples by themselves, every witness is checked in exact rational arithmetic
(`invariants.exact_check`), and the checker refuses witnesses broken by an ulp.

A search that finds nothing proves nothing; the tests that expect None do so where
a theorem says no witness exists, so a witness found there would be a bug.
"""

from __future__ import annotations

import dataclasses
import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from invariants.activation import zero_inputs
from invariants.cases import CONSTRUCTIONS, get
from invariants.exact_check import (
    Witness,
    WitnessError,
    assert_witness,
    exact_margins,
    exactly_feasible,
    verify_witness,
)
from invariants.witness import find_global_improvement, find_local_improvement
from strategies import training_cases

WITH_WITNESS = [n for n, c in CONSTRUCTIONS.items() if c.witness is not None]
# Constructions whose witness changes one layer only (Theorem 5.3 is about Problem 4
# for that layer; Theorem 4.2 (2) happens to have the same witness).
LAYER = {n: c.changed_layers[0] for n, c in CONSTRUCTIONS.items() if c.changed_layers}
LOCAL_LAYER = {"thm5.3": 1}
RADIUS = 1e-2
EPS = (1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6)


def data(name):
    c = get(name)
    return c, c.network, c.case.X, c.case.y


def paper_point(name, eps):
    """The paper's witness at eps, grown until its margins are >= 1 exactly (the
    closed form rounds them to 1 - ulp about half the time)."""
    c, net, X, y = data(name)
    return exactly_feasible(net, X, y, c.witness(eps), layer=LAYER.get(name))


def verified_witness(name="thm4.4-relu") -> Witness:
    c, net, X, y = data(name)
    w = find_local_improvement(net, X, y, c.limit, RADIUS, layer=LOCAL_LAYER.get(name))
    assert w is not None
    return w


# -- the searches find what the paper proves exists ------------------------------------


@pytest.mark.parametrize("name", WITH_WITNESS)
def test_local_search_finds_a_verified_witness(name):
    c, net, X, y = data(name)
    layer = LOCAL_LAYER.get(name)
    w = find_local_improvement(net, X, y, c.limit, RADIUS, layer=layer)
    assert w is not None, f"{name}: no witness within radius {RADIUS}"
    report = w.report()
    assert report["verified"], (report["reasons"], w)
    # The record's own check and a direct one on plain arrays agree.
    direct = assert_witness(
        net, X, y, c.limit, np.array(w.theta), radius=RADIUS, layer=layer
    )
    assert direct["norm_gap"] == report["norm_gap"] == w.norm_gap
    assert report["distance"] <= RADIUS
    assert (w.radius, w.layer) == (RADIUS, layer)
    if layer is not None:
        assert report["changed_layers"] == [layer]
    # Second order at least: every gap measured was >= 0.13 radius^2 relative
    # (Theorem 3.2); far less means the solver stopped early.
    assert report["relative_gap"] >= 0.05 * RADIUS**2


@pytest.mark.parametrize("name", WITH_WITNESS)
def test_papers_family_verifies_exactly_for_small_eps(name):
    c, net, X, y = data(name)
    swept = [eps for eps in EPS if eps <= c.max_eps]
    assert len(swept) >= 5
    for eps in swept:
        theta = paper_point(name, eps)
        report = assert_witness(
            net,
            X,
            y,
            c.limit,
            theta,
            radius=3.0 * math.sqrt(eps),
            layer=LAYER.get(name),
            context=f"{name}, eps={eps!r}",
        )
        assert report["norm_squared"] == pytest.approx(
            c.witness_norm_squared(eps), rel=1e-12
        )


# The smallest eps keeps the gap (1e-13 of ||theta~||^2 for Theorem 5.1 at 1e-6)
# well above what growing the point to exact feasibility costs (~1e-15).
family_points = st.sampled_from(WITH_WITNESS).flatmap(
    lambda name: st.tuples(st.just(name), st.floats(1e-6, get(name).max_eps))
)


@given(family_points)
def test_papers_family_verifies_for_any_small_eps(point):
    name, eps = point
    c, net, X, y = data(name)
    theta = paper_point(name, eps)
    report = verify_witness(
        net, X, y, c.limit, theta, radius=3.0 * math.sqrt(eps), layer=LAYER.get(name)
    )
    assert report["verified"], (eps, report["reasons"])


def test_global_search_beats_lemma_c6_with_the_true_optimum():
    c, net, X, y = data("lemmaC.6")
    w = find_global_improvement(net, X, y, c.limit)
    assert w is not None and w.verify()
    assert w.radius is None
    # The exact optimum of this instance is 4.9244..., well below the paper's
    # better point (7.8125) and the limit (10).
    assert c.norm_squared - w.norm_gap == pytest.approx(4.924428900902531, rel=1e-9)


def test_global_search_beats_lemma_c6_from_its_own_starts():
    c, net, X, y = data("lemmaC.6")
    w = find_global_improvement(net, X, y, c.limit, exact=False)
    assert w is not None and w.verify()
    assert "exact" not in w.search
    assert c.norm_squared - w.norm_gap < 7.8125


def test_global_search_in_layer_1_beats_thm5_4():
    c, net, X, y = data("thm5.4-not-global")
    w = find_global_improvement(net, X, y, c.limit, layer=1)
    assert w is not None
    report = w.report()
    assert report["verified"] and report["changed_layers"] == [1]
    assert report["norm_squared"] < 7.8125


def test_no_local_witness_where_theorem_4_3_proves_a_local_optimum():
    c, net, X, y = data("lemmaC.6")
    assert zero_inputs(net, c.limit, X) == []  # every input non-zero: Theorem 4.3
    assert find_local_improvement(net, X, y, c.limit, RADIUS) is None


def test_a_limit_rounded_above_margin_1_yields_no_witness_by_default():
    """A limit rescaled in floating point can have margins an ulp above 1; shrinking
    it then "beats" it by ~1e-15 of its norm, which says nothing about the limit."""
    c, net, X, y = data("lemmaC.6")
    theta_tilde = c.limit * (1.0 + 4 * np.finfo(float).eps)
    assert min(exact_margins(net, X, y, theta_tilde)) > 1
    w = find_local_improvement(net, X, y, theta_tilde, RADIUS, min_relative_gap=0.0)
    assert w is not None and w.verify()
    assert w.relative_gap < 1e-14
    assert find_local_improvement(net, X, y, theta_tilde, RADIUS) is None


def test_no_local_witness_in_a_layer_theorem_5_4_proves_locally_optimal():
    c, net, X, y = data("thm5.4-not-global")
    assert find_local_improvement(net, X, y, c.limit, RADIUS, layer=1) is None


def test_searches_are_deterministic_for_a_seed():
    assert verified_witness() == verified_witness()
    c, net, X, y = data("thm4.4-relu")
    w = find_local_improvement(net, X, y, c.limit, RADIUS, seed=7)
    assert w is not None and "seed=7" in w.search


@given(training_cases(max_points=4))
def test_exact_margins_agree_with_the_network_on_every_family(case):
    """The verifier's own forward pass (index maps read directly, exact ReLU) is
    the network's, up to the rounding of the float one; and the record carries any
    network, as its most specific JSON spec, through JSON unchanged."""
    net, X, y, theta = case.network, case.X, case.y, case.theta0
    exact = np.array([float(q) for q in exact_margins(net, X, y, theta)])
    floats = net.margins(theta, X, y)
    scale = 1.0 + np.max(np.abs(floats))
    assert np.max(np.abs(exact - floats)) <= 1e-12 * scale
    if np.min(floats) > 0:
        grown = exactly_feasible(net, X, y, theta)
        assert min(exact_margins(net, X, y, grown)) >= 1
    w = Witness(net, X, y, theta, theta, 0.0, "generated")
    back = Witness.from_json(w.to_json())
    assert back == w
    assert [P.tolist() for P in back.network.index_maps] == [
        P.tolist() for P in net.index_maps
    ]


# -- the verifier refuses broken witnesses ---------------------------------------------


def test_floats_say_feasible_exact_arithmetic_says_no():
    # The closed form at this eps rounds a margin to exactly 1 - 1.02e-17: every
    # float margin is >= 1, and the point is not feasible.
    c, net, X, y = data("thm4.1-linear")
    theta = c.witness(0.000125)
    assert np.min(net.margins(theta, X, y)) >= 1.0
    deficit = 1 - min(exact_margins(net, X, y, theta))
    assert 0 < deficit < Fraction(1, 10**16)
    report = verify_witness(net, X, y, c.limit, theta)
    assert not report["verified"]
    assert len(report["reasons"]) == 1 and "margin of sample 0" in report["reasons"][0]


def test_a_margin_one_ulp_step_below_1_is_rejected():
    c, net, X, y = data("thm3.2")
    theta = paper_point("thm3.2", 1e-3)
    assert verify_witness(net, X, y, c.limit, theta)["verified"]
    broken = theta.copy()
    while min(exact_margins(net, X, y, broken)) >= 1:
        broken[4] = np.nextafter(broken[4], 0.0)  # v_1, one ulp at a time
    steps = round((theta[4] - broken[4]) / np.spacing(theta[4]))
    assert steps <= 4
    report = verify_witness(net, X, y, c.limit, broken)
    assert not report["verified"] and "margin" in report["reasons"][0]
    with pytest.raises(WitnessError, match="margin of sample"):
        assert_witness(net, X, y, c.limit, broken)


def test_a_point_as_long_as_the_limit_is_rejected():
    c, net, X, y = data("thm4.2.2")
    # The limit itself, and the limit with its four neurons turned a quarter turn:
    # both feasible (margins exactly 1), both of exactly the limit's norm.
    neurons = c.limit[:8].reshape(4, 2)
    turned = np.concatenate([np.roll(neurons, 1, axis=0).ravel(), c.limit[8:]])
    for theta in (c.limit, turned):
        assert min(exact_margins(net, X, y, theta)) == 1
        report = verify_witness(net, X, y, c.limit, theta)
        assert not report["verified"]
        assert report["norm_gap"] == 0.0
        assert "not below" in " ".join(report["reasons"])


def test_a_point_outside_the_radius_is_rejected():
    w = verified_witness()
    c, net, X, y = data("thm4.4-relu")
    exact_distance2 = sum(
        (Fraction(a) - Fraction(b)) ** 2 for a, b in zip(w.theta, w.theta_tilde)
    )
    # Two floats a few ulps either side of the exact distance.
    d = math.sqrt(float(exact_distance2))
    inside = float(np.nextafter(d, math.inf))
    outside = float(np.nextafter(np.nextafter(d, 0.0), 0.0))
    assert Fraction(outside) ** 2 < exact_distance2 <= Fraction(inside) ** 2
    theta = np.array(w.theta)
    assert verify_witness(net, X, y, c.limit, theta, radius=inside)["verified"]
    report = verify_witness(net, X, y, c.limit, theta, radius=outside)
    assert not report["verified"] and "radius" in report["reasons"][0]
    assert dataclasses.replace(w, radius=outside).verify() is False


def test_a_point_that_changes_another_layer_is_rejected():
    c, net, X, y = data("thm5.3")
    theta = paper_point("thm5.3", 1e-3)
    assert verify_witness(net, X, y, c.limit, theta, layer=1)["verified"]
    broken = theta.copy()
    broken[8] = np.nextafter(broken[8], 2.0)  # v_1 up one ulp: only helps margins
    assert verify_witness(net, X, y, c.limit, broken)["verified"]
    report = verify_witness(net, X, y, c.limit, broken, layer=1)
    assert not report["verified"]
    assert report["changed_layers"] == [1, 2]
    assert "only layer 1" in " ".join(report["reasons"])
    # The Theorem 4.4 witness moves both layers: never a witness for one of them.
    c4, net4, X4, y4 = data("thm4.4-relu")
    both = exactly_feasible(net4, X4, y4, c4.witness(1e-3))
    assert verify_witness(net4, X4, y4, c4.limit, both)["verified"]
    for layer in (1, 2):
        assert not verify_witness(net4, X4, y4, c4.limit, both, layer=layer)["verified"]


def test_a_wrong_claimed_gap_is_rejected():
    w = verified_witness()
    assert w.verify() is True  # a bool, never a truthy report
    for claim in (2.0 * w.norm_gap, -w.norm_gap, w.norm_gap * (1 + 1e-6)):
        report = dataclasses.replace(w, norm_gap=claim).report()
        assert not report["verified"] and "claimed" in report["reasons"][-1]


# -- the record is data ----------------------------------------------------------------


def bits(values) -> list[int]:
    return np.asarray(values, dtype=np.float64).view(np.uint64).tolist()


def test_witness_round_trips_through_json_and_repr_and_reverifies():
    w = verified_witness("thm5.3")
    for back in (Witness.from_json(w.to_json()), eval(repr(w), {"Witness": Witness})):
        assert back == w
        assert bits(back.theta) == bits(w.theta)
        assert bits(back.theta_tilde) == bits(w.theta_tilde)
        assert bits([back.norm_gap, back.radius]) == bits([w.norm_gap, w.radius])
        assert (back.layer, back.search) == (w.layer, w.search)
        assert back.verify()


finite = st.floats(allow_nan=False, allow_infinity=False)


@given(st.lists(finite, min_size=8, max_size=8), finite, st.sampled_from([None, 1]))
def test_any_record_round_trips_bit_for_bit(values, gap, layer):
    _, net, X, y = data("thm4.4-relu")
    w = Witness(net, X, y, values[:4], values[4:], gap, "hand-made", 0.5, layer)
    back = Witness.from_json(w.to_json())
    assert bits(back.theta + back.theta_tilde) == bits(values)
    assert bits([back.norm_gap]) == bits([gap])
    assert back == w and hash(back) == hash(w)


# -- bad arguments ---------------------------------------------------------------------

# Wrong types raise TypeError and values out of range ValueError, as the project's
# shared validators do; the message names the argument either way.
BAD = [
    ({"radius": 0.0}, ValueError, "radius"),
    ({"radius": -1e-2}, ValueError, "radius"),
    ({"radius": math.nan}, ValueError, "radius"),
    ({"radius": math.inf}, ValueError, "radius"),
    ({"radius": True}, TypeError, "radius"),
    ({"radius": "0.1"}, TypeError, "radius"),
    ({"layer": 0}, ValueError, "layer"),
    ({"layer": 3}, ValueError, "layer"),
    ({"layer": 1.0}, TypeError, "layer"),
    ({"layer": True}, TypeError, "layer"),
]


@pytest.mark.parametrize(("options", "error", "message"), BAD)
def test_bad_arguments_are_refused_by_name(options, error, message):
    c, net, X, y = data("thm4.4-relu")
    kwargs = {"radius": RADIUS, **options}
    with pytest.raises(error, match=message):
        verify_witness(net, X, y, c.limit, c.limit, **kwargs)
    with pytest.raises(error, match=message):
        find_local_improvement(net, X, y, c.limit, **kwargs)


def local(**options):
    return lambda n, X, y, t: find_local_improvement(n, X, y, t, 0.1, **options)


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (local(budget=0), ValueError, "budget"),
        (local(budget=2.0), TypeError, "budget"),
        (local(min_relative_gap=-1e-12), ValueError, "min_relative_gap"),
        (local(min_relative_gap=None), TypeError, "min_relative_gap"),
        (lambda n, X, y, t: find_local_improvement(n, X, y, 0 * t, 0.1), ValueError,
         "theta_tilde = 0"),
        (lambda n, X, y, t: find_global_improvement(n, X, y, t, starts=0), ValueError,
         "starts"),
        (lambda n, X, y, t: verify_witness(n, X, y, t, t[:3]), ValueError,
         "theta_prime"),
        (lambda n, X, y, t: verify_witness(n, X[:, :3], y, t, t), ValueError,
         "columns"),
        (lambda n, X, y, t: Witness.from_dict({"theta": [1.0]}), ValueError,
         "missing"),
        (lambda n, X, y, t: Witness.from_json("[1.0]"), ValueError, "dict"),
        (lambda n, X, y, t: Witness(n, X, y, t, t, math.inf, ""), ValueError,
         "norm_gap"),
    ],
)  # fmt: skip
def test_bad_inputs_are_refused(call, error, message):
    c, net, X, y = data("thm4.4-relu")
    with pytest.raises(error, match=message):
        call(net, X, y, c.limit)


def test_searches_refuse_bad_arguments_with_their_names():
    c = get("thm4.2.2")
    net, X, y = c.network, c.case.X, c.case.y
    with pytest.raises(ValueError, match="not feasible"):
        find_local_improvement(net, X, y, 0.5 * c.limit, 0.1)
    with pytest.raises(TypeError, match="network must be"):
        find_local_improvement(None, X, y, c.limit, 0.1)
    with pytest.raises(TypeError, match="exact must be"):
        find_global_improvement(net, X, y, c.limit, exact="no")
    for seed, error in ((-1, ValueError), (1.5, TypeError), (True, TypeError)):
        with pytest.raises(error, match="seed must be"):
            find_local_improvement(net, X, y, c.limit, 0.1, seed=seed)
