"""The pipeline graph: upstream/downstream depths, cycles, diamonds, nesting, closure rows."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from watcher.incidents.graph import (
    ClosureDiff,
    LineageEdge,
    PipelineGraph,
    closure_delta,
    closure_rows,
    diff_rows,
    touched_pipelines,
)

A, B, C, D, E = 1, 2, 3, 4, 5


def flows(*pairs: tuple[int, int]) -> PipelineGraph:
    """Pipeline p writes address 10·p and reads an external 1000+p plus what its upstreams write.

    Edges are sources × targets, as Watcher stores them.
    """
    sources: dict[int, set[int]] = {}
    for up, down in pairs:
        sources.setdefault(up, set())
        sources.setdefault(down, set()).add(10 * up)
    lineage = [(p, s, 10 * p) for p, srcs in sources.items() for s in sorted(srcs | {1000 + p})]
    return PipelineGraph.build(lineage)


def test_chain_depths_both_ways() -> None:
    graph = flows((A, B), (B, C), (C, D))
    assert graph.downstream(A) == {B: 1, C: 2, D: 3}
    assert graph.upstream(D) == {C: 1, B: 2, A: 3}
    assert graph.upstream(A) == {}
    assert graph.depth(A, D) == 3
    assert graph.depth(D, A) is None


def test_max_depth_limits_the_search() -> None:
    graph = flows((A, B), (B, C), (C, D))
    assert graph.downstream(A, max_depth=2) == {B: 1, C: 2}
    assert graph.upstream(D, max_depth=1) == {C: 1}
    assert graph.upstream(D, max_depth=0) == {}


def test_address_chain_through_several_edges_counts_pipelines() -> None:
    # A writes 1; B reads 1 and writes 2 and 3; C reads 3 and writes 4; D reads 4.
    graph = PipelineGraph.build([(A, 0, 1), (B, 1, 2), (B, 1, 3), (C, 3, 4), (D, 4, 5)])
    assert graph.downstream(A) == {B: 1, C: 2, D: 3}


def test_diamond_gives_each_pipeline_once_at_its_shortest_depth() -> None:
    graph = flows((A, B), (A, C), (B, D), (C, D), (A, E), (E, D))
    assert graph.downstream(A) == {B: 1, C: 1, E: 1, D: 2}
    assert graph.upstream(D) == {B: 1, C: 1, E: 1, A: 2}


def test_cycle_terminates_and_excludes_self() -> None:
    graph = flows((A, B), (B, A), (B, C))
    assert graph.downstream(A) == {B: 1, C: 2}
    assert graph.upstream(A) == {B: 1}
    assert graph.upstream(C) == {B: 1, A: 2}


def test_reading_own_target_is_not_a_self_loop() -> None:
    graph = PipelineGraph.build([(A, 1, 1), (A, 0, 1)])
    assert graph.downstream(A) == {}
    assert closure_rows(graph) == set()


def test_nesting_makes_the_parent_upstream() -> None:
    # No shared address: B only runs nested under A's executions; C reads what B writes.
    graph = PipelineGraph.build([(B, 0, 7), (C, 7, 8)], nesting=[(A, B), (B, B)])
    assert graph.upstream(C) == {B: 1, A: 2}
    assert graph.downstream(A) == {B: 1, C: 2}
    assert graph.nesting == frozenset({(A, B)})
    assert graph.pipelines == frozenset({A, B, C})


def test_unknown_pipeline_has_no_relatives() -> None:
    graph = flows((A, B))
    assert graph.upstream(99) == {}
    assert graph.downstream(99) == {}


def test_closure_rows_of_a_diamond_and_a_cycle() -> None:
    assert closure_rows(flows((A, B), (A, C), (B, D), (C, D))) == {
        (A, B, 1),
        (A, C, 1),
        (A, D, 2),
        (B, D, 1),
        (C, D, 1),
    }
    assert closure_rows(flows((A, B), (B, A))) == {(A, B, 1), (B, A, 1)}


def test_replacing_one_pipelines_lineage_gives_a_local_diff() -> None:
    old = flows((A, B), (B, C), (C, D))
    # B stops reading A: B now only reads an external address, still writes 20.
    new = old.with_pipeline_lineage(B, sources=[1000 + B], targets=[10 * B])
    delta = closure_delta(old, new)
    assert delta == ClosureDiff(deleted=frozenset({(A, B, 1), (A, C, 2), (A, D, 3)}))
    assert delta.apply(closure_rows(old)) == closure_rows(new)
    assert touched_pipelines(old, new) == {B}


def test_a_shortcut_changes_depths_as_delete_plus_insert() -> None:
    old = flows((A, B), (B, C), (C, D))
    new = old.with_changes(add_lineage=[(D, 10 * A, 10 * D)])  # D also reads A's output
    delta = closure_delta(old, new)
    assert delta.deleted == {(A, D, 3)}
    assert delta.inserted == {(A, D, 1)}
    assert delta == diff_rows(closure_rows(old), closure_rows(new))
    assert not closure_delta(new, new)


def test_nesting_change_is_diffed_too() -> None:
    old = flows((B, C))
    new = old.with_changes(add_nesting=[(A, B)])
    assert closure_delta(old, new).inserted == {(A, B, 1), (A, C, 2)}
    back = new.with_changes(remove_nesting=[(A, B)])
    assert closure_delta(new, back).deleted == {(A, B, 1), (A, C, 2)}


# -- properties ----------------------------------------------------------------------------

PIPELINES = st.integers(1, 6)
ADDRESSES = st.integers(1, 7)
LINEAGE = st.frozensets(st.tuples(PIPELINES, ADDRESSES, ADDRESSES), max_size=14)
NESTING = st.frozensets(st.tuples(PIPELINES, PIPELINES), max_size=4)


def _graphs() -> st.SearchStrategy[PipelineGraph]:
    return st.builds(PipelineGraph.build, LINEAGE, NESTING)


def _reference_depths(graph: PipelineGraph) -> dict[tuple[int, int], int]:
    """Floyd–Warshall over the direct relation, straight from the definition."""
    nodes = sorted(graph.pipelines)
    inf = len(nodes) + 1
    dist = {(a, b): inf for a in nodes for b in nodes}
    for pa, _, target in graph.lineage:
        for pb, source, _ in graph.lineage:
            if pa != pb and target == source:
                dist[pa, pb] = 1
    for parent, child in graph.nesting:
        dist[parent, child] = 1
    for k in nodes:
        for i in nodes:
            for j in nodes:
                dist[i, j] = min(dist[i, j], dist[i, k] + dist[k, j])
    return {(a, b): d for (a, b), d in dist.items() if a != b and d < inf}


@settings(max_examples=80, deadline=None, database=None)
@given(_graphs())
def test_closure_matches_the_definition(graph: PipelineGraph) -> None:
    rows = closure_rows(graph)
    assert {(a, b): d for a, b, d in rows} == _reference_depths(graph)
    for pipeline in graph.pipelines:
        up = graph.upstream(pipeline)
        assert up == {a: d for a, b, d in rows if b == pipeline}


@settings(max_examples=80, deadline=None, database=None)
@given(_graphs(), LINEAGE, LINEAGE, NESTING, NESTING)
def test_incremental_delta_equals_full_diff(
    old: PipelineGraph,
    add: frozenset[LineageEdge],
    remove: frozenset[LineageEdge],
    add_nesting: frozenset[tuple[int, int]],
    remove_nesting: frozenset[tuple[int, int]],
) -> None:
    new = old.with_changes(
        add_lineage=add,
        remove_lineage=remove | set(list(old.lineage)[:3]),
        add_nesting=add_nesting,
        remove_nesting=remove_nesting | set(list(old.nesting)[:1]),
    )
    delta = closure_delta(old, new)
    assert delta == diff_rows(closure_rows(old), closure_rows(new))
    assert delta.apply(closure_rows(old)) == closure_rows(new)
