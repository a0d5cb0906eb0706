from __future__ import annotations

import asyncio
import logging
import math
import random
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import numpy as np
import orjson
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from tests.check_helpers import make_pipeline, run
from tests.conftest import LiveServer, start_live_server
from tests.conftest import test_settings as settings_for
from watcher.checks import anomalies
from watcher.checks.anomalies import baselines
from watcher.checks.anomalies.detector import Detector, catch_up
from watcher.checks.anomalies.evaluation import evaluate_now
from watcher.checks.statistics import evaluate
from watcher.db.embedded import EmbeddedPostgres
from watcher.db.schema import ANOMALY_METRICS

# --- the statistic against numpy -------------------------------------------------------------


def numpy_reference(
    value: float, baseline: list[float], z: float, minimum: int
) -> dict[str, Any] | None:
    data = np.asarray(baseline, dtype=float)
    if len(data) < minimum or len(data) < 2:
        return None
    mean, sd = float(np.mean(data)), float(np.std(data, ddof=1))
    if sd == 0:
        return None
    lower, upper = max(0.0, mean - z * sd), mean + z * sd
    return {
        "z": (value - mean) / sd,
        "mean": mean,
        "sd": sd,
        "lower": lower,
        "upper": upper,
        "anomaly": bool(value < lower or value > upper),
    }


def history(rng: random.Random) -> list[float]:
    n = rng.randint(1, 80)
    kind = rng.choice(["normal", "counts", "constant", "skewed"])
    if kind == "normal":
        return [max(0.0, rng.gauss(1000, 150)) for _ in range(n)]
    if kind == "counts":
        return [float(rng.randint(0, 50)) for _ in range(n)]
    if kind == "constant":
        return [float(rng.randint(0, 9))] * n
    return [rng.expovariate(1 / 30) for _ in range(n)]


@pytest.mark.parametrize("seed", range(300))
def test_statistics_equal_numpy_on_generated_histories(seed: int) -> None:
    rng = random.Random(seed)
    baseline = history(rng)
    z_threshold = rng.choice([1.0, 2.0, 2.5, 3.0, rng.uniform(1, 10)])
    minimum = rng.randint(5, 40)
    value = rng.choice([*baseline, 0.0, max(baseline) * rng.uniform(1, 5), rng.uniform(0, 2000)])
    got = evaluate(value, baseline, z_threshold=z_threshold, minimum_executions=minimum)
    want = numpy_reference(value, baseline, z_threshold, minimum)
    if want is None:
        assert got is None
        return
    assert got is not None
    assert got.baseline_count == len(baseline)
    assert got.mean == pytest.approx(want["mean"], rel=1e-12, abs=1e-9)
    assert got.sd == pytest.approx(want["sd"], rel=1e-9)
    assert got.z_score == pytest.approx(want["z"], rel=1e-9, abs=1e-9)
    assert got.lower == pytest.approx(want["lower"], rel=1e-9, abs=1e-9)
    assert got.upper == pytest.approx(want["upper"], rel=1e-9)
    if abs(value - want["lower"]) > 1e-6 and abs(value - want["upper"]) > 1e-6:
        assert got.is_anomaly == want["anomaly"]


def test_the_lower_bound_is_floored_at_zero_and_zero_is_not_anomalous() -> None:
    got = evaluate(0.0, [1.0, 2.0, 30.0, 4.0, 5.0], z_threshold=3, minimum_executions=5)
    assert got is not None and got.lower == 0.0 and got.is_anomaly is False


# --- evaluation against the database ---------------------------------------------------------

NOW = datetime.now(UTC)
START = (NOW - timedelta(hours=1)).replace(minute=0, second=0, microsecond=0)


def seed_history(
    live: LiveServer,
    pipeline_id: int,
    values: list[float],
    *,
    hour_offset: int = 0,
    flags: dict[int, dict[str, bool]] | None = None,
) -> list[int]:
    """Successful, already-evaluated executions one per day before START, at the same hour."""
    ids = []
    for day, value in enumerate(values, start=1):
        started = START - timedelta(days=day) + timedelta(hours=hour_offset)
        flag = (flags or {}).get(day - 1)
        rows = live.sql(
            "INSERT INTO pipeline_execution (pipeline_id, start_date, end_date,"
            " completed_successfully, duration_seconds, total_rows, inserts, hour_recorded,"
            " date_recorded, anomaly_checked_at, anomaly_flags) VALUES (:p, :s, :e, true, 600,"
            " :v, :v, :h, :d, :s, CAST(:f AS jsonb)) RETURNING id",
            p=pipeline_id,
            s=started,
            e=started + timedelta(minutes=10),
            v=int(value),
            h=started.hour,
            d=started.date(),
            f=orjson.dumps(flag).decode() if flag else None,
        )
        ids.append(rows[0]["id"])
    resync(live)
    return ids


def resync(live: LiveServer) -> None:
    """Rows written behind Watcher's back (evaluated, or un-evaluated again): recompute the
    day summaries the evaluation reads, as a migration's backfill would."""
    live.in_transaction(baselines.rebuild_all)


def make_rule(client: httpx.Client, pipeline_id: int, metric: str = "total_rows", **kw: Any) -> int:
    r = client.post(
        "/anomaly_detection_rule",
        json={"pipeline_id": pipeline_id, "metric_field": metric, "minimum_executions": 5, **kw},
    )
    assert r.status_code in (200, 201), r.text
    return int(r.json()["id"])


def drain(live: LiveServer) -> None:
    detector: Detector = live.services.detector
    live.run(detector.drain)


def results(live: LiveServer, execution_id: int) -> list[dict[str, Any]]:
    return live.sql(
        "SELECT x.*, r.metric_field FROM anomaly_detection_result x"
        " JOIN anomaly_detection_rule r ON r.id = x.rule_id"
        " WHERE pipeline_execution_id = :id ORDER BY r.metric_field",
        id=execution_id,
    )


def test_a_successful_end_is_evaluated_in_the_background_like_numpy_says(
    client: httpx.Client, live: LiveServer
) -> None:
    pid = make_pipeline(client, "p")
    make_rule(client, pid, z_threshold=2.0)
    rng = random.Random(7)
    values = [float(rng.randint(900, 1100)) for _ in range(25)]
    seed_history(live, pid, values)
    seed_history(live, pid, [10**6] * 5, hour_offset=1)  # another hour: not in the baseline
    eid = run(client, pid, START, START + timedelta(minutes=10), total_rows=5000, inserts=1)
    drain(live)
    [result] = results(live, eid)
    want = numpy_reference(5000, values, 2.0, 5)
    assert want is not None and want["anomaly"]
    assert result["baseline_count"] == 25 and result["is_anomaly"] is True
    assert result["historical_mean"] == pytest.approx(want["mean"])
    assert result["std_deviation_value"] == pytest.approx(want["sd"])
    assert result["z_score"] == pytest.approx(want["z"])
    assert result["threshold_min_value"] == pytest.approx(want["lower"])
    assert result["threshold_max_value"] == pytest.approx(want["upper"])
    execution = live.sql("SELECT * FROM pipeline_execution WHERE id = :id", id=eid)[0]
    assert execution["anomaly_flags"] == {"total_rows": True}
    assert execution["anomaly_checked_at"] is not None


def test_flagged_executions_leave_the_baseline_until_unflagged(
    client: httpx.Client, live: LiveServer
) -> None:
    pid = make_pipeline(client, "p")
    make_rule(client, pid)
    values = [100.0, 110.0, 90.0, 105.0, 95.0, 100.0, 5000.0]
    ids = seed_history(live, pid, values, flags={6: {"total_rows": True}})
    eid = run(client, pid, START, START + timedelta(minutes=10), total_rows=101)
    drain(live)
    [first] = results(live, eid)
    assert first["baseline_count"] == 6 and first["is_anomaly"] is False
    r = client.post(
        "/unflag_anomaly",
        json={"pipeline_id": pid, "pipeline_execution_id": ids[6], "metric_field": ["total_rows"]},
    )
    assert r.status_code == 204, r.text
    assert live.sql("SELECT anomaly_flags FROM pipeline_execution WHERE id = :i", i=ids[6]) == [
        {"anomaly_flags": {}}
    ]
    later = START + timedelta(minutes=20)
    eid2 = run(client, pid, later, later + timedelta(minutes=10), total_rows=101)
    drain(live)
    [second] = results(live, eid2)
    assert second["baseline_count"] == 8  # the unflagged one and the first execution count
    r = client.post(
        "/unflag_anomaly", json={"pipeline_execution_id": 10**9, "metric_field": ["inserts"]}
    )
    assert r.status_code == 404


def test_too_small_or_flat_baselines_and_null_values_are_skipped(
    client: httpx.Client, live: LiveServer
) -> None:
    pid = make_pipeline(client, "p")
    make_rule(client, pid, "total_rows")
    make_rule(client, pid, "inserts")
    make_rule(client, pid, "updates")
    seed_history(live, pid, [100.0] * 10)  # flat for total_rows and inserts; updates null
    eid = run(client, pid, START, START + timedelta(minutes=10), total_rows=1, inserts=1, updates=1)
    drain(live)
    assert results(live, eid) == []
    pid2 = make_pipeline(client, "q")
    make_rule(client, pid2, minimum_executions=10)
    seed_history(live, pid2, [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0])
    eid2 = run(client, pid2, START, START + timedelta(minutes=10), total_rows=50)
    drain(live)
    assert results(live, eid2) == []


def test_the_catch_up_evaluates_an_execution_whose_detection_was_lost(
    client: httpx.Client, live: LiveServer
) -> None:
    pid = make_pipeline(client, "p")
    make_rule(client, pid)
    make_rule(client, pid, "duration_seconds")
    seed_history(live, pid, [10.0, 20.0, 30.0, 40.0, 50.0, 60.0])
    # A crash between the end's commit and the evaluation: ended, never evaluated.
    [lost] = seed_history(live, pid, [999.0], hour_offset=24)  # at START
    live.sql("UPDATE pipeline_execution SET anomaly_checked_at = NULL WHERE id = :i", i=lost)
    resync(live)
    assert live.run(lambda: catch_up(live.services)) == 1
    assert {r["metric_field"] for r in results(live, lost)} == {"total_rows"}  # duration flat
    checked = live.sql("SELECT anomaly_checked_at FROM pipeline_execution WHERE id = :i", i=lost)
    assert checked[0]["anomaly_checked_at"] is not None
    assert live.run(lambda: catch_up(live.services)) == 0
    assert len(results(live, lost)) == 1


def test_evaluating_twice_at_once_writes_one_result_per_rule(
    client: httpx.Client, live: LiveServer
) -> None:
    pid = make_pipeline(client, "p")
    for metric in ("total_rows", "inserts"):
        make_rule(client, pid, metric)
    seed_history(live, pid, [10.0, 20.0, 30.0, 40.0, 50.0, 60.0])
    [eid] = seed_history(live, pid, [35.0], hour_offset=24)
    live.sql("UPDATE pipeline_execution SET anomaly_checked_at = NULL WHERE id = :i", i=eid)
    resync(live)

    async def twice() -> list[int | None]:
        return list(
            await asyncio.gather(evaluate_now(live.services, eid), evaluate_now(live.services, eid))
        )

    outcomes = live.run(twice)
    assert sorted(outcomes, key=lambda o: o is None) == [2, None]
    r = client.post(f"/anomaly_detection/detect/{pid}")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["pipeline_execution_id"] == eid and body["new_results"] == 0
    assert len(body["results"]) == 2 and len(results(live, eid)) == 2


def test_detect_evaluates_rules_added_after_the_end(client: httpx.Client, live: LiveServer) -> None:
    pid = make_pipeline(client, "p")
    seed_history(live, pid, [10.0, 20.0, 30.0, 40.0, 50.0, 60.0])
    eid = run(client, pid, START, START + timedelta(minutes=10), total_rows=500)
    drain(live)
    assert results(live, eid) == []
    make_rule(client, pid, z_threshold=1.5)
    body = client.post(f"/anomaly_detection/detect/{pid}").json()
    assert body["new_results"] == 1 and body["anomalies"] == 1
    assert body["results"][0]["metric_field"] == "total_rows"
    assert client.post("/anomaly_detection/detect/999999").status_code == 404


def test_rules_are_created_once_listed_read_and_patched(
    client: httpx.Client, live: LiveServer
) -> None:
    pid = make_pipeline(client, "p")
    other = make_pipeline(client, "q")
    body = {"pipeline_id": pid, "metric_field": "Throughput", "z_threshold": 2.5}
    first = client.post("/anomaly_detection_rule", json=body)
    assert first.status_code == 201, first.text
    rule = first.json()
    assert rule["metric_field"] == "throughput" and rule["lookback_days"] == 30
    again = client.post("/anomaly_detection_rule", json=body)
    assert again.status_code == 200 and again.json()["id"] == rule["id"]
    make_rule(client, other)
    listed = client.get("/anomaly_detection_rule", params={"pipeline_id": pid}).json()
    assert [r["id"] for r in listed] == [rule["id"]]
    assert len(client.get("/anomaly_detection_rule").json()) == 2
    assert client.get(f"/anomaly_detection_rule/{rule['id']}").json() == rule
    assert client.get("/anomaly_detection_rule/999999").status_code == 404
    live.clock.advance(timedelta(hours=1))
    patched = client.patch(
        "/anomaly_detection_rule", json={"id": rule["id"], "active": False, "lookback_days": 7}
    ).json()
    assert patched["active"] is False and patched["lookback_days"] == 7
    assert patched["z_threshold"] == 2.5
    assert datetime.fromisoformat(patched["updated_at"]) > datetime.fromisoformat(
        rule["updated_at"]
    ) + timedelta(minutes=59)


@pytest.mark.parametrize(
    "body",
    [
        {"metric_field": "rows"},
        {"metric_field": "inserts", "z_threshold": 0.5},
        {"metric_field": "inserts", "lookback_days": 366},
        {"metric_field": "inserts", "minimum_executions": 4},
    ],
)
def test_invalid_rules_are_refused(client: httpx.Client, body: dict[str, Any]) -> None:
    pid = make_pipeline(client, "p")
    assert (
        client.post("/anomaly_detection_rule", json={"pipeline_id": pid, **body}).status_code == 422
    )


def test_a_rule_for_an_unknown_pipeline_is_not_found(client: httpx.Client) -> None:
    r = client.post(
        "/anomaly_detection_rule", json={"pipeline_id": 424242, "metric_field": "inserts"}
    )
    assert r.status_code == 404


def test_auto_created_rules(postgres: EmbeddedPostgres, live: LiveServer) -> None:
    server = start_live_server(postgres.url, settings_for(auto_create_anomaly_detection_rules=True))
    try:
        with httpx.Client(base_url=server.url) as http:
            pid = make_pipeline(http, "auto")
            rules = http.get("/anomaly_detection_rule", params={"pipeline_id": pid}).json()
    finally:
        server.stop()
    assert sorted(r["metric_field"] for r in rules) == sorted(ANOMALY_METRICS)
    assert {(r["z_threshold"], r["lookback_days"], r["minimum_executions"]) for r in rules} == {
        (3.0, 30, 30)
    }


def test_the_end_request_does_not_wait_for_detection(
    client: httpx.Client, live: LiveServer
) -> None:
    """Detection blocked on a locked rule table must not hold up the end; it finishes later."""
    pid = make_pipeline(client, "p")
    make_rule(client, pid)
    seed_history(live, pid, [10.0, 20.0, 30.0, 40.0, 50.0, 60.0])
    eid = client.post(
        "/start_pipeline_execution", json={"pipeline_id": pid, "start_date": START.isoformat()}
    ).json()["id"]

    async def lock() -> AsyncConnection:
        conn = await live.services.engine.connect()
        await conn.begin()
        await conn.execute(text("LOCK TABLE anomaly_detection_rule IN ACCESS EXCLUSIVE MODE"))
        return conn

    held = live.run(lock)
    try:
        r = client.post(
            "/end_pipeline_execution",
            json={
                "id": eid,
                "end_date": (START + timedelta(minutes=10)).isoformat(),
                "completed_successfully": True,
                "total_rows": 35,
            },
            timeout=5,
        )
        assert r.status_code == 204
        assert live.services.detector.busy  # still waiting on the lock
    finally:

        async def release() -> None:
            await held.rollback()
            await held.close()

        live.run(release)
    drain(live)
    assert len(results(live, eid)) == 1


def test_a_burst_of_concurrent_ends_is_all_evaluated(
    client: httpx.Client, live: LiveServer
) -> None:
    """60 ends at once, one per (pipeline, hour) so that no baseline depends on the order in
    which the others arrive; every one evaluated against its own history."""
    pids = [make_pipeline(client, f"p{i}") for i in range(3)]
    for pid in pids:
        make_rule(client, pid)
        for hour in range(20):
            seed_history(live, pid, [10.0, 20.0, 30.0, 40.0, 50.0, 60.0], hour_offset=-hour)

    def one(i: int) -> int:
        with httpx.Client(base_url=str(client.base_url), headers=client.headers) as c:
            at = START - timedelta(hours=i // 3)
            rows = 999 if i % 5 == 0 else 35
            return run(c, pids[i % 3], at, at + timedelta(minutes=1), total_rows=rows)

    with ThreadPoolExecutor(16) as pool:
        ids = list(pool.map(one, range(60)))
    drain(live)
    outcomes = [[(r["baseline_count"], r["is_anomaly"]) for r in results(live, eid)] for eid in ids]
    assert outcomes == [[(6, i % 5 == 0)] for i in range(60)]


def test_ends_beyond_the_queue_are_left_to_the_catch_up_and_logged_once(
    client: httpx.Client, live: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    pid = make_pipeline(client, "p")
    make_rule(client, pid)
    seed_history(live, pid, [10.0, 20.0, 30.0, 40.0, 50.0, 60.0])
    monkeypatch.setattr(anomalies.detector, "MAX_PENDING", 0)
    detector: Detector = live.services.detector
    detector._deferred_logged_at = -math.inf
    before = detector.deferred
    records: list[logging.LogRecord] = []
    handler = _Recorder(records)
    logging.getLogger("watcher.checks.anomalies").addHandler(handler)
    try:
        ids = [
            run(
                client,
                pid,
                START + timedelta(seconds=i),
                START + timedelta(minutes=1),
                total_rows=35,
            )
            for i in range(5)
        ]
    finally:
        logging.getLogger("watcher.checks.anomalies").removeHandler(handler)
    drain(live)
    assert detector.deferred - before == 5
    assert [r.getMessage() for r in records] == ["anomaly detection deferred to catch-up"]
    assert all(results(live, eid) == [] for eid in ids)
    assert live.run(lambda: catch_up(live.services)) == 5
    assert all(len(results(live, eid)) == 1 for eid in ids)


# --- the summaries PostgreSQL computes --------------------------------------------------------


def insert_executions(live: LiveServer, pipeline_id: int, rows: list[dict[str, Any]]) -> list[int]:
    """Ended executions as given (end = start + 10 minutes); unchecked unless `checked`."""
    ids = []
    for row in rows:
        started = row["start"]
        ids.append(
            live.sql(
                "INSERT INTO pipeline_execution (pipeline_id, start_date, end_date,"
                " completed_successfully, duration_seconds, inserts, total_rows, hour_recorded,"
                " date_recorded, anomaly_checked_at, anomaly_flags) VALUES (:p, :s, :e, :ok,"
                " :dur, :ins, :tot, :h, :d, :checked, CAST(:f AS jsonb)) RETURNING id",
                p=pipeline_id,
                s=started,
                e=started + timedelta(minutes=10),
                ok=row.get("ok", True),
                dur=row.get("duration_seconds"),
                ins=row.get("inserts"),
                tot=row.get("total_rows"),
                h=started.hour,
                d=started.date(),
                checked=started if row.get("checked", True) else None,
                f=orjson.dumps(row["flags"]).decode() if row.get("flags") else None,
            )[0]["id"]
        )
    resync(live)
    return ids


def random_history(rng: random.Random) -> list[dict[str, Any]]:
    """60 days at START's hour (nulls, flags, failures) and noise at another hour."""
    rows = []
    for day in range(1, 61):
        flags = {m: True for m in ("duration_seconds", "inserts") if rng.random() < 0.1}
        rows.append(
            {
                "start": START - timedelta(days=day) + timedelta(minutes=rng.randint(0, 40)),
                "ok": rng.random() > 0.1,
                "duration_seconds": rng.lognormvariate(5, 1) if rng.random() > 0.05 else None,
                "inserts": rng.randint(0, 10**6) if rng.random() > 0.1 else None,
                "flags": flags,
            }
        )
        rows.append({"start": START - timedelta(days=day, hours=3), "duration_seconds": 1e9})
    return rows


@pytest.mark.parametrize("seed", range(3))
def test_the_summarised_baseline_equals_numpy_over_the_rows_each_rule_keeps(
    client: httpx.Client, live: LiveServer, seed: int
) -> None:
    rng = random.Random(seed)
    pid = make_pipeline(client, f"p{seed}")
    lookback = {"duration_seconds": 10, "inserts": 45}
    for metric, days in lookback.items():
        make_rule(client, pid, metric, lookback_days=days, z_threshold=2.0)
    history = random_history(rng)
    insert_executions(live, pid, history)
    value = {"duration_seconds": 200.0, "inserts": 500_000}
    [eid] = insert_executions(live, pid, [{"start": START, "checked": False, **value}])
    assert live.run(lambda: catch_up(live.services)) == 1
    got = {r["metric_field"]: r for r in results(live, eid)}
    end = START + timedelta(minutes=10)
    for metric, days in lookback.items():
        kept = [
            float(r[metric])
            for r in history
            if r["start"].hour == START.hour
            and r.get("ok", True)
            and r["start"] + timedelta(minutes=10) >= end - timedelta(days=days)
            and r.get(metric) is not None
            and metric not in r.get("flags", {})
        ]
        want = numpy_reference(value[metric], kept, 2.0, 5)
        assert want is not None
        result = got[metric]
        assert result["baseline_count"] == len(kept)
        assert result["historical_mean"] == pytest.approx(want["mean"], rel=1e-9)
        assert result["std_deviation_value"] == pytest.approx(want["sd"], rel=1e-9)
        assert result["z_score"] == pytest.approx(want["z"], rel=1e-9, abs=1e-9)
        assert result["is_anomaly"] is want["anomaly"]


def test_a_batch_decides_exactly_as_one_by_one(
    client: httpx.Client, live: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Same history and the same lost executions (spikes among them) for two pipelines: one
    evaluated in one batch, the other one execution per batch."""
    rng = random.Random(11)
    history = [
        {"start": START - timedelta(days=d), "total_rows": rng.randint(90, 110)}
        for d in range(20, 40)
    ]
    lost = [
        {
            "start": START - timedelta(days=d) + timedelta(minutes=m),
            "total_rows": rng.choice([100, 105, 5000, 9000]),
            "checked": False,
        }
        for d in range(0, 19, 2)
        for m in (0, 0, 7)  # same end twice: (end_date, id) order decides
    ]
    outcomes = []
    for name, batch in (("batched", 500), ("one by one", 1)):
        monkeypatch.setattr(anomalies.detector, "CATCHUP_BATCH", batch)
        pid = make_pipeline(client, name)
        make_rule(client, pid, minimum_executions=5, z_threshold=2.0)
        insert_executions(live, pid, history)
        ids = insert_executions(live, pid, lost)
        assert live.run(lambda: catch_up(live.services)) == len(lost)
        outcomes.append(
            [
                [
                    (r["is_anomaly"], r["baseline_count"], round(r["historical_mean"], 9))
                    for r in results(live, eid)
                ]
                for eid in ids
            ]
        )
    assert outcomes[0] == outcomes[1]
    assert any(o == [] or o[0][0] for o in outcomes[0])  # spikes were found
    assert len({o[0][1] for o in outcomes[0] if o}) > 1  # baselines differ per execution


# --- the catch-up's batches ---------------------------------------------------------------


def lose(live: LiveServer, pipeline_id: int, values: list[float], hour_offset: int) -> list[int]:
    """Ended executions whose detection was lost (anomaly_checked_at still null)."""
    ids = seed_history(live, pipeline_id, values, hour_offset=hour_offset)
    live.sql("UPDATE pipeline_execution SET anomaly_checked_at = NULL WHERE id = ANY(:i)", i=ids)
    resync(live)
    return ids


def test_the_catch_up_crosses_batch_boundaries(
    client: httpx.Client, live: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(anomalies.detector, "CATCHUP_BATCH", 2)
    pids = [make_pipeline(client, f"p{i}") for i in range(2)]
    lost = []
    for pid in pids:
        make_rule(client, pid)
        seed_history(live, pid, [10.0, 20.0, 30.0, 40.0, 50.0, 60.0])
        lost += lose(live, pid, [35.0], hour_offset=24)  # one day after the history
        lost += lose(live, pid, [36.0, 37.0], hour_offset=48)  # today and tomorrow (future)
    assert live.run(lambda: catch_up(live.services)) == 6  # batches of 2, 2, 2, then empty
    assert all(len(results(live, eid)) == 1 for eid in lost)
    assert live.run(lambda: catch_up(live.services)) == 0


def test_an_anomaly_found_in_a_batch_leaves_the_baseline_of_later_ones(
    client: httpx.Client, live: LiveServer
) -> None:
    pid = make_pipeline(client, "p")
    make_rule(client, pid)
    seed_history(live, pid, [10.0, 20.0, 30.0, 40.0, 50.0, 60.0])
    [spike] = lose(live, pid, [999.0], hour_offset=24)
    [later] = lose(live, pid, [35.0], hour_offset=48)  # a day later, same hour
    assert live.run(lambda: catch_up(live.services)) == 2
    assert results(live, spike)[0]["is_anomaly"] is True
    # As if evaluated one by one: the flagged spike is not in the later one's baseline.
    [result] = results(live, later)
    assert result["baseline_count"] == 6 and result["historical_mean"] == pytest.approx(35.0)


def test_two_replicas_claim_disjoint_batches_without_waiting(
    client: httpx.Client, live: LiveServer
) -> None:
    pid = make_pipeline(client, "p")
    make_rule(client, pid)
    seed_history(live, pid, [10.0, 20.0, 30.0, 40.0, 50.0, 60.0])
    first = lose(live, pid, [35.0, 36.0], hour_offset=24)
    second = lose(live, pid, [37.0], hour_offset=48)
    now = live.clock.now()

    async def race() -> tuple[list[int], list[int]]:
        engine = live.services.engine
        async with engine.connect() as a, engine.connect() as b:
            await a.begin()
            await b.begin()
            claimed_a = await anomalies.evaluation.evaluate_batch(a, first, now)
            # A holds its claims uncommitted: B skips them instead of waiting for A.
            claimed_b = await asyncio.wait_for(
                anomalies.evaluation.evaluate_batch(b, first + second, now), timeout=10
            )
            await a.commit()
            await b.commit()
        return claimed_a, claimed_b

    claimed_a, claimed_b = live.run(race)
    assert sorted(claimed_a) == sorted(first) and claimed_b == second
    assert all(len(results(live, eid)) == 1 for eid in first + second)
    assert live.run(lambda: catch_up(live.services)) == 0


def test_concurrent_catch_ups_evaluate_each_execution_once(
    client: httpx.Client, live: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(anomalies.detector, "CATCHUP_BATCH", 3)
    pid = make_pipeline(client, "p")
    make_rule(client, pid)
    make_rule(client, pid, "inserts")
    seed_history(live, pid, [10.0, 20.0, 30.0, 40.0, 50.0, 60.0])
    lost = [eid for day in range(1, 6) for eid in lose(live, pid, [30.0 + day], 24 * day)]

    async def together() -> list[int]:
        return list(await asyncio.gather(*(catch_up(live.services) for _ in range(3))))

    assert sum(live.run(together)) == len(lost)
    counts = live.sql(
        "SELECT pipeline_execution_id, count(*) AS n FROM anomaly_detection_result"
        " WHERE pipeline_execution_id = ANY(:i) GROUP BY 1",
        i=lost,
    )
    assert {r["pipeline_execution_id"]: r["n"] for r in counts} == {eid: 2 for eid in lost}


def test_a_failing_batch_is_evaluated_one_by_one(
    client: httpx.Client, live: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(*args: Any) -> list[int]:
        raise RuntimeError("boom")

    monkeypatch.setattr(anomalies.detector, "evaluate_batch", broken)
    pid = make_pipeline(client, "p")
    make_rule(client, pid)
    seed_history(live, pid, [10.0, 20.0, 30.0, 40.0, 50.0, 60.0])
    lost = lose(live, pid, [35.0, 36.0], hour_offset=24)
    assert live.run(lambda: catch_up(live.services)) == 2
    assert all(len(results(live, eid)) == 1 for eid in lost)


class _Recorder(logging.Handler):
    """A logging handler that keeps the records it receives."""

    def __init__(self, records: list[logging.LogRecord]) -> None:
        super().__init__()
        self.records = records

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
