"""The learned check: late starts, overdue runs, stale targets and anomalous runs against each
pipeline's learned expectations, for pipelines whose configured rules leave room (`judge`).

1. `PIPELINES`: pipelines with expectations, active and not opted out, with their rule
   columns, latest start (one index probe each) and latest target change;
2. running executions of those (ix_pipeline_execution_running) and successful ones that
   ended within the lookback (start within lookback + 1 day: ix_pipeline_execution_start_date);
3. `judge` decides with one `now`; `LOG` logs each finding once (unique pipeline, kind,
   metric, subject) and anomalous runs get `anomaly_flags[metric] = true` like configured
   detection sets it (so they stay out of baselines and training).

Declared maintenance windows (`maintenance.windows_of`) silence a pipeline's learned findings
while they last (`judge`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from watcher.availability.heartbeat import CatchUpPolicy, load_gate
from watcher.checks.anomalies import baselines
from watcher.checks.findings import Report, as_dict
from watcher.checks.learned.judge import LearnedFinding, judge
from watcher.checks.learned.maintenance import windows_of
from watcher.checks.rules import rule_columns_sql
from watcher.db.engine import transaction
from watcher.expectations import Expectations
from watcher.services import Services

PIPELINES = text(f"""
SELECT p.id, p.name, x.expectations, {rule_columns_sql()},
       GREATEST(p.last_target_insert, p.last_target_update, p.last_target_soft_delete)
           AS last_change,
       last.start_date AS last_start
FROM pipeline_expectation x
JOIN pipeline p ON p.id = x.pipeline_id
JOIN pipeline_type t ON t.id = p.pipeline_type_id
LEFT JOIN pipeline_type_expectation tx ON tx.pipeline_type_id = p.pipeline_type_id
LEFT JOIN LATERAL (
    SELECT e.start_date FROM pipeline_execution e
    WHERE e.pipeline_id = p.id ORDER BY e.start_date DESC LIMIT 1
) last ON true
WHERE x.expectations IS NOT NULL AND p.active
  AND NOT x.opted_out AND tx.opted_out IS NOT TRUE
  AND (CAST(:pipeline_id AS bigint) IS NULL OR p.id = :pipeline_id)
ORDER BY p.id
""")

RUNNING = text("""
SELECT id, pipeline_id, start_date FROM pipeline_execution
WHERE end_date IS NULL AND pipeline_id = ANY(CAST(:ids AS bigint[]))
""")

FINISHED = text("""
SELECT id, pipeline_id, start_date, end_date, duration_seconds, total_rows, inserts,
       updates, soft_deletes
FROM pipeline_execution
WHERE start_date >= :started_since AND end_date >= :since AND completed_successfully
  AND pipeline_id = ANY(CAST(:ids AS bigint[]))
""")

FINISHED_ONE = text("""
SELECT id, pipeline_id, start_date, end_date, duration_seconds, total_rows, inserts,
       updates, soft_deletes
FROM pipeline_execution WHERE id = :id AND completed_successfully
""")

CONFIGURED_ANOMALY = text("""
SELECT pipeline_id, metric_field FROM anomaly_detection_rule
WHERE active AND pipeline_id = ANY(CAST(:ids AS bigint[]))
""")

LOG = text("""
INSERT INTO learned_finding_log (pipeline_id, kind, metric, subject, pipeline_execution_id,
    expected, message, detected_at)
SELECT f.pipeline_id, f.kind, f.metric, f.subject, f.pipeline_execution_id,
       CAST(f.expected AS jsonb), f.message, :now
FROM unnest(CAST(:pipeline_id AS bigint[]), CAST(:kind AS text[]), CAST(:metric AS text[]),
    CAST(:subject AS timestamptz[]), CAST(:pipeline_execution_id AS bigint[]),
    CAST(:expected AS text[]), CAST(:message AS text[]))
    AS f(pipeline_id, kind, metric, subject, pipeline_execution_id, expected, message)
ON CONFLICT (pipeline_id, kind, metric, subject) DO NOTHING
RETURNING pipeline_id, kind, metric, subject
""")

# One row per execution (an UPDATE … FROM applies one joined row per target row): its
# anomalous metrics aggregated into one object.
FLAG = text("""
UPDATE pipeline_execution e
SET anomaly_flags = COALESCE(e.anomaly_flags, '{}'::jsonb) || f.flags
FROM (
    SELECT id, jsonb_object_agg(metric, true) AS flags
    FROM unnest(CAST(:ids AS bigint[]), CAST(:metrics AS text[])) AS u(id, metric)
    GROUP BY id
) f
WHERE e.id = f.id
""")


# A late start rests on no start having been reported since before the slot: the start could
# have come early (within the learned tolerance), so the evidence reaches back an hour.
LATE_START_LOOKBEHIND = timedelta(hours=1)
# Maintenance windows that ended longer ago than the learning window change no finding.
MAINTENANCE_LOOKBEHIND = timedelta(days=35)


def evidence(finding: LearnedFinding, now: datetime) -> tuple[datetime, datetime] | None:
    """The interval a learned finding rests on the *absence* of reports in: a start (late),
    an end (overdue) or a target change (stale) Watcher would have been told of. Blind in
    there (`watcher.availability`) → unknown until caught up. Anomalies rest on a stored run."""
    if finding.kind == "late_start":
        return finding.subject - LATE_START_LOOKBEHIND, now
    if finding.kind in ("overdue", "stale"):
        return finding.subject, now
    return None


async def _by_pipeline(
    conn: AsyncConnection, statement: Any, params: dict[str, Any]
) -> dict[int, list[dict[str, Any]]]:
    out: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for r in await conn.execute(statement, params):
        out[int(r.pipeline_id)].append(dict(r._mapping))
    return out


async def log_findings(
    conn: AsyncConnection, findings: Sequence[LearnedFinding], now: datetime
) -> list[dict[str, Any]]:
    """Log `findings` once; each comes back as a dict with `newly_logged`."""
    inserted: set[tuple[Any, ...]] = set()
    if findings:
        params: dict[str, Any] = {
            c: [getattr(f, c) for f in findings]
            for c in ("pipeline_id", "kind", "metric", "subject", "pipeline_execution_id")
        }
        params["expected"] = [orjson.dumps(f.expected).decode() for f in findings]
        params["message"] = [f.message for f in findings]
        result = await conn.execute(LOG, params | {"now": now})
        inserted = {tuple(r) for r in result}
        new = [f for f in findings if f.kind == "anomaly" and _key(f) in inserted]
        if new:
            ids = [f.pipeline_execution_id for f in new if f.pipeline_execution_id is not None]
            await conn.execute(FLAG, {"ids": ids, "metrics": [f.metric for f in new]})
            # Flagged values leave the anomaly baselines: recompute the days they counted in.
            await baselines.rebuild(conn, await baselines.keys_of(conn, ids))
    return [as_dict(f) | {"newly_logged": _key(f) in inserted} for f in findings]


def _key(f: LearnedFinding) -> tuple[Any, ...]:
    return (f.pipeline_id, f.kind, f.metric, f.subject)


async def check(
    conn: AsyncConnection,
    now: datetime,
    lookback_minutes: int,
    *,
    kinds: frozenset[str] | None = None,
    pipeline_id: int | None = None,
    execution_id: int | None = None,
    policy: CatchUpPolicy | None = None,
) -> Report:
    """The learned check at `now`; `kinds`, `pipeline_id` narrow it (the configured checks'
    routes report their own kind), `execution_id` judges that one finished run. Findings whose
    evidence lies in a window Watcher was not ingesting are held back until caught up."""
    rows = [dict(r._mapping) for r in await conn.execute(PIPELINES, {"pipeline_id": pipeline_id})]
    ids = [int(r["id"]) for r in rows]
    since = now - timedelta(minutes=lookback_minutes)
    running = await _by_pipeline(conn, RUNNING, {"ids": ids})
    if execution_id is not None:
        finished = await _by_pipeline(conn, FINISHED_ONE, {"id": execution_id})
    else:
        window = {"ids": ids, "since": since, "started_since": since - timedelta(days=1)}
        finished = await _by_pipeline(conn, FINISHED, window)
    windows = await windows_of(conn, ids, now - MAINTENANCE_LOOKBEHIND, now)
    configured: dict[int, set[str]] = defaultdict(set)
    for r in await conn.execute(CONFIGURED_ANOMALY, {"ids": ids}):
        configured[int(r.pipeline_id)].add(str(r.metric_field))
    found: list[LearnedFinding] = []
    for row in rows:
        pid = int(row["id"])
        exp = Expectations.from_json(row["expectations"])
        found += judge(
            row,
            exp,
            now,
            running=running.get(pid, ()),
            finished=finished.get(pid, ()),
            configured_metrics=frozenset(configured.get(pid, ())),
            windows=windows.get(pid, ()),
        )
    if kinds is not None:
        found = [f for f in found if f.kind in kinds]
    gate = await load_gate(conn, now, policy or CatchUpPolicy())
    kept, held = gate.split(found, lambda f: evidence(f, now))
    findings = await log_findings(conn, kept, now)
    return {
        "status": "completed",
        "evaluated_at": now,
        "lookback_minutes": lookback_minutes,
        "pipelines_checked": len(rows),
        "new_findings": sum(1 for f in findings if f["newly_logged"]),
        "suppressed_findings": len(held),
        "findings": findings,
    }


async def findings_of(
    services: Services,
    kind: str,
    lookback_minutes: int = 60,
    *,
    pipeline_id: int | None = None,
    execution_id: int | None = None,
) -> list[dict[str, Any]]:
    """The learned findings of one kind, for a configured check's route: `learned_findings`
    beside its own (learned only where no configured rule of that kind applies)."""
    async with transaction(services.engine) as conn:
        report = await check(
            conn,
            services.clock.now(),
            lookback_minutes,
            kinds=frozenset([kind]),
            pipeline_id=pipeline_id,
            execution_id=execution_id,
            policy=CatchUpPolicy.of(services.settings),
        )
    findings: list[dict[str, Any]] = report["findings"]
    return findings
