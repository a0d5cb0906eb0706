"""The anomaly statistic: a z-score against a baseline, with bounds (DESIGN §5). Pure.

A baseline is carried as a `Summary` — count, mean, sum of squared deviations (M2), min and
max — so PostgreSQL can aggregate a long history where it lives (`count`, `avg`, `var_samp`,
`min`, `max`) and only the summary crosses the wire; values can still be added one at a time
(Welford's update), which the batch evaluation uses for executions of the same batch.

From a list of values, the summary is computed with correctly rounded sums (`math.fsum`, two
passes), which is what numpy computes to within a few ulps (the tests compare them on
generated histories). A flat baseline is recognised exactly (min == max) rather than by a
computed sd of 0, which rounding could miss.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Evaluation:
    value: float
    z_score: float
    mean: float
    sd: float
    z_threshold: float
    lower: float
    upper: float
    baseline_count: int
    is_anomaly: bool


@dataclass(frozen=True, slots=True)
class Summary:
    """count, mean, M2 = Σ(x − mean)², min and max of a baseline."""

    n: int = 0
    mean: float = 0.0
    m2: float = 0.0
    lo: float = math.inf
    hi: float = -math.inf

    @classmethod
    def of(cls, values: Sequence[float]) -> Summary:
        n = len(values)
        if n == 0:
            return cls()
        mean = math.fsum(values) / n
        m2 = math.fsum((x - mean) ** 2 for x in values)
        return cls(n, mean, m2, min(values), max(values))

    @classmethod
    def from_aggregates(
        cls, n: int, mean: float | None, var_samp: float | None, lo: float | None, hi: float | None
    ) -> Summary:
        """From SQL `count`, `avg`, `var_samp`, `min`, `max` (nulls when there are no rows)."""
        if n == 0 or mean is None or lo is None or hi is None:
            return cls()
        m2 = float(var_samp) * (n - 1) if var_samp is not None and n > 1 else 0.0
        return cls(n, float(mean), m2, float(lo), float(hi))

    def merge(self, other: Summary) -> Summary:
        """The summary of both baselines' values (Chan et al.'s pairwise update)."""
        if other.n == 0:
            return self
        if self.n == 0:
            return other
        n = self.n + other.n
        delta = other.mean - self.mean
        mean = self.mean + delta * other.n / n
        m2 = self.m2 + other.m2 + delta * delta * self.n * other.n / n
        return Summary(n, mean, m2, min(self.lo, other.lo), max(self.hi, other.hi))

    def add(self, values: Iterable[float]) -> Summary:
        """This baseline with `values` added (Welford's update)."""
        n, mean, m2, lo, hi = self.n, self.mean, self.m2, self.lo, self.hi
        for x in values:
            n += 1
            delta = x - mean
            mean += delta / n
            m2 += delta * (x - mean)
            lo, hi = min(lo, x), max(hi, x)
        return Summary(n, mean, m2, lo, hi)


def judge(
    value: float, baseline: Summary, *, z_threshold: float, minimum_executions: int
) -> Evaluation | None:
    """Judge `value` against a baseline summary; None (skip) when it is too small or flat.

    sd is the sample standard deviation (n − 1); lower bound = max(0, mean − z·sd) since
    every metric is non-negative; upper = mean + z·sd; anomalous when outside [lower, upper].
    """
    n = baseline.n
    if n < max(minimum_executions, 2):
        return None
    if baseline.lo == baseline.hi:
        return None  # flat: sd is exactly 0
    mean = baseline.mean
    sd = math.sqrt(max(baseline.m2, 0.0) / (n - 1))
    if sd == 0:
        return None
    lower = max(0.0, mean - z_threshold * sd)
    upper = mean + z_threshold * sd
    return Evaluation(
        value=value,
        z_score=(value - mean) / sd,
        mean=mean,
        sd=sd,
        z_threshold=z_threshold,
        lower=lower,
        upper=upper,
        baseline_count=n,
        is_anomaly=value < lower or value > upper,
    )


def evaluate(
    value: float, baseline: Sequence[float], *, z_threshold: float, minimum_executions: int
) -> Evaluation | None:
    """`judge` against a list of baseline values."""
    return judge(
        value,
        Summary.of(baseline),
        z_threshold=z_threshold,
        minimum_executions=minimum_executions,
    )
