"""Smoke test of the accuracy benchmark (benchmarks.accuracy) at a tiny size."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from benchmarks.accuracy import run as bench
from benchmarks.accuracy.generator import KINDS, generate
from benchmarks.accuracy.scoring import rows


def test_generator_is_reproducible_and_labelled() -> None:
    a, b = generate(3, seed=11, days=7, warmup_days=7), generate(3, seed=11, days=7, warmup_days=7)
    assert np.array_equal(a.start, b.start) and a.incidents == b.incidents
    assert np.all(np.diff(a.start) >= 0)
    assert all(i.kind in KINDS and a.eval_start <= i.time < a.eval_end for i in a.incidents)
    schedules = {generate(pid, seed=11, days=2, warmup_days=1).schedule for pid in range(40)}
    assert {"hourly", "15min", "daily", "weekdays", "irregular"} <= schedules


def test_tiny_fleet_learned_beats_zscore(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = bench.Config(seed=3, pipelines=8, days=7, warmup_days=14, workers=1)
    totals = bench.run(cfg)
    pd = cfg.pipelines * cfg.days
    learned, zscore = rows(totals["learned"], pd), rows(totals["z-score baseline"], pd)
    assert [r.detector for r in learned][-1] == "overall"
    overall, z_overall = learned[-1], zscore[-1]
    assert overall.incidents == z_overall.incidents > 0
    assert 0 <= overall.recall <= 1 and overall.false_per_1k >= 0
    assert overall.false_per_1k < z_overall.false_per_1k
    text = bench.table(totals, pd)
    assert text.count("\n") == 2 + 3 * 6
    monkeypatch.setattr(bench, "RESULTS", tmp_path / "RESULTS.md")
    (tmp_path / "RESULTS.md").write_text("# Results\n\nkeep me\n")
    bench.write_results("## Accuracy of learned expectations\n\nfirst\n")
    bench.write_results("## Accuracy of learned expectations\n\nsecond\n")
    out = (tmp_path / "RESULTS.md").read_text()
    assert "keep me" in out and "second" in out and "first" not in out
    assert out.count(bench.START) == 1 and out.count(bench.END) == 1
