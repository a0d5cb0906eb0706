"""The learned-expectation queries are served by indexes on a realistic history (EXPLAIN):
the learn job's window and its "new runs?" probe, the learned check, the API's history span
and the snapshot — none may scan the execution history (tests/test_check_plans.py seeds it)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from tests.conftest import LiveServer
from tests.test_check_plans import NOW, _clean, plan, seeded  # noqa: F401
from watcher.checks.learned import check, store, view
from watcher.metrics import learned as metrics_learned


def test_learned_queries_use_indexes(seeded: LiveServer) -> None:  # noqa: F811
    seeded.sql(
        "INSERT INTO pipeline_expectation (pipeline_id, expectations, trained_at,"
        " learned_through) SELECT id, '{\"version\": 1}', :t, :t FROM pipeline"
        " ON CONFLICT DO NOTHING",
        t=NOW - timedelta(days=2),
    )
    seeded.sql("ANALYZE pipeline_expectation")
    ids = list(range(1, 201))
    since = NOW - timedelta(minutes=60)
    queries: dict[str, tuple[Any, dict[str, Any]]] = {
        "learn: pipelines with new runs": (
            store.STALE_PIPELINES,
            {"relearn_before": NOW - timedelta(days=1), "batch": 500},
        ),
        "learn: one window": (
            store.WINDOW,
            {"pipeline_id": 7, "since": NOW - timedelta(days=35), "now": NOW, "max_runs": 2000},
        ),
        "learn: flagged": (store.FLAGGED, {"pipeline_id": 7, "since": NOW - timedelta(days=35)}),
        "check: pipelines": (check.PIPELINES, {"pipeline_id": None}),
        "check: running": (check.RUNNING, {"ids": ids}),
        "check: finished": (
            check.FINISHED,
            {"ids": ids, "since": since, "started_since": since - timedelta(days=1)},
        ),
        "api: history span": (
            view.SPAN,
            {"id": 7, "since": NOW - timedelta(days=35), "now": NOW, "max_runs": 2000},
        ),
        "snapshot: learned": (metrics_learned.LEARNED, {"known_ids": [], "known_at": []}),
    }
    for name, (statement, params) in queries.items():
        seq, _ = plan(seeded, statement, params)
        assert seq == [], f"{name}: sequential scan of {seq}"
