"""Input limits at the edge: body size, string lengths, metadata size/depth, integer bounds,
time zones — and nothing the database would refuse ever turns into a 500."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import LiveServer
from watcher.fields import MAX_BIGINT, MAX_INT, MAX_METADATA_BYTES, MAX_METADATA_DEPTH


def create_pipeline(client: httpx.Client, name: str = "limits_p") -> int:
    r = client.post("/pipeline", json={"name": name, "pipeline_type_name": "extraction"})
    assert r.status_code in (200, 201), r.text
    return int(r.json()["id"])


def start(client: httpx.Client, **body: Any) -> httpx.Response:
    return client.post("/start_pipeline_execution", json=body)


def nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(depth - 1):
        value = {"k": value}
    return value


def test_body_over_the_limit_is_413(client: httpx.Client, live: LiveServer) -> None:
    limit = live.services.settings.max_body_bytes
    big = {"name": "x", "pipeline_type_name": "t", "pad": "a" * limit}
    r = client.post("/pipeline", json=big)
    assert r.status_code == 413
    assert r.json()["detail"]


def test_streamed_body_without_length_is_cut_at_the_limit(
    client: httpx.Client, live: LiveServer
) -> None:
    limit = live.services.settings.max_body_bytes

    def chunks() -> Iterator[bytes]:
        yield b'{"name": "x", "pipeline_type_name": "t", "pad": "'
        for _ in range(limit // 65536 + 2):
            yield b"a" * 65536
        yield b'"}'

    r = client.post("/pipeline", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413


@pytest.mark.parametrize("length, status", [(150, 201), (151, 422)])
def test_names_are_limited_to_150_characters(
    client: httpx.Client, length: int, status: int
) -> None:
    r = client.post("/pipeline", json={"name": "n" * length, "pipeline_type_name": "t"})
    assert r.status_code == status, r.text


def test_text_fields_are_limited(client: httpx.Client) -> None:
    pipeline_id = create_pipeline(client)
    assert start(client, pipeline_id=pipeline_id, watermark="w" * 1001).status_code == 422
    assert start(client, pipeline_id=pipeline_id, run_id="r" * 201).status_code == 422
    assert start(client, pipeline_id=pipeline_id, watermark="w" * 1000).status_code == 201


def test_nul_characters_are_refused_not_stored(client: httpx.Client) -> None:
    assert (
        client.post("/pipeline", json={"name": "a\x00b", "pipeline_type_name": "t"}).status_code
        == 422
    )
    pipeline_id = create_pipeline(client)
    assert start(client, pipeline_id=pipeline_id, watermark="a\x00").status_code == 422
    assert start(client, pipeline_id=pipeline_id, run_id="a\x00").status_code == 422


def test_metadata_with_nul_is_refused(client: httpx.Client) -> None:
    r = client.post(
        "/pipeline",
        json={"name": "m", "pipeline_type_name": "t", "pipeline_metadata": {"a": "x\x00"}},
    )
    assert r.status_code == 422, r.text
    r = client.post(
        "/pipeline",
        json={"name": "m", "pipeline_type_name": "t", "pipeline_metadata": {"\x00": 1}},
    )
    assert r.status_code == 422, r.text


def test_metadata_size_is_limited(client: httpx.Client) -> None:
    too_big = {"blob": "x" * MAX_METADATA_BYTES}
    r = client.post(
        "/pipeline", json={"name": "m", "pipeline_type_name": "t", "pipeline_metadata": too_big}
    )
    assert r.status_code == 422
    assert "pipeline_metadata" in str(r.json()["errors"])


def test_metadata_depth_is_limited(client: httpx.Client) -> None:
    deep = client.post(
        "/pipeline",
        json={
            "name": "m",
            "pipeline_type_name": "t",
            "pipeline_metadata": nested(MAX_METADATA_DEPTH + 1),
        },
    )
    assert deep.status_code == 422
    ok = client.post(
        "/pipeline",
        json={
            "name": "m",
            "pipeline_type_name": "t",
            "pipeline_metadata": nested(MAX_METADATA_DEPTH),
        },
    )
    assert ok.status_code == 201, ok.text


@pytest.mark.parametrize(
    "field, value",
    [
        ("inserts", MAX_BIGINT + 1),
        ("total_rows", 2**64),
        ("updates", -1),
        ("soft_deletes", 10**30),
    ],
)
def test_counts_beyond_bigint_are_422(client: httpx.Client, field: str, value: int) -> None:
    pipeline_id = create_pipeline(client)
    execution = start(client, pipeline_id=pipeline_id).json()["id"]
    r = client.post(
        "/end_pipeline_execution",
        json={"id": execution, "completed_successfully": True, field: value},
    )
    assert r.status_code == 422, r.text


def test_largest_bigint_count_is_stored(client: httpx.Client, live: LiveServer) -> None:
    pipeline_id = create_pipeline(client)
    execution = start(client, pipeline_id=pipeline_id).json()["id"]
    r = client.post(
        "/end_pipeline_execution",
        json={"id": execution, "completed_successfully": True, "total_rows": MAX_BIGINT},
    )
    assert r.status_code == 204, r.text
    row = live.sql("SELECT total_rows FROM pipeline_execution WHERE id = :i", i=execution)
    assert row[0]["total_rows"] == MAX_BIGINT


def test_ids_and_rule_numbers_beyond_their_columns_are_422(client: httpx.Client) -> None:
    assert start(client, pipeline_id=MAX_BIGINT + 1).status_code == 422
    assert client.get(f"/pipeline/{2**64}").status_code == 422
    r = client.post(
        "/pipeline",
        json={
            "name": "rules",
            "pipeline_type_name": "t",
            "freshness_number": MAX_INT + 1,
            "freshness_datepart": "day",
        },
    )
    assert r.status_code == 422, r.text


def test_timestamps_without_zone_are_utc(client: httpx.Client, live: LiveServer) -> None:
    pipeline_id = create_pipeline(client)
    naive = start(client, pipeline_id=pipeline_id, start_date="2024-03-01T10:00:00").json()["id"]
    zoned = start(client, pipeline_id=pipeline_id, start_date="2024-03-01T10:00:00+02:00")
    rows = live.sql(
        "SELECT id, to_char(start_date AT TIME ZONE 'UTC', 'HH24:MI') AS utc, hour_recorded "
        "FROM pipeline_execution ORDER BY id"
    )
    assert rows[0]["id"] == naive and rows[0]["utc"] == "10:00" and rows[0]["hour_recorded"] == 10
    assert rows[1]["id"] == zoned.json()["id"] and rows[1]["utc"] == "08:00"
    assert rows[1]["hour_recorded"] == 8


@pytest.mark.parametrize(
    "name",
    ["İstanbul", "ǅ", "straße", "ẞ", "x\u00a0", "\u2028y", "Ω", "\ufeffz", "a\u0301"],
)
def test_unusual_names_are_stored_or_refused_never_500(client: httpx.Client, name: str) -> None:
    r = client.post("/pipeline", json={"name": name, "pipeline_type_name": "t"})
    assert r.status_code in (201, 422), r.text


def test_explicit_nulls_are_not_500(client: httpx.Client, live: LiveServer) -> None:
    # Found by the fuzzer: a null watermark hit a max_length on None, a null mute flag hit
    # the NOT NULL column. A null flag now means "unchanged".
    body = {
        "name": "nulls",
        "pipeline_type_name": "t",
        "next_watermark": None,
        "mute_timeliness_check": None,
        "mute_freshness_check": None,
        "load_lineage": None,
    }
    assert client.post("/pipeline", json=body).status_code == 201
    patch = client.patch("/pipeline", json={"name": "nulls", "active": None})
    assert patch.status_code == 200, patch.text
    row = live.sql("SELECT active, mute_timeliness_check, load_lineage FROM pipeline")[0]
    assert row == {"active": True, "mute_timeliness_check": False, "load_lineage": True}
