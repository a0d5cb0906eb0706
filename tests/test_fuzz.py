"""Fuzzing: schemathesis against the live `/openapi.json` (no 500, status codes and 2xx bodies
as documented, over seeded rows), and hypothesis properties for datepart arithmetic, rule
resolution, the lineage closure and the name fields the database constrains."""

from __future__ import annotations

import asyncio
import calendar
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest
import schemathesis
from dateutil.relativedelta import relativedelta
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.conftest import LiveServer
from tests.factories import address, end, make_pipeline, start
from watcher.checks.rules import FIXED_SECONDS, Rule, add_datepart, resolve
from watcher.checks.timeliness import LEAST_SECONDS
from watcher.db.embedded import EmbeddedPostgres
from watcher.fields import MAX_BODY_DEPTH, MAX_METADATA_DEPTH, Name, body_problem, json_depth
from watcher.lineage import closure

# -- schemathesis -------------------------------------------------------------------------

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
EXAMPLES = 12


def _seed(live: LiveServer) -> None:
    """Rows with id 1 in every table a GET reads, and findings for every check, so 2xx bodies
    carry real rows (not only `[]` and 404s) for response_schema_conformance to check."""
    with httpx.Client(base_url=live.url, timeout=30) as client:
        rules = {"freshness_number": 1, "freshness_datepart": "minute"}
        rules |= {"timeliness_number": 1, "timeliness_datepart": "minute"}
        rules |= {"schedule": "*/5 * * * *", "schedule_timezone": "UTC"}
        pipeline_id = make_pipeline(client, "fz_orders", pipeline_metadata={"k": "v"}, **rules)[
            "id"
        ]
        lineage = {"pipeline_id": pipeline_id, "source_addresses": [address("db.s.a")]}
        lineage["target_addresses"] = [address("db.s.b")]  # before a success ends load_lineage
        assert client.post("/address_lineage", json=lineage).status_code == 201
        parent = start(client, pipeline_id, run_id="fz-parent")
        child = start(client, pipeline_id, parent_id=parent)
        ended = end(client, child, inserts=5, total_rows=5, execution_metadata={"k": 1})
        assert ended.status_code == 204, ended.text
        rule = {"pipeline_id": pipeline_id, "metric_field": "inserts"}
        assert client.post("/anomaly_detection_rule", json=rule).status_code in (200, 201)
    live.clock.advance(timedelta(hours=1))  # the running parent is late, the pipeline stale


def test_api_conforms_to_its_openapi_document(live: LiveServer) -> None:
    """Every documented operation, bounded examples each (schemathesis' pytest plugin does not
    support pytest 9's lazy fixtures yet, so the operations are driven from here)."""
    _seed(live)
    api = schemathesis.openapi.from_url(f"{live.url}/openapi.json")
    failures: list[str] = []
    operations = 0
    for result in api.get_all_operations():
        operation = result.ok()  # type: ignore[union-attr]
        operations += 1

        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        @given(operation.as_strategy())
        def call(case: Any) -> None:
            case.call_and_validate(base_url=live.url, checks=CHECKS, timeout=30)

        try:
            call()
        except Exception as error:  # collect every operation's failure, then report all
            failures.append(f"{operation.label}: {str(error)[:1500]}")
    assert operations >= 30
    assert not failures, "\n\n".join(failures)


# Every read and check over the seeded rows: a 2xx whose body conforms, whatever the fuzzer
# happened to draw. (method, path, path parameter → the list route whose first row's id it
# takes, JSON body)
SEEDED: list[tuple[str, str, dict[str, str], dict[str, Any] | None]] = [
    *(
        ("GET", path, {}, None)
        for path in ("/", "/health", "/pipeline_type", "/pipeline", "/pipeline_execution")
    ),
    *(("GET", path, {}, None) for path in ("/address_type", "/address", "/anomaly_detection_rule")),
    *(
        ("GET", f"/{noun}/{{id}}", {"id": f"/{noun}"}, None)
        for noun in ("pipeline_type", "pipeline", "pipeline_execution", "address_type", "address")
    ),
    ("GET", "/anomaly_detection_rule/{id}", {"id": "/anomaly_detection_rule"}, None),
    ("GET", "/address_lineage/{id}", {"id": "/address"}, None),
    ("POST", "/freshness", {}, None),
    ("POST", "/timeliness", {}, {"lookback_minutes": 120}),
    ("POST", "/missed_runs", {}, None),
    ("POST", "/anomaly_detection/detect/{pipeline_id}", {"pipeline_id": "/pipeline"}, None),
    ("POST", "/log_cleanup", {}, {"retention_days": 90, "dry_run": True}),
    ("POST", "/log_cleanup", {}, {"retention_days": 90}),
]


def test_seeded_rows_conform_to_the_documented_response_schemas(live: LiveServer) -> None:
    _seed(live)
    api = schemathesis.openapi.from_url(f"{live.url}/openapi.json")
    findings: dict[str, int] = {}
    for method, path, lists, body in SEEDED:
        with httpx.Client(base_url=live.url, timeout=30) as client:
            params = {name: client.get(route).json()[0]["id"] for name, route in lists.items()}
        operation = api[path][method]
        case = (
            operation.Case(path_parameters=params, body=body)
            if body is not None
            else operation.Case(path_parameters=params)
        )
        response = case.call(base_url=live.url, timeout=30)
        assert response.status_code == 200, f"{method} {path}: {response.text}"
        case.validate_response(response, checks=CHECKS)
        if "findings" in (data := response.json()):
            findings[path] = len(data["findings"])
    assert all(findings.values()), findings  # the finding schemas were exercised too


# -- datepart arithmetic -------------------------------------------------------------------

moments = st.datetimes(
    min_value=datetime(1970, 1, 1), max_value=datetime(2200, 12, 31), timezones=st.just(UTC)
)
numbers = st.integers(min_value=1, max_value=1000)


@given(moments, numbers, st.sampled_from(sorted(FIXED_SECONDS)))
def test_fixed_dateparts_are_exact_durations(moment: datetime, n: int, datepart: str) -> None:
    assert add_datepart(moment, n, datepart) - moment == timedelta(
        seconds=n * FIXED_SECONDS[datepart]
    )


@given(moments, numbers, st.sampled_from(["month", "year"]))
def test_calendar_dateparts_match_relativedelta(moment: datetime, n: int, datepart: str) -> None:
    expected = moment + relativedelta(**{f"{datepart}s": n})  # type: ignore[arg-type]
    result = add_datepart(moment, n, datepart)
    assert result == expected
    last_day = calendar.monthrange(result.year, result.month)[1]
    assert result.day == min(moment.day, last_day)
    assert result.time() == moment.time() and result.tzinfo == moment.tzinfo


@given(moments, st.integers(1, 500), st.integers(1, 500), st.sampled_from(["day", "month", "year"]))
def test_more_dateparts_never_end_earlier(moment: datetime, a: int, b: int, datepart: str) -> None:
    low, high = sorted((a, b))
    assert add_datepart(moment, low, datepart) <= add_datepart(moment, high, datepart)


@given(moments, numbers, st.sampled_from(sorted(LEAST_SECONDS)))
def test_no_rule_lasts_less_than_the_timeliness_prefilter_assumes(
    moment: datetime, n: int, datepart: str
) -> None:
    """timeliness.CANDIDATES drops executions shorter than LEAST_SECONDS × number: safe only
    if no deadline comes sooner."""
    assert add_datepart(moment, n, datepart) - moment >= timedelta(
        seconds=n * LEAST_SECONDS[datepart]
    )


# -- rule resolution -----------------------------------------------------------------------

dateparts = st.sampled_from(["minute", "hour", "day", "week", "month", "year"])


def rule_columns(check: str) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {
            f"{check}_number": st.none() | st.integers(1, 1000),
            f"{check}_datepart": st.none() | dateparts,
            f"mute_{check}_check": st.none() | st.booleans(),
        }
    )


@given(
    st.sampled_from(["freshness", "timeliness"]).flatmap(
        lambda c: st.tuples(st.just(c), rule_columns(c), rule_columns(c))
    )
)
def test_rule_resolution_prefers_the_pipeline_and_honours_mutes(
    args: tuple[str, dict[str, Any], dict[str, Any]],
) -> None:
    check, child, parent = args
    rule = resolve(check, child, parent)

    def complete(row: dict[str, Any]) -> bool:
        return row[f"{check}_number"] is not None and row[f"{check}_datepart"] is not None

    if child[f"mute_{check}_check"] or parent[f"mute_{check}_check"]:
        assert rule is None
    elif complete(child):
        assert rule == Rule(child[f"{check}_number"], child[f"{check}_datepart"], True)
    elif complete(parent):
        assert rule == Rule(parent[f"{check}_number"], parent[f"{check}_datepart"], False)
    else:
        assert rule is None


@given(moments, numbers, dateparts)
def test_a_rules_deadline_is_its_datepart_sum(moment: datetime, n: int, datepart: str) -> None:
    rule = Rule(n, datepart, True)
    assert rule.deadline(moment) == add_datepart(moment, n, datepart)
    assert rule.seconds_from(moment) > 0


# -- lineage closure -----------------------------------------------------------------------


def floyd_warshall(edges: list[tuple[int, int]]) -> dict[tuple[int, int], int]:
    nodes = sorted({n for e in edges for n in e})
    inf = float("inf")
    dist: dict[tuple[int, int], float] = {(a, b): inf for a in nodes for b in nodes}
    for a, b in edges:
        if a != b:
            dist[a, b] = 1
    for k in nodes:
        for i in nodes:
            for j in nodes:
                if dist[i, k] + dist[k, j] < dist[i, j]:
                    dist[i, j] = dist[i, k] + dist[k, j]
    return {(a, b): int(d) for (a, b), d in dist.items() if a != b and d != inf}


@given(st.lists(st.tuples(st.integers(0, 12), st.integers(0, 12)), max_size=40))
def test_closure_is_all_pairs_shortest_paths(edges: list[tuple[int, int]]) -> None:
    assert closure(edges) == floyd_warshall(edges)


# -- names: whatever validation accepts, the database's check constraint accepts -----------

NAME = TypeAdapter(Name)


@pytest.fixture(scope="module")
def name_check(postgres: EmbeddedPostgres) -> Any:
    loop = asyncio.new_event_loop()
    conn = loop.run_until_complete(asyncpg.connect(postgres.url))

    def accepted(value: str) -> bool:
        sql = "SELECT $1 = lower(btrim($1)) AND length($1) BETWEEN 1 AND 150"
        return bool(loop.run_until_complete(conn.fetchval(sql, value)))

    yield accepted
    loop.run_until_complete(conn.close())
    loop.close()


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.text(max_size=160) | st.text(st.characters(codec="utf-8"), max_size=20))
def test_accepted_names_satisfy_the_database_constraint(name_check: Any, raw: str) -> None:
    try:
        name = NAME.validate_python(raw)
    except ValidationError:
        return
    assert name_check(name), repr(name)


# -- regressions: inputs that once answered 500 ------------------------------------------


def _deep(kind: str, depth: int) -> bytes:
    """`depth` nested arrays or objects as JSON text (no encoder goes that deep)."""
    opening, closing = (b"[", b"]") if kind == "list" else (b'{"k": ', b"}")
    return opening * depth + (b"1" if kind == "dict" else b"") + closing * depth


def _pipeline_with(field: str, raw: bytes) -> bytes:
    return b'{"name": "fz", "pipeline_type_name": "t", "' + field.encode() + b'": ' + raw + b"}"


Case = tuple[str, str, dict[str, Any] | bytes | None, dict[str, str] | None]
# fields._assume_utc: OverflowError converting these to UTC
UTC_OVERFLOWS = ("0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00")
ENDED = {"id": 1, "completed_successfully": True}
REGRESSIONS: list[Case] = [
    *(
        ("POST", "/start_pipeline_execution", {"pipeline_id": 1, "start_date": t}, None)
        for t in UTC_OVERFLOWS
    ),
    *(("POST", "/end_pipeline_execution", ENDED | {"end_date": t}, None) for t in UTC_OVERFLOWS),
    *(("GET", "/pipeline_execution", None, {"since": t}) for t in UTC_OVERFLOWS),
    # fields._metadata: orjson.dumps TypeError past 255 levels, before the depth check
    ("POST", "/pipeline", _pipeline_with("pipeline_metadata", _deep("dict", 300)), None),
    # fields._find_nul: RecursionError at ~1000 levels, even in an ignored field
    ("POST", "/pipeline", _pipeline_with("ignored", _deep("list", 1000)), None),
    ("POST", "/pipeline", _pipeline_with("ignored", _deep("dict", 1000)), None),
    # deeper than orjson.loads' 1024 levels
    ("POST", "/pipeline", _pipeline_with("ignored", _deep("list", 1100)), None),
]


@pytest.mark.parametrize(("method", "path", "body", "params"), REGRESSIONS)
def test_inputs_that_once_answered_500_are_refused_with_422(
    client: Any,
    method: str,
    path: str,
    body: dict[str, Any] | bytes | None,
    params: dict[str, str] | None,
) -> None:
    if isinstance(body, bytes):
        r = client.request(method, path, content=body, headers={"content-type": "application/json"})
    else:
        r = client.request(method, path, json=body, params=params)
    assert r.status_code == 422, r.text
    assert set(r.json()) == {"detail", "errors"}


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 3000), st.sampled_from(["list", "dict"]))
def test_body_checks_never_recurse_whatever_the_depth(depth: int, kind: str) -> None:
    value: Any = 1
    for _ in range(depth):
        value = [value] if kind == "list" else {"k": value}
    problem = body_problem({"x": value})
    assert (problem is None) == (depth < MAX_BODY_DEPTH)
    assert json_depth(value, MAX_METADATA_DEPTH) == min(depth, MAX_METADATA_DEPTH + 1)
