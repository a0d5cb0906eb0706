"""Real recorded OpenLineage events (tests/data/openlineage, see its README) sent to a live
Watcher in order, reversed, children first and all at once: the stored result is the same."""

from __future__ import annotations

import asyncio
import copy
import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import LiveServer

DATA = Path(__file__).parent / "data" / "openlineage"
SEED_START = datetime(2026, 3, 1, 2, 0, tzinfo=UTC)


def load(name: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = json.loads((DATA / name).read_text())
    return events


def seed() -> list[dict[str, Any]]:
    """Marquez's seed, its time placeholders filled the way its seed.sh does."""
    text = (DATA / "marquez-seed.json").read_text()
    text = text.replace("{{RUN_START_TIME}}", SEED_START.isoformat())
    for minutes in range(1, 11):
        end = (SEED_START + timedelta(minutes=minutes)).isoformat()
        text = text.replace(f"{{{{RUN_END_TIME_AFTER_{minutes}_MINUTES}}}}", end)
    events: list[dict[str, Any]] = json.loads(text)
    return events


def remap(events: list[dict[str, Any]], salt: str) -> list[dict[str, Any]]:
    """The same events with every runId (own, parent, root) replaced consistently."""

    def new(run_id: str) -> str:
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{salt}:{run_id}"))

    out = copy.deepcopy(events)
    for event in out:
        run = event["run"]
        run["runId"] = new(run["runId"])
        parent = (run.get("facets") or {}).get("parent")
        if parent:
            parent["run"]["runId"] = new(parent["run"]["runId"])
            if parent.get("root"):
                parent["root"]["run"]["runId"] = new(parent["root"]["run"]["runId"])
    return out


def post_all(client: httpx.Client, events: list[dict[str, Any]]) -> list[int]:
    codes = []
    for event in events:
        response = client.post("/api/v1/lineage", json=event)
        assert response.status_code == 201, response.text
        codes.append(response.status_code)
    return codes


async def post_at_once(url: str, events: list[dict[str, Any]]) -> list[httpx.Response]:
    async with httpx.AsyncClient(base_url=url, timeout=60) as http:
        return list(await asyncio.gather(*(http.post("/api/v1/lineage", json=e) for e in events)))


def children_first(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Events of runs with a parent facet first (each run's own events in order), then the rest."""
    has_parent = [e for e in events if (e["run"].get("facets") or {}).get("parent")]
    return has_parent + [e for e in events if e not in has_parent]


def snapshot(live: LiveServer) -> dict[str, Any]:
    """What Watcher stored, independent of ids and runIds."""
    runs = live.sql(
        "SELECT p.name, e.start_date, e.end_date, e.completed_successfully, e.total_rows,"
        " e.duration_seconds, pp.name AS parent FROM pipeline_execution e"
        " JOIN pipeline p ON p.id = e.pipeline_id"
        " LEFT JOIN pipeline_execution pe ON pe.id = e.parent_id"
        " LEFT JOIN pipeline pp ON pp.id = pe.pipeline_id ORDER BY p.name, e.start_date"
    )
    edges = live.sql(
        "SELECT p.name AS pipeline, s.name AS source, t.name AS target FROM address_lineage l"
        " JOIN pipeline p ON p.id = l.pipeline_id JOIN address s ON s.id = l.source_address_id"
        " JOIN address t ON t.id = l.target_address_id ORDER BY 1, 2, 3"
    )
    return {
        "runs": [tuple(r.values()) for r in runs],
        "edges": [tuple(r.values()) for r in edges],
        "addresses": [r["name"] for r in live.sql("SELECT name FROM address ORDER BY name")],
        "pipelines": [r["name"] for r in live.sql("SELECT name FROM pipeline ORDER BY name")],
        "closure": live.sql("SELECT count(*) AS n FROM pipeline_execution_closure")[0]["n"],
    }


def truncate(live: LiveServer) -> None:
    from tests.conftest import TABLES

    live.sql(f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE")


FILES = ["dbt-ol-1.54-jaffle-run.json", "dbt-ol-1.54-fail-skip.json", "marquez-seed.json"]


def events_of(name: str) -> list[dict[str, Any]]:
    return seed() if name.startswith("marquez") else load(name)


@pytest.mark.parametrize("name", FILES)
def test_real_runs_are_stored_alike_in_any_order(
    live: LiveServer, client: httpx.Client, name: str
) -> None:
    events = events_of(name)
    post_all(client, events)
    expected = snapshot(live)
    assert all(run[2] is not None for run in expected["runs"]), expected["runs"]  # all ended
    for order in (list(reversed(events)), children_first(events)):
        truncate(live)
        post_all(client, order)
        assert snapshot(live) == expected


@pytest.mark.parametrize("name", FILES)
def test_a_whole_dag_fired_at_once_never_deadlocks(live: LiveServer, name: str) -> None:
    """openlineage-python's async transport keeps up to 100 events in flight: all of one
    run's events at once, five times over, each with its own runIds."""
    events = events_of(name)
    with httpx.Client(base_url=live.url, timeout=60) as client:
        post_all(client, events)
    expected = snapshot(live)
    for attempt in range(5):
        truncate(live)
        responses = live_gather(live, remap(events, f"at-once-{attempt}"))
        assert [r.status_code for r in responses] == [201] * len(events), [
            r.text for r in responses if r.status_code != 201
        ]
        assert snapshot(live) == expected


def live_gather(live: LiveServer, events: list[dict[str, Any]]) -> list[httpx.Response]:
    return asyncio.run(post_at_once(live.url, events))


def test_a_skipped_dbt_node_ends_with_zero_duration(live: LiveServer, client: httpx.Client) -> None:
    events = load("dbt-ol-1.54-fail-skip.json")
    skipped = [e for e in events if e["job"]["name"].endswith("after_broken")]
    assert [e["eventType"] for e in skipped] == ["START", "ABORT"]
    assert skipped[0]["eventTime"] == skipped[1]["eventTime"]
    post_all(client, events)
    run = live.sql(
        "SELECT e.* FROM pipeline_execution e JOIN pipeline p ON p.id = e.pipeline_id"
        " WHERE p.name = 'dbt-demo.model.watcher_demo.after_broken'"
    )[0]
    assert run["end_date"] == run["start_date"] and run["duration_seconds"] == 0
    assert run["completed_successfully"] is False
    assert live.sql("SELECT * FROM pipeline_execution WHERE end_date IS NULL") == []


def test_per_statement_child_jobs_fold_into_their_node(
    live: LiveServer, client: httpx.Client
) -> None:
    events = load("dbt-ol-1.54-fail-skip.json")
    post_all(client, events)
    names = [r["name"] for r in live.sql("SELECT name FROM pipeline ORDER BY name")]
    assert not [n for n in names if ".sql." in n], names
    node = live.sql(
        "SELECT e.execution_metadata AS m FROM pipeline_execution e"
        " JOIN pipeline p ON p.id = e.pipeline_id"
        " WHERE p.name = 'dbt-demo.model.watcher_demo.broken_model'"
    )[0]["m"]
    queries = node["openlineage"]["queries"]
    assert [q["job"] for q in queries.values()] == ["model.watcher_demo.broken_model.sql.1"]
    (failed,) = queries.values()
    assert failed["last_event_type"] == "FAIL" and failed["error_message"]


def statement_free(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in events if ".sql." not in e["job"]["name"]]


def test_a_row_count_sent_after_the_end_is_kept(live: LiveServer, client: httpx.Client) -> None:
    # The stg_orders COMPLETE of a real dbt-ol run, its count moved to a RUNNING event that
    # arrives after it (async transports, retries).
    complete = next(
        e
        for e in load("dbt-ol-1.54-jaffle-run.json")
        if e["eventType"] == "COMPLETE" and e["job"]["name"].endswith("stg_orders")
    )
    running = copy.deepcopy(complete)
    running["eventType"] = "RUNNING"
    running["eventTime"] = (
        datetime.fromisoformat(complete["eventTime"]) - timedelta(seconds=1)
    ).isoformat()
    del complete["outputs"][0]["outputFacets"]["outputStatistics"]
    post_all(client, [complete, running])
    run = live.sql("SELECT * FROM pipeline_execution WHERE run_id = :r", r=complete["run"]["runId"])
    assert run[0]["total_rows"] == 3


def edges_of(live: LiveServer, pipeline: str) -> list[tuple[str, str]]:
    found = live.sql(
        "SELECT s.name AS s, t.name AS t FROM address_lineage l"
        " JOIN pipeline p ON p.id = l.pipeline_id JOIN address s ON s.id = l.source_address_id"
        " JOIN address t ON t.id = l.target_address_id WHERE p.name = :p ORDER BY 1, 2",
        p=pipeline,
    )
    return [(r["s"], r["t"]) for r in found]


def test_datasets_seen_only_on_start_become_lineage_whatever_the_order(
    live: LiveServer, client: httpx.Client
) -> None:
    events = [e for e in seed() if e["job"]["name"] == "etl_orders_7_days"]
    assert [e["eventType"] for e in events] == ["START", "COMPLETE"]
    assert not events[1].get("inputs") and events[0]["inputs"]
    post_all(client, list(reversed(events)))
    assert len(edges_of(live, "food_delivery.etl_orders_7_days")) == 4


def test_lineage_follows_the_latest_run(live: LiveServer, client: httpx.Client) -> None:
    events = load("dbt-ol-1.54-jaffle-run.json")
    post_all(client, events)
    pipeline = "dbt-demo.dbtdemo.analytics.watcher_demo.customer_revenue"
    first = edges_of(live, pipeline)
    assert len(first) == 2
    # The next run: the model's ref() changed, stg_customers → raw.customers.
    second = remap(events, "next-run")
    for event in second:
        event["eventTime"] = (
            datetime.fromisoformat(event["eventTime"]) + timedelta(days=1)
        ).isoformat()
        for dataset in event.get("inputs", []):
            if event["job"]["name"].endswith("customer_revenue"):
                dataset["name"] = dataset["name"].replace(
                    "analytics.stg_customers", "raw.customers"
                )
    post_all(client, second)
    now = edges_of(live, pipeline)
    sources = sorted({s.rsplit("/", 1)[1] for s, _ in now})
    assert sources == ["dbtdemo.analytics.stg_orders", "dbtdemo.raw.customers"]
    # A late event of the older run does not bring the old input back.
    post_all(client, [e for e in events if e["job"]["name"].endswith("customer_revenue")])
    assert edges_of(live, pipeline) == now


def test_a_successful_run_that_wrote_an_output_is_a_data_change(
    live: LiveServer, client: httpx.Client
) -> None:
    events = load("dbt-ol-1.54-jaffle-run.json")
    post_all(client, events)
    rows = live.sql(
        "SELECT name, last_target_insert, last_target_update FROM pipeline ORDER BY name"
    )
    written = {r["name"]: r["last_target_update"] for r in rows}
    stg = "dbt-demo.dbtdemo.analytics.watcher_demo.stg_orders"
    complete = next(
        e
        for e in events
        if e["eventType"] == "COMPLETE" and e["job"]["name"].endswith("stg_orders")
    )
    assert written[stg] == datetime.fromisoformat(complete["eventTime"])
    assert written["dbt-demo.watcher_demo_run"] is None  # wrote nothing itself
    # and the freshness check now covers it
    client.patch(
        "/pipeline", json={"name": stg, "freshness_number": 1, "freshness_datepart": "hour"}
    )
    move_clock(live, datetime.fromisoformat(complete["eventTime"]) + timedelta(hours=2))
    findings = client.post("/freshness").json()["findings"]
    assert [f["pipeline_name"] for f in findings] == [stg]


def test_a_dag_run_that_never_reports_is_not_overdue(
    live: LiveServer, client: httpx.Client
) -> None:
    # The dbt run's own START/FAIL never arrive (an outside scheduler, a lost event).
    events = [
        e for e in load("dbt-ol-1.54-fail-skip.json") if e["job"]["name"] != "watcher_demo_run"
    ]
    post_all(client, events)
    parent = live.sql(
        "SELECT e.* FROM pipeline_execution e JOIN pipeline p ON p.id = e.pipeline_id"
        " WHERE p.name = 'dbt-demo.watcher_demo_run'"
    )[0]
    assert parent["end_date"] is None
    client.patch(
        "/pipeline_type",
        json={"name": "dbt-demo", "timeliness_number": 1, "timeliness_datepart": "minute"},
    )
    move_clock(live, parent["start_date"] + timedelta(hours=1))
    report = client.post("/timeliness", json={"lookback_minutes": 24 * 60}).json()
    assert report["findings"] == [], report


def test_events_marquez_accepts_are_accepted(client: httpx.Client, live: LiveServer) -> None:
    fixtures = json.loads((DATA / "marquez-fixtures.json").read_text())
    for name, event in fixtures.items():
        response = client.post("/api/v1/lineage", json=event)
        assert response.status_code == 201, (name, response.text)
    no_schema = fixtures["event_without_schema_url"]
    assert "schemaURL" not in no_schema
    assert live.sql(
        "SELECT * FROM pipeline_execution WHERE run_id = :r", r=no_schema["run"]["runId"]
    )
    broken = dict(no_schema, run={"runId": "x"})
    response = client.post("/api/v1/lineage", json=broken)
    assert response.status_code == 422 and response.json()["errors"][0]["loc"][-2:] == [
        "run",
        "runId",
    ]


def test_case_sensitive_dataset_names_keep_their_case(
    live: LiveServer, client: httpx.Client
) -> None:
    base = json.loads((DATA / "marquez-fixtures.json").read_text())["event_simple"]
    event = dict(
        base,
        inputs=[
            {"namespace": "s3://lake", "name": "Raw/Orders.csv"},
            {"namespace": "s3://lake", "name": "raw/orders.csv"},
            {"namespace": "bigquery", "name": "Proj.Sales.Orders"},
        ],
        outputs=[{"namespace": "postgres://db:5432", "name": "Shop.Public.Orders"}],
    )
    assert client.post("/api/v1/lineage", json=event).status_code == 201
    found = {
        r["name"]: (r["database_name"], r["schema_name"], r["table_name"])
        for r in live.sql("SELECT * FROM address")
    }
    assert found == {
        "s3://lake/Raw/Orders.csv": (None, None, None),
        "s3://lake/raw/orders.csv": (None, None, None),
        "bigquery://Proj.Sales.Orders": ("Proj", "Sales", "Orders"),
        "postgres://db:5432/shop.public.orders": ("shop", "public", "orders"),
    }


def test_a_naive_end_west_of_utc_does_not_lose_the_end(
    live: LiveServer, client: httpx.Client
) -> None:
    # dbt-ol's fallback eventTime is datetime.now().isoformat(): local time, no zone. At
    # UTC-5 the COMPLETE reads five hours before its START.
    events = load("dbt-ol-1.54-jaffle-run.json")
    start = next(
        e for e in events if e["eventType"] == "START" and "stg_orders" in e["job"]["name"]
    )
    complete = next(
        e for e in events if e["eventType"] == "COMPLETE" and "stg_orders" in e["job"]["name"]
    )
    local = datetime.fromisoformat(complete["eventTime"]).astimezone(
        __import__("datetime").timezone(timedelta(hours=-5))
    )
    complete = dict(complete, eventTime=local.replace(tzinfo=None).isoformat())
    post_all(client, [start, complete])
    run = live.sql("SELECT * FROM pipeline_execution WHERE run_id = :r", r=start["run"]["runId"])[0]
    assert run["completed_successfully"] is True and run["end_date"] == run["start_date"]
    ol = run["execution_metadata"]["openlineage"]
    assert ol["reported_end_time"] == complete["eventTime"] and ol["end_adjusted"] is True


def move_clock(live: LiveServer, at: datetime) -> None:
    live.clock.advance(at - live.clock.now())


@pytest.mark.parametrize("name", FILES)
def test_several_runs_of_one_dag_fired_at_once_never_deadlock(live: LiveServer, name: str) -> None:
    """Backfills and retries: five runs of the same jobs, all their events in flight at once."""
    events = [e for i in range(5) for e in remap(events_of(name), f"many-{i}")]
    responses = live_gather(live, events)
    assert [r.status_code for r in responses] == [201] * len(events), {
        r.text for r in responses if r.status_code != 201
    }
    assert live.sql("SELECT count(*) AS n FROM pipeline_execution WHERE end_date IS NULL") == [
        {"n": 0}
    ]
