"""The comparison statistics against published values and scipy's own functions."""

from __future__ import annotations

import pytest
from scipy.stats import chi2_contingency, norm

from playbookd.report.stats import difference


@pytest.mark.parametrize(("a", "b", "low", "high"), [
    # Newcombe (1998), Stat Med 17:873-890, table II, method 10
    ((56, 70), (48, 80), 0.0524, 0.3339),
    ((9, 10), (3, 10), 0.1705, 0.8090),
    ((6, 7), (2, 7), 0.0582, 0.8062),
    ((5, 56), (0, 29), -0.0381, 0.1926),
    ((0, 10), (0, 20), -0.1611, 0.2775),
    ((0, 10), (0, 10), -0.2775, 0.2775),
])
def test_newcombe_hybrid_score_interval_matches_the_paper(a: tuple[int, int], b: tuple[int, int], low: float,
                                                          high: float) -> None:
    found = difference(a[0], a[1], b[0], b[1])
    assert found.ci95 == pytest.approx((low, high), abs=5e-5)
    assert found.lift == pytest.approx(a[0] / a[1] - b[0] / b[1])


@pytest.mark.parametrize(("a", "b"), [((56, 70), (48, 80)), ((12, 100), (30, 110)), ((1, 31), (0, 40))])
def test_p_value_is_the_pooled_two_proportion_test(a: tuple[int, int], b: tuple[int, int]) -> None:
    found = difference(a[0], a[1], b[0], b[1])
    expected = chi2_contingency([[a[0], a[1] - a[0]], [b[0], b[1] - b[0]]], correction=False).pvalue
    assert found.p_value == pytest.approx(expected, rel=1e-12)
    pooled = (a[0] + b[0]) / (a[1] + b[1])
    z = (a[0] / a[1] - b[0] / b[1]) / (pooled * (1 - pooled) * (1 / a[1] + 1 / b[1])) ** 0.5
    assert found.p_value == pytest.approx(2 * norm.sf(abs(z)), rel=1e-9)


def test_no_conversion_anywhere_has_no_p_value() -> None:
    assert difference(0, 40, 0, 50).p_value is None
    assert difference(40, 40, 50, 50).p_value is None
