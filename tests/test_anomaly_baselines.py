"""The running day summaries give today's anomaly results: a property test against the
direct computation of the definition (every other successful execution of the pipeline with
the same UTC start hour, ended within the lookback before this one's end, value not null,
not flagged when evaluated), on real PostgreSQL.

Generated histories span more days than the lookback (windows expire, partially on their
first day), cross midnight between start and end, hold failures and nulls, and are evaluated
in any order, in batches — out of order means unevaluated rows inside the window and last
days whose summary holds later ends, the paths the summaries cannot answer alone.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import TABLES, LiveServer
from watcher.checks.anomalies import baselines
from watcher.checks.anomalies.evaluation import evaluate_batch
from watcher.checks.learned.check import log_findings
from watcher.checks.learned.judge import LearnedFinding
from watcher.checks.statistics import Evaluation, Summary, judge

BASE = datetime(2026, 3, 1, tzinfo=UTC)
METRIC = "total_rows"


@st.composite
def histories(draw: st.DrawFn) -> dict[str, Any]:
    n = draw(st.integers(20, 60))
    scale = draw(st.sampled_from([1, 10, 1000]))
    rows = []
    for _ in range(n):
        hour = draw(st.sampled_from([5, 23]))  # 23: long runs end the next UTC day
        start = BASE + timedelta(
            days=draw(st.integers(0, 3)), hours=hour, minutes=draw(st.integers(0, 59))
        )
        end = start + timedelta(minutes=draw(st.integers(1, 120)))
        value = draw(st.none() | st.integers(0, 20).map(lambda v: v * scale))
        rows.append(
            {"start": start, "end": end, "ok": draw(st.booleans() | st.just(True)), "v": value}
        )
    order = draw(st.permutations(range(n)))
    sizes = draw(st.lists(st.integers(1, 3), min_size=n, max_size=n))
    chunks, i = [], 0
    for size in sizes:
        if i >= n:
            break
        chunks.append(list(order[i : i + size]))
        i += size
    return {
        "rows": rows,
        "chunks": chunks,
        "lookback": draw(st.integers(1, 4)),
        "z": draw(st.sampled_from([1.0, 1.5, 3.0])),
    }


def reference(h: dict[str, Any]) -> dict[int, Evaluation | None]:
    """Today's definition, evaluated in the same order (flags set as evaluations go)."""
    rows, flagged, out = h["rows"], set(), {}
    for chunk in h["chunks"]:
        for i in sorted(chunk, key=lambda i: (rows[i]["end"], i)):
            e = rows[i]
            if not e["ok"]:
                continue
            since = e["end"] - timedelta(days=h["lookback"])
            kept = [
                float(b["v"])
                for j, b in enumerate(rows)
                if j != i
                and b["ok"]
                and b["start"].hour == e["start"].hour
                and since <= b["end"] <= e["end"]
                and b["v"] is not None
                and j not in flagged
            ]
            outcome = None
            if e["v"] is not None:
                outcome = judge(
                    float(e["v"]), Summary.of(kept), z_threshold=h["z"], minimum_executions=5
                )
            out[i] = outcome
            if outcome is not None and outcome.is_anomaly:
                flagged.add(i)
    return out


def load(live: LiveServer, h: dict[str, Any]) -> list[int]:
    live.sql(f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE")
    live.sql("INSERT INTO pipeline_type (name) VALUES ('t')")
    live.sql("INSERT INTO pipeline (name, pipeline_type_id) VALUES ('p', 1)")
    live.sql(
        "INSERT INTO anomaly_detection_rule (pipeline_id, metric_field, z_threshold,"
        " lookback_days, minimum_executions) VALUES (1, :m, :z, :l, 5)",
        m=METRIC,
        z=h["z"],
        l=h["lookback"],
    )
    rows = h["rows"]
    inserted = live.sql(
        "INSERT INTO pipeline_execution (pipeline_id, start_date, end_date,"
        " completed_successfully, total_rows, hour_recorded, date_recorded)"
        " SELECT 1, s, e, ok, v, extract(hour FROM timezone('UTC', s)),"
        " CAST(timezone('UTC', s) AS date)"
        " FROM unnest(CAST(:s AS timestamptz[]), CAST(:e AS timestamptz[]),"
        " CAST(:ok AS boolean[]), CAST(:v AS bigint[])) WITH ORDINALITY AS u(s, e, ok, v, i)"
        " ORDER BY i RETURNING id",
        s=[r["start"] for r in rows],
        e=[r["end"] for r in rows],
        ok=[r["ok"] for r in rows],
        v=[r["v"] for r in rows],
    )
    return [r["id"] for r in inserted]


def evaluate_in_order(live: LiveServer, ids: list[int], chunks: list[list[int]]) -> None:
    for chunk in chunks:
        batch = [ids[i] for i in chunk]
        live.in_transaction(lambda conn, b=batch: evaluate_batch(conn, b, BASE))  # type: ignore[misc]


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(h=histories())
def test_day_summaries_give_the_results_of_the_direct_computation(
    live: LiveServer, h: dict[str, Any]
) -> None:
    ids = load(live, h)
    evaluate_in_order(live, ids, h["chunks"])
    got = {
        r["pipeline_execution_id"]: r for r in live.sql("SELECT * FROM anomaly_detection_result")
    }
    for i, want in reference(h).items():
        result = got.get(ids[i])
        if want is None:
            assert result is None, (i, result)
            continue
        assert result is not None, i
        assert result["baseline_count"] == want.baseline_count
        assert result["historical_mean"] == pytest.approx(want.mean, rel=1e-9, abs=1e-9)
        assert result["std_deviation_value"] == pytest.approx(want.sd, rel=1e-9, abs=1e-9)
        if abs(abs(want.z_score) - h["z"]) > 1e-6:  # not on the threshold itself
            assert result["is_anomaly"] is want.is_anomaly
    # The day summaries equal a recomputation from the executions.
    stored = live.sql("SELECT * FROM anomaly_baseline_day ORDER BY 1, 2, 3")
    live.in_transaction(baselines.rebuild_all)
    rebuilt = live.sql("SELECT * FROM anomaly_baseline_day ORDER BY 1, 2, 3")
    assert [(r["day"], r[f"{METRIC}_n"], r["max_end"]) for r in stored] == [
        (r["day"], r[f"{METRIC}_n"], r["max_end"]) for r in rebuilt
    ]


def test_unflagging_puts_the_value_back_into_its_day_summary(live: LiveServer) -> None:
    h: dict[str, Any] = {
        "rows": [
            {
                "start": BASE + timedelta(hours=5, minutes=i),
                "end": BASE + timedelta(hours=5, minutes=i + 1),
                "ok": True,
                "v": v,
            }
            for i, v in enumerate([10, 11, 12, 10, 11, 12, 500])
        ],
        "chunks": [[i] for i in range(7)],
        "lookback": 2,
        "z": 3.0,
    }
    ids = load(live, h)
    evaluate_in_order(live, ids, h["chunks"])
    [flagged] = live.sql(
        "SELECT pipeline_execution_id AS id FROM anomaly_detection_result WHERE is_anomaly"
    )
    assert flagged["id"] == ids[6]
    day = live.sql(f"SELECT {METRIC}_n AS n, {METRIC}_hi AS hi FROM anomaly_baseline_day")
    assert day == [{"n": 6, "hi": 12.0}]
    with httpx.Client(base_url=live.url) as http:
        r = http.post(
            "/unflag_anomaly", json={"pipeline_execution_id": ids[6], "metric_field": [METRIC]}
        )
    assert r.status_code == 204, r.text
    day = live.sql(f"SELECT {METRIC}_n AS n, {METRIC}_hi AS hi FROM anomaly_baseline_day")
    assert day == [{"n": 7, "hi": 500.0}]


def test_a_learned_anomaly_takes_the_value_out_of_its_day_summary(live: LiveServer) -> None:
    """The learned check flags a run it finds anomalous: the flag keeps the value out of
    configured anomaly baselines too, so the day summary it counted in is recomputed."""
    h: dict[str, Any] = {
        "rows": [
            {
                "start": BASE + timedelta(hours=5, minutes=i),
                "end": BASE + timedelta(hours=5, minutes=i + 1),
                "ok": True,
                "v": v,
            }
            for i, v in enumerate([10, 11, 12, 10, 11, 13])
        ],
        "chunks": [[i] for i in range(6)],
        "lookback": 2,
        "z": 3.0,
    }
    ids = load(live, h)
    evaluate_in_order(live, ids, h["chunks"])
    day = live.sql(f"SELECT {METRIC}_n AS n, {METRIC}_hi AS hi FROM anomaly_baseline_day")
    assert day == [{"n": 6, "hi": 13.0}]
    finding = LearnedFinding(
        pipeline_id=1,
        pipeline_name="p",
        kind="anomaly",
        metric=METRIC,
        subject=h["rows"][5]["start"],
        pipeline_execution_id=ids[5],
        expected={},
        message="unusual",
    )
    live.in_transaction(lambda conn: log_findings(conn, [finding], BASE))
    day = live.sql(f"SELECT {METRIC}_n AS n, {METRIC}_hi AS hi FROM anomaly_baseline_day")
    assert day == [{"n": 5, "hi": 12.0}]
