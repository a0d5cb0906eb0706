"""Bulk data for the scale phases, generated inside PostgreSQL (INSERT … SELECT generate_series).

Nothing goes through the API: 1,000,000 executions are written in seconds. The shapes are
what the checks look at: every seeded pipeline has freshness and timeliness rules, a cron
schedule and anomaly rules on all metrics; executions are spread over the last 30 days, 95%
successful, already evaluated for anomalies except the newest `unchecked`; one pipeline in a
hundred has an execution still running for two hours (a timeliness violation).
"""

from __future__ import annotations

import asyncpg

from watcher.db.schema import ANOMALY_METRICS

SEED_TYPE = "seed"


async def seed_pipelines(conn: asyncpg.Connection, total: int, prefix: str = SEED_TYPE) -> int:
    """Make sure `total` pipelines named `{prefix}_NNNNN` exist, with rules; returns how many."""
    await conn.execute(
        "INSERT INTO pipeline_type (name) VALUES ($1) ON CONFLICT (name) DO NOTHING", prefix
    )
    await conn.execute(
        """
        INSERT INTO pipeline (name, pipeline_type_id, next_watermark, freshness_number,
            freshness_datepart, timeliness_number, timeliness_datepart, schedule,
            schedule_timezone, schedule_grace_seconds)
        SELECT $1 || '_' || lpad(g::text, 5, '0'), t.id, g::text, 1 + g % 12, 'hour',
            30 + g % 60, 'minute', '*/15 * * * *', 'UTC', 300
        FROM pipeline_type t, generate_series(0, $2 - 1) g
        WHERE t.name = $1
        ON CONFLICT (name) DO NOTHING
        """,
        prefix,
        total,
    )
    await add_rules(conn)
    return int(await conn.fetchval("SELECT count(*) FROM pipeline"))


async def add_rules(conn: asyncpg.Connection) -> None:
    """Anomaly rules on every metric of every pipeline (what auto-created rules would give)."""
    await conn.execute(
        """
        INSERT INTO anomaly_detection_rule (pipeline_id, metric_field)
        SELECT p.id, m FROM pipeline p, unnest($1::text[]) m
        ON CONFLICT DO NOTHING
        """,
        list(ANOMALY_METRICS),
    )


async def seed_executions(conn: asyncpg.Connection, count: int, unchecked: int = 1000) -> None:
    """`count` ended executions spread over all pipelines and 30 days, plus running ones."""
    before = int(await conn.fetchval("SELECT coalesce(max(id), 0) FROM pipeline_execution"))
    await conn.execute(
        """
        WITH p AS (SELECT array_agg(id ORDER BY id) AS ids FROM pipeline),
        g AS (
            SELECT g, now() - (g * interval '30 days' / $1) AS start_date,
                   60 + (g * 7919) % 540 AS seconds, (g * 104729) % 1000 AS n
            FROM generate_series(1::bigint, $1::bigint) g
        )
        INSERT INTO pipeline_execution (pipeline_id, start_date, end_date, duration_seconds,
            completed_successfully, inserts, updates, soft_deletes, total_rows, throughput,
            hour_recorded, date_recorded, anomaly_checked_at, next_watermark)
        SELECT p.ids[1 + g % cardinality(p.ids)], start_date,
            start_date + seconds * interval '1 second', seconds, g % 20 <> 0,
            CASE WHEN g % 20 <> 0 THEN n END, CASE WHEN g % 20 <> 0 THEN n / 2 END,
            CASE WHEN g % 20 <> 0 THEN n / 10 END, CASE WHEN g % 20 <> 0 THEN 10 * n END,
            CASE WHEN g % 20 <> 0 THEN 10.0 * n / seconds END,
            extract(hour FROM start_date AT TIME ZONE 'UTC'),
            (start_date AT TIME ZONE 'UTC')::date,
            CASE WHEN g > $2 THEN start_date + seconds * interval '1 second' END, g::text
        FROM g, p
        """,
        count,
        unchecked,
    )
    await conn.execute(
        """
        INSERT INTO pipeline_execution (pipeline_id, start_date, hour_recorded, date_recorded)
        SELECT id, now() - interval '2 hours',
            extract(hour FROM (now() - interval '2 hours') AT TIME ZONE 'UTC'),
            ((now() - interval '2 hours') AT TIME ZONE 'UTC')::date
        FROM pipeline WHERE id % 100 = 0
        """
    )
    await conn.execute(
        """
        INSERT INTO pipeline_execution_closure (ancestor_id, descendant_id, depth)
        SELECT id, id, 0 FROM pipeline_execution WHERE id > $1
        """,
        before,
    )
    await conn.execute(
        """
        UPDATE pipeline p SET last_target_insert = l.last
        FROM (SELECT pipeline_id, max(end_date) AS last FROM pipeline_execution
              WHERE inserts > 0 GROUP BY pipeline_id) l
        WHERE l.pipeline_id = p.id
        """
    )
    await conn.execute("VACUUM ANALYZE")


async def clear_executions(conn: asyncpg.Connection) -> None:
    """Drop every execution (and what hangs off them), keeping pipelines and rules."""
    await conn.execute(
        "TRUNCATE pipeline_execution, pipeline_execution_closure, anomaly_detection_result, "
        "timeliness_pipeline_execution_log CASCADE"
    )
