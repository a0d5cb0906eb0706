"""OpenLineage datasets of a run: addresses (written in name order), lineage that follows the
pipeline's latest run, row counts that do not depend on the order events arrive in, and the
data change that feeds the freshness check."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import text

from watcher import addresses, lineage
from watcher.openlineage.events import MAX_DATASETS, Dataset, OutputDataset
from watcher.openlineage.mapping import address_spec, dataset_uri, described, merge_metadata
from watcher.openlineage.runs import Ingest


def run_datasets(stored: Any, datasets: list[Any]) -> list[list[str]]:
    """The run's datasets so far plus this event's, in order of first sight."""
    seen = [list(pair) for pair in (stored or [])]
    for dataset in datasets:
        pair = [dataset.namespace, dataset.name]
        if pair not in seen and len(seen) < MAX_DATASETS:
            seen.append(pair)
    return seen


def as_datasets(pairs: list[list[str]]) -> list[Dataset]:
    return [Dataset(namespace=n, name=m) for n, m in pairs]


def row_counts(
    stored: Any, stored_at: Any, outputs: list[OutputDataset], at: str
) -> tuple[dict[str, int], dict[str, str]]:
    """outputStatistics.rowCount per output dataset over the run, with the eventTime it was
    sent at: per dataset the count of the latest eventTime wins, whatever order the events
    arrive in, and a dataset counted only in a RUNNING event keeps its count."""
    counts: dict[str, int] = dict(stored) if isinstance(stored, dict) else {}
    times: dict[str, str] = dict(stored_at) if isinstance(stored_at, dict) else {}
    for output in outputs:
        statistics = output.outputFacets.outputStatistics
        if statistics is None or statistics.rowCount is None:
            continue
        uri = dataset_uri(output.namespace, output.name)
        if uri not in counts and len(counts) >= MAX_DATASETS:
            continue
        if uri in times and datetime.fromisoformat(times[uri]) > datetime.fromisoformat(at):
            continue
        counts[uri], times[uri] = statistics.rowCount, at
    return counts, times


def wrote_data(outputs: list[list[str]], counts: dict[str, int]) -> bool:
    """The freshness rule: a run changed data when one of its outputs has a rowCount above 0,
    or has no rowCount at all (the output itself is the evidence)."""
    return any(counts.get(dataset_uri(n, m), 1) > 0 for n, m in outputs)


MARK_WRITTEN = text("""
UPDATE pipeline SET last_target_update = GREATEST(last_target_update, CAST(:t AS timestamptz))
WHERE id = :p AND last_target_update IS DISTINCT FROM
    GREATEST(last_target_update, CAST(:t AS timestamptz))
""")


async def mark_written(ctx: Ingest, pipeline_id: int, at: datetime) -> None:
    """OpenLineage cannot tell inserts from updates: a write is recorded as an update."""
    await ctx.conn.execute(MARK_WRITTEN, {"p": pipeline_id, "t": at})


async def record_addresses(ctx: Ingest, datasets: list[Any]) -> None:
    """Addresses of the datasets, created one at a time in name order, then their facets merged
    in the same order: concurrent events sharing datasets never wait for each other in a cycle."""
    specs = {}
    for dataset in datasets:
        spec = address_spec(dataset)
        if spec.name not in specs or dataset.facets:
            specs[spec.name] = (spec, dataset)
    for name in sorted(specs):
        spec, dataset = specs[name]
        address_id = await ensure_address(ctx, spec)
        await merge_metadata(
            ctx.conn,
            "address",
            "address_metadata",
            address_id,
            described(dataset.namespace, dataset.name, dataset.facets),
        )


async def ensure_address(ctx: Ingest, spec: addresses.AddressSpec) -> int:
    """`addresses.ensure` looks twice; when both its address type and the address were being
    created by concurrent events, a third look (a fresh snapshot) finds them."""
    for _ in range(2):
        try:
            return (await addresses.ensure(ctx.conn, [spec]))[spec.name]
        except RuntimeError:
            continue
    return (await addresses.ensure(ctx.conn, [spec]))[spec.name]


EDGES = text("""
SELECT s.name AS source, t.name AS target FROM address_lineage l
JOIN address s ON s.id = l.source_address_id JOIN address t ON t.id = l.target_address_id
WHERE l.pipeline_id = :p
""")
LATEST_RUN = text("""
SELECT id FROM pipeline_execution WHERE pipeline_id = :p
ORDER BY start_date DESC, id DESC LIMIT 1
""")


async def follow_lineage(
    ctx: Ingest,
    pipeline_id: int,
    execution_id: int | None,
    inputs: list[Dataset],
    outputs: list[Dataset],
) -> None:
    """The pipeline's edges become inputs × outputs of its latest run (Marquez: the current job
    version's), whatever `load_lineage` says (it keeps its meaning for POST /address_lineage).
    An older run's late events leave them alone. `execution_id` None: a JobEvent."""
    if execution_id is not None:
        latest = (await ctx.conn.execute(LATEST_RUN, {"p": pipeline_id})).scalar()
        if latest != execution_id:
            return
    sources = [address_spec(d) for d in inputs]
    targets = [address_spec(d) for d in outputs]
    wanted = {(s.name, t.name) for s in sources for t in targets}
    current = await ctx.conn.execute(EDGES, {"p": pipeline_id})
    if wanted == {(r.source, r.target) for r in current}:
        return  # the usual case: the same edges as the last run, no closure rebuild
    body = lineage.LineageBody(
        pipeline_id=pipeline_id, source_addresses=sources, target_addresses=targets
    )
    await lineage.replace_edges(ctx.conn, body, respect_load_lineage=False)
