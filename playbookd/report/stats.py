"""Comparing two groups' goal rates: the only module that imports scipy.

The p-value is the pooled two-proportion test's, two-sided: for a 2x2 table it is exactly the
chi-square test without continuity correction, so scipy's `chi2_contingency` computes it. The 95%
interval of the difference is Newcombe's hybrid score interval (his method 10, Stat Med 1998),
built from the Wilson score interval of each rate, which scipy's `binomtest` gives.

scipy is imported at the first comparison, not with this module: it takes seconds, and the daemon
and the console load the report layer at start.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

MIN_MEASURED = 30  # enrollments measured (entered - met at entry) each group needs for a comparison
NOT_ENOUGH = f"not enough data (fewer than {MIN_MEASURED} measured in a group)"


@dataclass(frozen=True)
class Difference:
    lift: float  # rate(group) - rate(versus)
    ci95: tuple[float, float]
    p_value: float | None  # None when the test is undefined: no conversion, or all converted, in both


def wilson(met: int, n: int) -> tuple[float, float]:
    from scipy.stats import binomtest

    interval = binomtest(met, n).proportion_ci(confidence_level=0.95, method="wilson")
    return float(interval.low), float(interval.high)


def p_value(met_a: int, n_a: int, met_b: int, n_b: int) -> float | None:
    from scipy.stats import chi2_contingency

    table = [[met_a, n_a - met_a], [met_b, n_b - met_b]]
    try:
        return float(chi2_contingency(table, correction=False).pvalue)
    except ValueError:  # a column of zeros: every rate is 0, or every rate is 1
        return None


def difference(met_a: int, n_a: int, met_b: int, n_b: int) -> Difference:
    """Group a against group b; both need at least one measured enrollment."""
    if n_a < 1 or n_b < 1:
        raise ValueError("each group needs at least one measured enrollment")
    p1, p2 = met_a / n_a, met_b / n_b
    (l1, u1), (l2, u2) = wilson(met_a, n_a), wilson(met_b, n_b)
    lift = p1 - p2
    low = lift - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)
    high = lift + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)
    return Difference(lift, (low, high), p_value(met_a, n_a, met_b, n_b))
