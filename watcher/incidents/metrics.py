"""What Prometheus needs to alert once per incident (the rules in monitoring/rules/incidents.yml).

Every replica refreshes its own copy from PostgreSQL (like the per-pipeline snapshot) so any of
them can be scraped; the rules aggregate with `max by`. Cardinality is bounded by the
pipelines currently broken: resolved incidents leave the exposition.

    watcher_incident_open{incident_id, root_pipeline, problem}            1 per root problem
    watcher_incident_started_timestamp_seconds{incident_id, root_pipeline}
    watcher_incident_impacted_pipelines{incident_id, root_pipeline}       count
    watcher_incident_impacted_datasets{incident_id, root_pipeline}        count
    watcher_incident_info{incident_id, root_pipeline, impacted_first, summary}  1
    watcher_pipeline_impacted_by{pipeline, root_pipeline, incident_id, state}   1

`impacted_first` (the first few impacted names) and `summary` are text in labels: acceptable
only because the info series never feeds an alert's identity (the rules read them in
annotations). `state` is "attached", or "pending" for a pipeline still broken after its root's
incident resolved, waiting out the grace: it stays inhibited until then.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from watcher.incidents.summary import MAX_NAMES

OPEN = "watcher_incident_open"
STARTED = "watcher_incident_started_timestamp_seconds"
IMPACTED_PIPELINES = "watcher_incident_impacted_pipelines"
IMPACTED_DATASETS = "watcher_incident_impacted_datasets"
INFO = "watcher_incident_info"
IMPACTED_BY = "watcher_pipeline_impacted_by"
NAMES = (OPEN, STARTED, IMPACTED_PIPELINES, IMPACTED_DATASETS, INFO, IMPACTED_BY)


@dataclass(frozen=True)
class IncidentSeries:
    incident_id: str
    root_pipeline: str
    problems: tuple[str, ...]
    started_at: float
    impacted: tuple[str, ...]  # active impacted pipelines, shallowest first
    datasets: int
    summary: str


@dataclass(frozen=True)
class Exported:
    incidents: tuple[IncidentSeries, ...] = ()
    impacted_by: tuple[tuple[str, str, str, str], ...] = ()  # pipeline, root, id, state


def first_names(names: tuple[str, ...], limit: int = MAX_NAMES) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", +{len(names) - limit} more" if len(names) > limit else "")


class IncidentCollector(Collector):
    def __init__(self) -> None:
        self.current = Exported()

    def collect(self) -> Iterator[Metric]:
        ids = ["incident_id", "root_pipeline"]
        open_ = GaugeMetricFamily(
            OPEN, "1 per open incident and root problem.", labels=[*ids, "problem"]
        )
        started = GaugeMetricFamily(
            STARTED, "Evidence time of the open incident's first root problem.", labels=ids
        )
        pipelines = GaugeMetricFamily(
            IMPACTED_PIPELINES, "Pipelines currently impacted by the open incident.", labels=ids
        )
        datasets = GaugeMetricFamily(
            IMPACTED_DATASETS,
            "Datasets written by the open incident's root or impacted pipelines.",
            labels=ids,
        )
        info = GaugeMetricFamily(
            INFO,
            "1 per open incident; labels carry its first impacted names and summary (text, "
            "never an alert identity).",
            labels=[*ids, "impacted_first", "summary"],
        )
        impacted_by = GaugeMetricFamily(
            IMPACTED_BY,
            "1 while a pipeline is impacted by (attached) or waiting after (pending) an "
            "incident rooted elsewhere.",
            labels=["pipeline", "root_pipeline", "incident_id", "state"],
        )
        exported = self.current
        for i in exported.incidents:
            labels = [i.incident_id, i.root_pipeline]
            for problem in i.problems:
                open_.add_metric([*labels, problem], 1)
            started.add_metric(labels, i.started_at)
            pipelines.add_metric(labels, len(i.impacted))
            datasets.add_metric(labels, i.datasets)
            info.add_metric([*labels, first_names(i.impacted), i.summary], 1)
        for row in exported.impacted_by:
            impacted_by.add_metric(list(row), 1)
        yield from (open_, started, pipelines, datasets, info, impacted_by)
