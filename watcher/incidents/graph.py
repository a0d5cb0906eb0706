"""The pipeline graph: which pipelines are upstream of which, from lineage and nesting.

Pipeline A is *directly* upstream of pipeline B (one hop) when

- A writes an address that B reads: one of A's lineage targets is one of B's lineage sources, or
- B's executions are nested under A's (a parent execution of A has a child execution of B).

Upstream at any depth is the transitive closure of that relation, and the depth of a pair is
the fewest hops. Watcher stores a pipeline's lineage as sources × targets (every source of a
pipeline feeds every one of its targets), so "A's target reaches B's source through a chain of
address edges" is exactly "a chain of pipelines, each reading what the previous one wrote":
every address edge on the chain belongs to a pipeline that reads the edge's source. Depth
therefore counts pipelines, not addresses: in A → B → C → D, D is at depth 3 from A.

A pipeline is never its own upstream or downstream (no depth-0 rows), even inside a cycle;
cycles and diamonds are handled by breadth-first search (each pipeline is visited once, at its
shortest depth).

Everything here is a pure function of values; `PipelineGraph` is immutable, and its derived
indexes are computed lazily and cached on the instance.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property

LineageEdge = tuple[int, int, int]
"""(pipeline_id, source_address_id, target_address_id): a row of `address_lineage`."""

NestingPair = tuple[int, int]
"""(parent_pipeline_id, child_pipeline_id): an execution of child ran under one of parent."""

ClosureRow = tuple[int, int, int]
"""(ancestor_pipeline_id, descendant_pipeline_id, depth): a row of `pipeline_closure`."""


@dataclass(frozen=True)
class PipelineGraph:
    """Pipelines joined by lineage (A writes what B reads) and by execution nesting."""

    lineage: frozenset[LineageEdge] = frozenset()
    nesting: frozenset[NestingPair] = frozenset()
    isolated: frozenset[int] = frozenset()
    """Pipelines known to exist without any edge (they only matter for `pipelines`)."""

    @classmethod
    def build(
        cls,
        lineage: Iterable[LineageEdge] = (),
        nesting: Iterable[NestingPair] = (),
        pipelines: Iterable[int] = (),
    ) -> PipelineGraph:
        """A graph from plain rows; self-nesting pairs (recursive pipelines) are dropped."""
        return cls(
            lineage=frozenset((int(p), int(s), int(t)) for p, s, t in lineage),
            nesting=frozenset((int(a), int(b)) for a, b in nesting if a != b),
            isolated=frozenset(int(p) for p in pipelines),
        )

    # -- derived indexes -------------------------------------------------------------------

    @cached_property
    def pipelines(self) -> frozenset[int]:
        """Every pipeline the graph knows: with lineage, in a nesting pair, or isolated."""
        found = set(self.isolated)
        found.update(p for p, _, _ in self.lineage)
        for parent, child in self.nesting:
            found.update((parent, child))
        return frozenset(found)

    @cached_property
    def _successors(self) -> Mapping[int, frozenset[int]]:
        readers: dict[int, set[int]] = {}
        for pipeline, source, _ in self.lineage:
            readers.setdefault(source, set()).add(pipeline)
        succ: dict[int, set[int]] = {}
        for pipeline, _, target in self.lineage:
            for reader in readers.get(target, ()):
                if reader != pipeline:
                    succ.setdefault(pipeline, set()).add(reader)
        for parent, child in self.nesting:
            if parent != child:
                succ.setdefault(parent, set()).add(child)
        return {p: frozenset(s) for p, s in succ.items()}

    @cached_property
    def _predecessors(self) -> Mapping[int, frozenset[int]]:
        pred: dict[int, set[int]] = {}
        for pipeline, successors in self._successors.items():
            for successor in successors:
                pred.setdefault(successor, set()).add(pipeline)
        return {p: frozenset(s) for p, s in pred.items()}

    def sources(self, pipeline_id: int) -> frozenset[int]:
        """The addresses the pipeline reads."""
        return frozenset(s for p, s, _ in self.lineage if p == pipeline_id)

    def targets(self, pipeline_id: int) -> frozenset[int]:
        """The addresses the pipeline writes."""
        return frozenset(t for p, _, t in self.lineage if p == pipeline_id)

    # -- queries ---------------------------------------------------------------------------

    def successors(self, pipeline_id: int) -> frozenset[int]:
        """Pipelines directly downstream (depth 1)."""
        return self._successors.get(pipeline_id, frozenset())

    def predecessors(self, pipeline_id: int) -> frozenset[int]:
        """Pipelines directly upstream (depth 1)."""
        return self._predecessors.get(pipeline_id, frozenset())

    def upstream(self, pipeline_id: int, max_depth: int | None = None) -> dict[int, int]:
        """Every pipeline upstream of `pipeline_id` → its shortest depth (≥ 1)."""
        return _bfs(pipeline_id, self._predecessors, max_depth)

    def downstream(self, pipeline_id: int, max_depth: int | None = None) -> dict[int, int]:
        """Every pipeline downstream of `pipeline_id` → its shortest depth (≥ 1)."""
        return _bfs(pipeline_id, self._successors, max_depth)

    def depth(self, ancestor: int, descendant: int) -> int | None:
        """Hops from `ancestor` down to `descendant`, or None when it is not upstream."""
        return self.downstream(ancestor).get(descendant)

    # -- updates ---------------------------------------------------------------------------

    def with_changes(
        self,
        *,
        add_lineage: Iterable[LineageEdge] = (),
        remove_lineage: Iterable[LineageEdge] = (),
        add_nesting: Iterable[NestingPair] = (),
        remove_nesting: Iterable[NestingPair] = (),
    ) -> PipelineGraph:
        """A new graph with edges added and removed (removals apply first)."""
        lineage = (self.lineage - frozenset(remove_lineage)) | frozenset(add_lineage)
        nesting = (self.nesting - frozenset(remove_nesting)) | frozenset(
            (a, b) for a, b in add_nesting if a != b
        )
        return PipelineGraph(lineage=lineage, nesting=nesting, isolated=self.isolated)

    def with_pipeline_lineage(
        self, pipeline_id: int, sources: Iterable[int], targets: Iterable[int]
    ) -> PipelineGraph:
        """The graph after the pipeline's lineage is replaced by sources × targets.

        This is what Watcher's lineage endpoint does; an empty side removes all its edges.
        """
        source_ids = sorted(set(sources))
        target_ids = sorted(set(targets))
        kept = frozenset(e for e in self.lineage if e[0] != pipeline_id)
        new = frozenset((pipeline_id, s, t) for s in source_ids for t in target_ids)
        return PipelineGraph(
            lineage=kept | new,
            nesting=self.nesting,
            isolated=self.isolated | {pipeline_id},
        )


def _bfs(
    start: int, neighbours: Mapping[int, frozenset[int]], max_depth: int | None
) -> dict[int, int]:
    if max_depth is not None and max_depth < 1:
        return {}
    depth: dict[int, int] = {start: 0}
    queue: deque[int] = deque([start])
    while queue:
        node = queue.popleft()
        next_depth = depth[node] + 1
        if max_depth is not None and next_depth > max_depth:
            continue
        for other in neighbours.get(node, ()):
            if other not in depth:
                depth[other] = next_depth
                queue.append(other)
    del depth[start]
    return depth


# -- the pipeline_closure table -------------------------------------------------------------


@dataclass(frozen=True)
class ClosureDiff:
    """Rows to delete from and insert into `pipeline_closure` (a changed depth is both)."""

    deleted: frozenset[ClosureRow] = frozenset()
    inserted: frozenset[ClosureRow] = frozenset()

    def __bool__(self) -> bool:
        return bool(self.deleted or self.inserted)

    def apply(self, rows: Iterable[ClosureRow]) -> set[ClosureRow]:
        """The rows after the diff (the integrator does this in SQL: delete, then insert)."""
        return (set(rows) - self.deleted) | self.inserted


def closure_rows(graph: PipelineGraph) -> set[ClosureRow]:
    """Every (ancestor, descendant, shortest depth) pair of the graph; never ancestor == descendant."""
    return {
        (ancestor, descendant, depth)
        for ancestor in graph.pipelines
        for descendant, depth in graph.downstream(ancestor).items()
    }


def diff_rows(old: Iterable[ClosureRow], new: Iterable[ClosureRow]) -> ClosureDiff:
    """The diff between two sets of closure rows."""
    old_set, new_set = frozenset(old), frozenset(new)
    return ClosureDiff(deleted=old_set - new_set, inserted=new_set - old_set)


def touched_pipelines(old: PipelineGraph, new: PipelineGraph) -> frozenset[int]:
    """Pipelines owning an edge that differs between the graphs (both ends of a nesting pair)."""
    touched = {p for p, _, _ in old.lineage ^ new.lineage}
    for parent, child in old.nesting ^ new.nesting:
        touched.update((parent, child))
    return frozenset(touched)


def closure_delta(old: PipelineGraph, new: PipelineGraph) -> ClosureDiff:
    """The `pipeline_closure` rows that change between two graphs, computed locally.

    Only pairs (X, Y) with X upstream of (or equal to) a touched pipeline T and Y downstream of
    (or equal to) T, in the old or the new graph, can change: a path that does not pass through
    a touched pipeline uses only edges both graphs share, so it exists in both with the same
    length. Recomputing those rows costs one search per affected ancestor instead of a full
    rebuild. Equal to `diff_rows(closure_rows(old), closure_rows(new))` (property-tested).
    """
    touched = touched_pipelines(old, new)
    if not touched:
        return ClosureDiff()
    ancestors: set[int] = set(touched)
    descendants: set[int] = set(touched)
    for pipeline in touched:
        for graph in (old, new):
            ancestors.update(graph.upstream(pipeline))
            descendants.update(graph.downstream(pipeline))
    deleted: set[ClosureRow] = set()
    inserted: set[ClosureRow] = set()
    for ancestor in ancestors:
        before = {d: n for d, n in old.downstream(ancestor).items() if d in descendants}
        after = {d: n for d, n in new.downstream(ancestor).items() if d in descendants}
        for descendant, depth in before.items():
            if after.get(descendant) != depth:
                deleted.add((ancestor, descendant, depth))
        for descendant, depth in after.items():
            if before.get(descendant) != depth:
                inserted.add((ancestor, descendant, depth))
    return ClosureDiff(deleted=frozenset(deleted), inserted=frozenset(inserted))
