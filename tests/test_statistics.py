from __future__ import annotations

import numpy as np
import pytest

from watcher.checks.statistics import Summary, evaluate, judge


@pytest.mark.parametrize("value", [0.1, 1 / 3, 1e-300, 123456.789])
def test_a_flat_baseline_is_skipped_even_when_rounding_would_leave_a_tiny_sd(value: float) -> None:
    assert evaluate(value * 2, [value] * 40, z_threshold=3, minimum_executions=5) is None


def test_it_matches_numpy_on_a_wide_baseline() -> None:
    baseline = list(np.random.default_rng(7).lognormal(8, 2, size=500))
    result = evaluate(1e9, baseline, z_threshold=3, minimum_executions=30)
    assert result is not None and result.is_anomaly
    assert result.mean == pytest.approx(np.mean(baseline), rel=1e-12)
    assert result.sd == pytest.approx(np.std(baseline, ddof=1), rel=1e-12)
    assert result.lower == max(0.0, result.mean - 3 * result.sd)


@pytest.mark.parametrize("seed", range(20))
def test_a_summary_built_in_parts_matches_numpy(seed: int) -> None:
    """Aggregates from SQL plus values added one at a time = the whole baseline at once."""
    rng = np.random.default_rng(seed)
    values = list(rng.lognormal(5, 1.5, size=int(rng.integers(2, 400))))
    cut = int(rng.integers(0, len(values) + 1))
    head = values[:cut]
    sql_like = Summary.from_aggregates(
        len(head),
        float(np.mean(head)) if head else None,
        float(np.var(head, ddof=1)) if len(head) > 1 else None,
        min(head) if head else None,
        max(head) if head else None,
    )
    summary = sql_like.add(values[cut:])
    assert summary.n == len(values)
    assert (summary.lo, summary.hi) == (min(values), max(values))
    assert summary.mean == pytest.approx(np.mean(values), rel=1e-12)
    result = judge(0.0, summary, z_threshold=3, minimum_executions=2)
    assert result is not None
    assert result.sd == pytest.approx(np.std(values, ddof=1), rel=1e-9)


def test_an_empty_summary_is_too_small() -> None:
    assert judge(1.0, Summary(), z_threshold=3, minimum_executions=0) is None
    assert Summary.from_aggregates(0, None, None, None, None) == Summary()
