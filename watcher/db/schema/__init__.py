"""The whole PostgreSQL schema of Watcher: one MetaData, every table, every constraint named.

One module per domain (`pipelines`, `checks`, `availability`, `anomalies`, `lineage`,
`incidents`, `tokens`, `expectations`) on the shared `metadata` of `base`; this package
re-exports every table, so `from watcher.db.schema import pipeline` and `schema.metadata`
work as they did. Import order below is definition order (`metadata.tables` keeps it).

Alembic compares its migrations against this module (`alembic check` runs in the tests), so
a change here without a migration fails the suite.

Invariants kept by the database itself rather than by the code:
- names of pipelines, pipeline types and address types are stored lowercased and
  trimmed, and are unique (the API normalises them before they get here);
- address names are trimmed (and keep their case: OpenLineage datasets of case-sensitive
  namespaces; the original HTTP API lowercases the names it is sent);
- counts are >= 0, an execution ends no earlier than it starts (zero-length runs exist)
  and is never its own parent;
- every execution has its depth-0 row in `pipeline_execution_closure`;
- lineage edges are unique per (pipeline, source, target), and `address_lineage_closure`
  holds the shortest distance between every pair of addresses connected by a path.
"""

from __future__ import annotations

from watcher.db.schema.base import NAMING_CONVENTION, metadata

# isort: off
# In the order of the tables in the one schema.py this was: metadata.tables keeps it.
from watcher.db.schema.pipelines import (
    DATEPARTS,
    pipeline,
    pipeline_execution,
    pipeline_execution_closure,
    pipeline_type,
)
from watcher.db.schema.checks import (
    PRUNED_KINDS,
    freshness_pipeline_log,
    missed_run_log,
    pruned_log_count,
    timeliness_pipeline_execution_log,
)
from watcher.db.schema.availability import ingest_heartbeat
from watcher.db.schema.anomalies import (
    ANOMALY_METRICS,
    BASELINE_PARTS,
    anomaly_baseline_day,
    anomaly_detection_result,
    anomaly_detection_rule,
)
from watcher.db.schema.lineage import (
    address,
    address_lineage,
    address_lineage_closure,
    address_type,
)
from watcher.db.schema.incidents import (
    INCIDENT_PROBLEMS,
    incident,
    incident_impact,
    incident_pending,
    pipeline_nesting,
)
from watcher.db.schema.tokens import api_token
from watcher.db.schema.expectations import (
    LEARNED_KINDS,
    SENSITIVITIES,
    expectation_feedback,
    learned_finding_log,
    maintenance_window,
    pipeline_expectation,
    pipeline_type_expectation,
)
# isort: on

__all__ = [
    "ANOMALY_METRICS",
    "BASELINE_PARTS",
    "DATEPARTS",
    "INCIDENT_PROBLEMS",
    "LEARNED_KINDS",
    "NAMING_CONVENTION",
    "PRUNED_KINDS",
    "SENSITIVITIES",
    "address",
    "address_lineage",
    "address_lineage_closure",
    "address_type",
    "anomaly_baseline_day",
    "anomaly_detection_result",
    "anomaly_detection_rule",
    "api_token",
    "expectation_feedback",
    "freshness_pipeline_log",
    "incident",
    "incident_impact",
    "incident_pending",
    "ingest_heartbeat",
    "learned_finding_log",
    "maintenance_window",
    "metadata",
    "missed_run_log",
    "pipeline",
    "pipeline_execution",
    "pipeline_execution_closure",
    "pipeline_expectation",
    "pipeline_nesting",
    "pipeline_type",
    "pipeline_type_expectation",
    "pruned_log_count",
    "timeliness_pipeline_execution_log",
]
