"""`describe`: one pipeline's expectations as the API shows them.

A pipeline is "learning" until some part of it was learned: the answer then says how much
history it has and how much the minimum (`LearnSettings`) still needs — from one bounded
aggregate over the learning window (the last `max_runs` runs of `window_days`).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from watcher.expectations import Expectations, LearnSettings

STATE = text("""
SELECT x.expectations, x.trained_at, x.retrain_from, x.sensitivity AS own_sensitivity,
       COALESCE(x.opted_out, false) AS own_opted_out,
       tx.sensitivity AS type_sensitivity, COALESCE(tx.opted_out, false) AS type_opted_out
FROM pipeline p
LEFT JOIN pipeline_expectation x ON x.pipeline_id = p.id
LEFT JOIN pipeline_type_expectation tx ON tx.pipeline_type_id = p.pipeline_type_id
WHERE p.id = :id
""")

SPAN = text("""
SELECT count(*) AS runs, min(start_date) AS first, max(start_date) AS last FROM (
    SELECT start_date FROM pipeline_execution
    WHERE pipeline_id = :id AND start_date > :since AND start_date <= :now
    ORDER BY start_date DESC LIMIT :max_runs
) w
""")


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat()


async def _history(
    conn: AsyncConnection, pipeline_id: int, now: datetime, since: datetime
) -> dict[str, Any]:
    s = LearnSettings()
    params = {"id": pipeline_id, "since": since, "now": now, "max_runs": s.max_runs}
    row = (await conn.execute(SPAN, params)).one()
    span = (row.last - row.first).total_seconds() / 86400 if row.runs else 0.0
    return {
        "runs": int(row.runs),
        "span_days": round(span, 2),
        "since": since,
        "min_runs": s.min_runs,
        "min_span_days": s.min_span_days,
        "runs_needed": max(0, s.min_runs - int(row.runs)),
        "days_needed": round(max(0.0, s.min_span_days - span), 2),
    }


def _learned(exp: Expectations, now: datetime) -> dict[str, Any]:
    t = now.timestamp()
    cadence = None
    if exp.cadence is not None:
        c = exp.cadence
        cadence = c.to_json() | {
            "kind": c.kind,
            "describe": c.describe(),
            "next_expected_start": _iso(c.next_expected_start(t)),
        }
    bands = []
    for m in exp.bands:
        band = m.band_at(t)
        bands.append(
            {
                "metric": m.metric,
                "low": band.low,
                "high": band.high,
                "center": band.center,
                "n": band.n,
            }
        )
    return {
        "cadence": cadence,
        "bands": bands,
        "freshness": None if exp.freshness is None else exp.freshness.to_json(),
        "regime_changes": [r.to_json() | {"at": _iso(r.at)} for r in exp.regime_changes],
        "notes": list(exp.notes),
        "n_runs": exp.n_runs,
    }


async def describe(conn: AsyncConnection, pipeline_id: int, now: datetime) -> dict[str, Any]:
    row = (await conn.execute(STATE, {"id": pipeline_id})).one()
    opted_out = bool(row.own_opted_out or row.type_opted_out)
    sensitivity = row.own_sensitivity or row.type_sensitivity or "medium"
    since = now - timedelta(days=LearnSettings().window_days)
    if row.retrain_from is not None:
        since = max(since, row.retrain_from - timedelta(microseconds=1))
    exp = None if row.expectations is None else Expectations.from_json(row.expectations)
    learned = exp is not None and (
        exp.cadence is not None or bool(exp.bands) or exp.freshness is not None
    )
    state = "opted_out" if opted_out else "learned" if learned else "learning"
    body: dict[str, Any] = {
        "pipeline_id": pipeline_id,
        "state": state,
        "sensitivity": sensitivity,
        "sensitivity_source": "pipeline"
        if row.own_sensitivity
        else "pipeline_type"
        if row.type_sensitivity
        else "default",
        "opted_out": opted_out,
        "retrain_from": row.retrain_from,
        "trained_at": row.trained_at,
        "history": await _history(conn, pipeline_id, now, since),
        "cadence": None,
        "bands": [],
        "freshness": None,
        "notes": []
        if exp is not None
        else ["not learned yet: the learn job has not run since the pipeline's first runs"],
    }
    if exp is not None:
        body |= _learned(exp, now)
    return body
