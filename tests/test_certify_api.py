"""`invariants.certify.optimality` and the certificates' public surface: what each
verdict needs, scale robustness, and argument checks."""

import json
import math

import numpy as np
import pytest

from invariants import certify
from invariants.cases import get
from invariants.certify import optimality
from invariants.certify.linear import certify_layer, certify_theorem_3_1
from invariants.kkt import kkt_point
from invariants.networks import diagonal, fully_connected


def lifted_fc(u):
    """[w (1 row of fully_connected([2, 2, 1])), zero row, v] computing x -> u.x."""
    r = np.linalg.norm(u) ** 0.5
    w = u / np.linalg.norm(u) * r
    return np.array([w[0], w[1], 0.0, 0.0, r, 0.0])


@pytest.mark.parametrize("big", [1e-3, 1e2, 3e3, 1e4, 1e6])
def test_least_distance_certificates_hold_when_rows_differ_widely_in_size(big):
    """X = [e_1, big e_2]: the SVM without bias is u* = (1, 1/big). Rows that differ
    by 3e3 or more once made NNLS call the problem infeasible."""
    net = fully_connected([2, 2, 1], "linear")
    X, y = np.array([[1.0, 0.0], [0.0, big]]), np.ones(2)
    theta = lifted_fc(np.array([1.0, 1.0 / big]))
    cert = certify_theorem_3_1(net, X, y, theta)
    assert cert.holds and cert.dual == pytest.approx(2 * math.hypot(1, 1 / big), 1e-12)
    assert certify_layer(net, X, y, theta, 1).holds


def test_a_global_optimum_with_a_zero_neuron_is_still_certified():
    """Diagonal linear net on x = (1, 2): the optimum puts all weight on the second
    coordinate, theta = (0, a, 0, a) with 2 a^2 = 1, so neuron 1 is zero and Theorem
    4.2 (1) is silent; Problem 8's bound (2 x 1/2 = 1 = ||theta||^2) still proves
    it global."""
    net = diagonal(2, 2, "linear")
    X, y = np.array([[1.0, 2.0]]), np.ones(1)
    a = 1 / math.sqrt(2)
    verdict = optimality(net, X, y, np.array([0.0, a, 0.0, a]))
    assert verdict.global_ is True and verdict.local is True
    kinds = [(e["kind"], e.get("theorem", "")) for e in verdict.evidence]
    assert kinds[0] == ("not_applicable", "4.2 (1)")
    assert kinds[1][0] == "certificate" and kinds[1][1].startswith("Problem 8")


def test_a_suboptimal_linear_no_share_point_gets_a_verified_better_point():
    """Theorem 4.1's limit (||theta~||^2 = 2) against the optimum 1 above."""
    c = get("thm4.1-linear")
    verdict = optimality(c.network, c.case.X, c.case.y, c.limit)
    assert verdict.global_ is False
    better = next(e for e in verdict.evidence if e["kind"] == "better_point")
    theta = np.array(better["theta"])
    assert np.min(c.network.margins(theta, c.case.X, c.case.y)) >= 1.0
    assert theta @ theta == pytest.approx(1.0, rel=1e-6)


def test_false_needs_a_better_point_and_true_a_certificate():
    for name in ("lemmaC.6", "thm3.2", "thm4.2.2", "thm4.1-linear"):
        c = get(name)
        verdict = optimality(c.network, c.case.X, c.case.y, c.limit)
        kinds = {e["kind"] for e in verdict.evidence}
        if verdict.global_ is False:
            assert "better_point" in kinds, name
        if verdict.global_ is True or verdict.local is True:
            assert any(
                e["kind"] == "certificate" and e["holds"] for e in verdict.evidence
            ), name


def test_the_certificates_are_importable_from_the_package():
    for name in certify.__all__:
        assert callable(getattr(certify, name)) or name == "CERTIFICATE_TOL", name


@pytest.mark.parametrize("tol", [-1.0, 0.0, float("nan"), 0.5, 2.0])
def test_optimality_refuses_tolerances_that_would_decide_for_it(tol):
    c = get("lemmaC.6")
    with pytest.raises(ValueError, match="tol must be in"):
        optimality(c.network, c.case.X, c.case.y, c.limit, tol=tol)


def test_numpy_scalars_are_accepted_and_bools_refused():
    c = get("lemmaC.6")
    net, X, y = c.network, c.case.X, c.case.y
    kkt_point(net, X, y, c.limit, active_tol=np.float32(1e-3))
    assert certify_layer(net, X, y, c.limit, np.int64(1)).layer == 1
    with pytest.raises(TypeError, match="layer must be an integer"):
        certify_layer(net, X, y, c.limit, True)
    with pytest.raises(TypeError, match="active_tol must be a real number"):
        kkt_point(net, X, y, c.limit, active_tol="0.1")


def test_far_and_tiny_points_keep_their_verdicts():
    """Only the direction matters: a GF iterate at ||theta|| = 1e300, or a point at
    1e-200, gives the same residual and verdict as theta~."""
    c = get("lemmaC.6")
    net, X, y = c.network, c.case.X, c.case.y
    base = kkt_point(net, X, y, c.limit).residual
    for scale in (1e-200, 1e300):
        assert kkt_point(net, X, y, scale * c.limit).residual == pytest.approx(
            base, abs=1e-15
        )
        verdict = optimality(net, X, y, scale * c.limit)
        assert (verdict.local, verdict.global_) == (True, False)


def test_kkt_report_is_strict_json_when_a_kink_carries_no_multiplier():
    """A zero input of an active sample whose multiplier is 0 has no slope to
    report: null, not NaN (strict JSON has no NaN)."""
    import dataclasses

    net = fully_connected([2, 2, 1], "relu")
    X = np.array([[1.0, 0.0], [-0.25, 1.0]])
    point = kkt_point(net, X, np.ones(2), np.array([1.0, 0.0, 0.0, 1.0, 1.0, 1.0]))
    orphan = dataclasses.replace(point, slopes={(1, 0, 1): math.nan})
    text = json.dumps(orphan.to_json(), allow_nan=False)
    assert '"slope": null' in text


def test_a_better_point_that_is_not_better_is_refused():
    """The limit itself (equal norm), a point that flips a margin's sign, and one
    only 1e-9 better (within the tolerance) are no evidence; the exact optimum is."""
    from invariants.certify import verified_better_point

    c = get("lemmaC.6")
    net, X, y = c.network, c.case.X, c.case.y
    value = float(c.limit @ c.limit)
    assert verified_better_point(net, X, y, c.limit, value, 1e-6) is None
    assert verified_better_point(net, X, y, -c.limit, value, 1e-6) is None
    assert verified_better_point(net, X, y, c.limit, value * (1 + 1e-9), 1e-6) is None
    evidence = verified_better_point(net, X, y, c.better_point, value, 1e-6)
    assert evidence is not None and evidence["norm_squared"] == pytest.approx(7.8125)
