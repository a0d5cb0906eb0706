"""Incidents over the real database and HTTP: the pipeline graph routes, the job placing the
checks' problems into incidents (item 0's silent cases included), the incident routes and
the series Prometheus alerts on."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from tests.check_helpers import make_pipeline, run, start
from tests.conftest import LiveServer
from tests.factories import address
from watcher.incidents import routes
from watcher.incidents.metrics import IncidentCollector

MINUTE = timedelta(minutes=1)


def now() -> datetime:
    return datetime.now(UTC)


def lineage(client: httpx.Client, pid: int, sources: Iterable[str], targets: Iterable[str]) -> None:
    r = client.post(
        "/address_lineage",
        json={
            "pipeline_id": pid,
            "source_addresses": [address(s) for s in sources],
            "target_addresses": [address(t) for t in targets],
        },
    )
    assert r.status_code == 201, r.text  # the original Watcher answers 201


def chain(client: httpx.Client, names: str = "abcd", **rules: Any) -> dict[str, int]:
    """a reads src and writes t_a; b reads t_a and writes t_b; … (a → b → c → d)."""
    ids = {n: make_pipeline(client, n, **rules) for n in names}
    previous = "src"
    for n in names:
        lineage(client, ids[n], [previous], [f"t_{n}"])
        previous = f"t_{n}"
    return ids


def evaluate(client: httpx.Client) -> dict[str, Any]:
    r = client.post("/incidents/evaluate")
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def incidents(client: httpx.Client) -> list[dict[str, Any]]:
    r = client.get("/incidents")
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def open_incidents(client: httpx.Client) -> list[dict[str, Any]]:
    return [i for i in incidents(client) if i["status"] == "open"]


# --- the graph -----------------------------------------------------------------------------


def test_upstream_and_downstream_follow_lineage_with_depth(client: httpx.Client) -> None:
    ids = chain(client)
    e = make_pipeline(client, "e")
    lineage(client, e, ["elsewhere"], ["t_e"])
    down = client.get(f"/pipeline/{ids['a']}/downstream").json()["downstream"]
    assert [(p["pipeline"], p["depth"]) for p in down] == [("b", 1), ("c", 2), ("d", 3)]
    up = client.get(f"/pipeline/{ids['d']}/upstream", params={"depth": 2}).json()["upstream"]
    assert [(p["pipeline"], p["depth"]) for p in up] == [("c", 1), ("b", 2)]
    assert client.get(f"/pipeline/{e}/upstream").json()["upstream"] == []


def test_the_graph_changes_with_lineage_and_nested_executions(
    client: httpx.Client, live: LiveServer
) -> None:
    ids = chain(client, "abc")
    lineage(client, ids["b"], ["other"], ["t_b"])  # b no longer reads a's target
    down = client.get(f"/pipeline/{ids['a']}/downstream").json()["downstream"]
    assert down == []
    parent = start(client, ids["a"], now())
    r = client.post(
        "/start_pipeline_execution",
        json={"pipeline_id": ids["c"], "parent_id": parent, "start_date": now().isoformat()},
    )
    assert r.status_code == 201, r.text
    down = client.get(f"/pipeline/{ids['a']}/downstream").json()["downstream"]
    assert [(p["pipeline"], p["depth"]) for p in down] == [("c", 1)]
    assert live.sql("SELECT count(*) AS n FROM pipeline_nesting")[0]["n"] == 1


def test_graph_routes_answer_404_and_422(client: httpx.Client) -> None:
    pid = make_pipeline(client, "a")
    assert client.get("/pipeline/999999/upstream").status_code == 404
    assert client.get("/pipeline/999999/downstream").status_code == 404
    bad = client.get(f"/pipeline/{pid}/downstream", params={"depth": 0})
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["loc"] == ["query", "depth"]
    assert client.get(f"/pipeline/{pid}/upstream", params={"depth": "x"}).status_code == 422


# --- item 0: the silent cases ----------------------------------------------------------------


def test_a_run_failing_after_a_newer_overlapping_success_opens_an_incident(
    client: httpx.Client,
) -> None:
    """The gauge reads the latest run by start (it succeeded): the failed older run that
    ended after it is what happened last, and it must alert."""
    pid = make_pipeline(client, "backfill")
    t = now() - 30 * MINUTE
    older = start(client, pid, t)
    run(client, pid, t + 5 * MINUTE, t + 10 * MINUTE)  # newer, succeeded first
    r = client.post(
        "/end_pipeline_execution",
        json={
            "id": older,
            "end_date": (t + 20 * MINUTE).isoformat(),
            "completed_successfully": False,
        },
    )
    assert r.status_code == 204, r.text
    evaluate(client)
    [incident] = open_incidents(client)
    assert incident["root_pipeline"] == "backfill"
    assert [(p["kind"], p["detail"]) for p in incident["problems"]] == [
        ("failed", f"execution {older} failed")
    ]
    run(client, pid, t + 21 * MINUTE, t + 22 * MINUTE)  # a later success clears it
    evaluate(client)
    assert open_incidents(client) == []
    assert incidents(client)[0]["status"] == "resolved"


def test_an_older_run_completing_late_after_a_newer_short_one_opens_an_incident(
    client: httpx.Client,
) -> None:
    pid = make_pipeline(client, "slow", timeliness_number=10, timeliness_datepart="minute")
    t = now() - 60 * MINUTE
    older = start(client, pid, t)
    run(client, pid, t + 5 * MINUTE, t + 6 * MINUTE)  # newer and short
    r = client.post(
        "/end_pipeline_execution",
        json={
            "id": older,
            "end_date": (t + 30 * MINUTE).isoformat(),
            "completed_successfully": True,
        },
    )
    assert r.status_code == 204, r.text
    found = client.post("/timeliness", json={"lookback_minutes": 120}).json()["findings"]
    assert [f["pipeline_execution_id"] for f in found] == [older]  # the check logged it…
    evaluate(client)  # …and now it is an incident (it used to reach no alert)
    [incident] = open_incidents(client)
    assert incident["problems"][0]["kind"] == "overdue"
    assert incident["started_at"].startswith((t + 10 * MINUTE).isoformat()[:16])


# --- incidents -----------------------------------------------------------------------------


def _stale(live: LiveServer, pids: Iterable[int], at: datetime) -> None:
    for pid in pids:
        live.sql("UPDATE pipeline SET last_target_insert = :at WHERE id = :id", at=at, id=pid)


def test_a_failure_and_its_stale_downstream_are_one_incident(
    client: httpx.Client, live: LiveServer
) -> None:
    ids = chain(client, freshness_number=30, freshness_datepart="minute")
    e = make_pipeline(client, "e")
    lineage(client, e, ["elsewhere"], ["t_e"])
    t = now() - 20 * MINUTE
    _stale(live, ids.values(), t)
    run(client, ids["a"], t + MINUTE, t + 2 * MINUTE, ok=False)
    evaluate(client)
    [a] = open_incidents(client)
    assert a["root_pipeline"] == "a" and a["impacted_count"] == 0
    live.clock.advance(15 * MINUTE)  # b, c, d pass their 30-minute freshness rule
    report = evaluate(client)
    # b, c, d as impact, and a's own staleness as another root problem
    assert report["changes"] == {"attached": 4} and report["open_incidents"] == 1
    [a] = open_incidents(client)
    assert [(p["pipeline"], p["depth"], p["problems"]) for p in a["impacted_pipelines"]] == [
        ("b", 1, ["stale"]),
        ("c", 2, ["stale"]),
        ("d", 3, ["stale"]),
    ]
    assert [(x["address"], x["depth"]) for x in a["impacted_addresses"]] == [
        ("t_a", 0),
        ("t_b", 1),
        ("t_c", 2),
        ("t_d", 3),
    ]
    assert "impact: 3 pipelines (b, c, d)" in a["summary"]
    # e fails meanwhile: its own incident
    run(client, e, now() - MINUTE, now(), ok=False)
    evaluate(client)
    assert sorted(i["root_pipeline"] for i in open_incidents(client)) == ["a", "e"]
    assert evaluate(client)["changes"] == {}  # idempotent

    collector = IncidentCollector()
    live.run(lambda: routes.refresh_series(live.services, collector))
    samples = {
        (m.name, tuple(sorted(s.labels.items()))): s.value
        for m in collector.collect()
        for s in m.samples
    }
    a_id = str(a["id"])
    assert (
        samples[
            (
                "watcher_incident_open",
                (("incident_id", a_id), ("problem", "failed"), ("root_pipeline", "a")),
            )
        ]
        == 1
    )
    assert (
        samples[
            ("watcher_incident_impacted_pipelines", (("incident_id", a_id), ("root_pipeline", "a")))
        ]
        == 3
    )
    impacted = sorted(
        dict(labels)["pipeline"]
        for name, labels in samples
        if name == "watcher_pipeline_impacted_by" and dict(labels)["root_pipeline"] == "a"
    )
    assert impacted == ["b", "c", "d"]

    # a recovers: its incident resolves, b and c refresh, d stays stale → pending, then promoted
    at = live.clock.now()
    run(client, ids["a"], at - MINUTE, at)
    _stale(live, [ids["a"], ids["b"], ids["c"]], at)
    evaluate(client)
    assert sorted(i["root_pipeline"] for i in open_incidents(client)) == ["e"]
    assert [r["pipeline_id"] for r in live.sql("SELECT pipeline_id FROM incident_pending")] == [
        ids["d"]
    ]
    live.run(lambda: routes.refresh_series(live.services, collector))
    [pending] = collector.current.impacted_by
    assert pending == ("d", "a", a_id, "pending")
    live.clock.advance(16 * MINUTE)
    report = evaluate(client)
    assert report["changes"].get("promoted") == 1
    roots = sorted(i["root_pipeline"] for i in open_incidents(client))
    assert roots == ["d", "e"]


def test_acknowledging_an_incident(client: httpx.Client) -> None:
    pid = make_pipeline(client, "a")
    run(client, pid, now() - MINUTE, now(), ok=False)
    evaluate(client)
    [incident] = open_incidents(client)
    url = f"/incidents/{incident['id']}/acknowledge"
    r = client.post(url, json={"by": "alice"})
    assert r.status_code == 200, r.text
    assert r.json()["acknowledged_by"] == "alice" and r.json()["acknowledged_at"]
    again = client.post(url, json={"by": "bob"})
    assert again.status_code == 409 and "alice" in again.json()["detail"]
    evaluate(client)  # the job keeps the acknowledgement
    assert client.get(f"/incidents/{incident['id']}").json()["acknowledged_by"] == "alice"
    assert client.post("/incidents/99999/acknowledge", json={"by": "x"}).status_code == 404
    assert client.get("/incidents/99999").status_code == 404
    no_one = client.post(url, json={"by": ""})
    assert no_one.status_code == 422 and no_one.json()["errors"][0]["loc"] == ["body", "by"]
    assert client.get("/incidents", params={"limit": 0}).status_code == 422
