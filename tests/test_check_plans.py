"""Every check query is served by an index on a realistic history (EXPLAIN, not guesses).

Seeds 200 pipelines and 100,000 executions over 200 days, with logs and results, then asks
PostgreSQL for each check's plan and fails on a sequential scan of a history table.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text

from tests.conftest import LiveServer
from watcher.checks import anomalies, cleanup, freshness, missed_runs, timeliness
from watcher.db.schema import ANOMALY_METRICS
from watcher.metrics import snapshot as metrics_snapshot

NOW = datetime.now(UTC)
HISTORY = (
    "pipeline_execution",
    "timeliness_pipeline_execution_log",
    "freshness_pipeline_log",
    "anomaly_detection_result",
    "missed_run_log",
    "pipeline_execution_closure",
)

SEED = """
INSERT INTO pipeline_type (name, timeliness_number, timeliness_datepart) VALUES ('t', 1, 'hour');
INSERT INTO pipeline (name, pipeline_type_id, last_target_insert, schedule)
SELECT 'p' || g, 1, CAST(:now AS timestamptz) - g * interval '1 hour', CASE WHEN g % 2 = 0 THEN '0 * * * *' END
FROM generate_series(1, 200) g;
INSERT INTO pipeline_execution (pipeline_id, start_date, end_date, completed_successfully,
    duration_seconds, total_rows, hour_recorded, date_recorded, anomaly_checked_at)
SELECT 1 + g % 200, s, CASE WHEN g % 500 = 0 THEN NULL ELSE s + interval '5 minutes' END,
    CASE WHEN g % 500 = 0 THEN NULL ELSE g % 20 <> 0 END, 300, g % 1000,
    extract(hour FROM s AT TIME ZONE 'UTC'), (s AT TIME ZONE 'UTC')::date,
    CASE WHEN g > 99950 THEN NULL ELSE s END
FROM generate_series(1, 100000) g, LATERAL (SELECT CAST(:now AS timestamptz) - (100000 - g) * interval '173 seconds' AS s) x;
INSERT INTO pipeline_execution_closure (ancestor_id, descendant_id, depth)
SELECT id, id, 0 FROM pipeline_execution;
INSERT INTO timeliness_pipeline_execution_log (pipeline_execution_id, pipeline_id,
    duration_seconds, seconds_threshold, execution_status, timely_number, timely_datepart,
    used_child_config, created_at)
SELECT id, pipeline_id, 300, 60, 'completed', 1, 'minute', true, start_date
FROM pipeline_execution WHERE id % 5 = 0 AND end_date IS NOT NULL;
INSERT INTO freshness_pipeline_log (pipeline_id, last_dml_timestamp, evaluation_timestamp,
    freshness_number, freshness_datepart, used_child_config, created_at)
SELECT pipeline_id, start_date, start_date, 1, 'day', true, start_date
FROM pipeline_execution WHERE id % 5 = 1;
INSERT INTO missed_run_log (pipeline_id, expected_at, detected_at, schedule, schedule_timezone,
    grace_seconds, used_child_config, created_at)
SELECT pipeline_id, start_date, start_date, '0 * * * *', 'UTC', 0, true, start_date
FROM pipeline_execution WHERE id % 5 = 2;
INSERT INTO anomaly_detection_rule (pipeline_id, metric_field)
SELECT id, 'total_rows' FROM pipeline;
INSERT INTO anomaly_detection_result (pipeline_execution_id, rule_id, violation_value, z_score,
    historical_mean, std_deviation_value, z_threshold, threshold_min_value, threshold_max_value,
    baseline_count, is_anomaly, detected_at)
SELECT e.id, r.id, 1, 1, 1, 1, 3, 0, 2, 30, false, e.end_date
FROM pipeline_execution e JOIN anomaly_detection_rule r ON r.pipeline_id = e.pipeline_id
WHERE e.completed_successfully AND e.id % 2 = 0;
"""


@pytest.fixture(scope="module")
def seeded(live: LiveServer) -> LiveServer:
    async def seed(conn: Any) -> None:
        for statement in SEED.split(";"):
            if statement.strip():
                await conn.execute(text(statement), {"now": NOW})

    live.in_transaction(seed)
    for table in (*HISTORY, "pipeline", "anomaly_detection_rule"):
        live.sql(f"ANALYZE {table}")
    return live


@pytest.fixture(autouse=True)
def _clean() -> None:
    """Keep the seeded history for the whole module (the conftest one truncates per test)."""


def plan(live: LiveServer, statement: Any, params: dict[str, Any]) -> tuple[list[str], float]:
    async def explain() -> Any:
        clause = getattr(statement, "clause", statement)  # a watcher.db.driver.Statement: its Core
        sql = str(clause.compile(compile_kwargs={"render_postcompile": True}))
        async with live.services.engine.connect() as conn:
            transaction = await conn.begin()
            result = await conn.execute(text(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}"), params)
            doc = result.scalar()
            await transaction.rollback()  # ANALYZE runs the deletes: keep the history
        return doc

    doc = live.run(explain)
    doc = json.loads(doc) if isinstance(doc, str) else doc
    seq: list[str] = []

    def walk(node: dict[str, Any]) -> None:
        if node["Node Type"] == "Seq Scan" and node["Relation Name"] in HISTORY:
            seq.append(node["Relation Name"])
        for child in node.get("Plans", []):
            walk(child)

    walk(doc[0]["Plan"])
    return seq, float(doc[0]["Execution Time"])


def test_check_queries_use_indexes(seeded: LiveServer) -> None:
    first = seeded.sql("SELECT min(id) AS i FROM pipeline_execution")[0]["i"]
    recent = seeded.sql(
        "SELECT id, pipeline_id, hour_recorded, end_date FROM pipeline_execution"
        " WHERE completed_successfully ORDER BY id DESC LIMIT 1"
    )[0]
    cutoff = cleanup.cutoff_for(NOW, 90)
    queries = {
        "timeliness": (
            timeliness.CANDIDATES,
            {"since": NOW - timedelta(minutes=60), "now": NOW},
        ),
        "freshness": (freshness.CANDIDATES, {}),
        "missed_runs": (missed_runs.CANDIDATES, {}),
        "anomaly claim": (anomalies.evaluation.RECLAIM, {"id": recent["id"], "now": NOW}),
        "anomaly batch claim": (
            anomalies.evaluation.CLAIM_BATCH,
            {"ids": [recent["id"], first], "now": NOW},
        ),
        "anomaly rules": (anomalies.evaluation.PENDING_RULES, {"ids": [first, recent["id"]]}),
        "anomaly baseline (forced, direct)": (
            anomalies.evaluation.DIRECT,
            {
                "ids": [recent["id"], first],
                **{
                    f"since_{metric}": [recent["end_date"] - timedelta(days=30)] * 2
                    for metric in ANOMALY_METRICS
                },
            },
        ),
        "anomaly baseline (day summaries)": (
            anomalies.baselines.READ,
            {
                "ids": [recent["id"], first],
                **{
                    f"since_{metric}": [recent["end_date"] - timedelta(days=30)] * 2
                    for metric in ANOMALY_METRICS
                },
            },
        ),
        "anomaly catch-up": (
            anomalies.detector.UNCHECKED,
            {"after_end": datetime(1, 1, 1, tzinfo=UTC), "after_id": 0, "limit": 500},
        ),
        "latest success": (anomalies.routes.LATEST_SUCCESS, {"pipeline_id": 7}),
        "metrics snapshot anomalies": (metrics_snapshot.ANOMALY_STATE, {}),
        "metrics snapshot last executions": (metrics_snapshot.LAST_EXECUTIONS, {"param_1": 1}),
        "metrics snapshot running": (metrics_snapshot.RUNNING_COUNTS, {}),
        # Cleanup batches of 50 and 20 are ~0.1% of the seeded tables, the ratio the default
        # 10,000 has to tables of 10 million rows; at 1% or more of a table a hash join over a
        # seq scan is cheaper and the planner rightly takes it.
        "cleanup executions": (cleanup.DELETE_EXECUTIONS, {"cutoff": cutoff, "n": 50}),
        **{
            f"cleanup {table}": (
                cleanup._delete_log_sql(table, column),
                {"cutoff": cutoff, "n": 20},
            )
            for table, column in cleanup.LOGS
        },
    }
    timings = {}
    for name, (statement, params) in queries.items():
        seq, ms = plan(seeded, statement, params)
        assert seq == [], f"{name}: sequential scan of {seq}"
        timings[name] = ms
    print({k: round(v, 2) for k, v in timings.items()})  # shown with -s


def test_truncate_after_module(live: LiveServer) -> None:
    """Leave the database empty for the next module."""
    from tests.conftest import TABLES

    live.sql(f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE")
