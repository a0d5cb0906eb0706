from __future__ import annotations

import numpy as np
import pytest

from watcher.statistics import evaluate


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
