"""The current per-pipeline snapshot, its rendering, and what `GET /metrics` encodes."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from watcher.metrics.counters import Metrics
from watcher.metrics.exposition import (
    encode_snapshot,
)
from watcher.metrics.families import _pipeline_families
from watcher.metrics.snapshot import PIPELINES_DOC, Snapshot


class PipelineCollector(Collector):
    """The per-pipeline families of the current snapshot, as of the snapshot's time.

    Lags and ages are computed at the snapshot's `taken_at`, not at scrape time, so the
    output only changes when the snapshot does and can be cached; they are at most one
    refresh interval old (`watcher_metrics_snapshot_age_seconds` says by how much).
    """

    def __init__(self, store: SnapshotStore) -> None:
        self._store = store

    def collect(self) -> Iterator[Metric]:
        snapshot = self._store.current
        if snapshot is None:
            return
        pipelines = GaugeMetricFamily("watcher_pipelines", PIPELINES_DOC, labels=["status"])
        pipelines.add_metric(["active"], len(snapshot.pipelines))
        pipelines.add_metric(["inactive"], snapshot.inactive_pipelines)
        yield pipelines
        yield from _pipeline_families(snapshot.pipelines, snapshot.taken_at)


class SnapshotStore:
    """The current snapshot and its exposition, rendered once per snapshot and format.

    Replaced whole, so a scrape never sees half an update. The per-pipeline families are
    most of a scrape (~30 samples per pipeline), so their exposition is encoded straight
    from the snapshot (`encode_snapshot`) once per refresh and format, and cached: a scrape
    then costs a dictionary lookup plus the small live families. `registry` renders the
    same families as Metric objects, for tests and anything that wants samples.
    """

    def __init__(self) -> None:
        self.current: Snapshot | None = None
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(PipelineCollector(self))
        self._encoded: dict[bool, bytes] = {}
        # The format scrapers asked for last (Prometheus prefers OpenMetrics): the one a
        # refresh encodes ahead of the next scrape.
        self.openmetrics = False

    def replace(self, snapshot: Snapshot) -> None:
        self.current = snapshot
        self._encoded = {}

    def encoded(self, openmetrics: bool) -> bytes:
        """The per-pipeline families (OpenMetrics or text format), encoded once per snapshot."""
        cache, snapshot = self._encoded, self.current  # a refresh swaps both in: read once
        self.openmetrics = openmetrics
        if snapshot is None:
            return b"# EOF\n" if openmetrics else b""
        if openmetrics not in cache:
            cache[openmetrics] = encode_snapshot(snapshot, openmetrics)
        return cache[openmetrics]


@dataclass(frozen=True)
class Telemetry:
    """What `GET /metrics` encodes: the live families (`metrics`), the registry that
    prometheus_client encodes (`exposed`: the live families without the per-pipeline
    execution counters, which `metrics.pipelines` encodes itself) and the snapshot store."""

    metrics: Metrics
    exposed: CollectorRegistry
    store: SnapshotStore
