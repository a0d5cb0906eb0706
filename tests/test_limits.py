"""Input limits at the edge: body size, string lengths, metadata size/depth, integer bounds,
time zones — and nothing the database would refuse ever turns into a 500."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import LiveServer
from watcher.fields import (
    MAX_BIGINT,
    MAX_BODY_DEPTH,
    MAX_INT,
    MAX_METADATA_BYTES,
    MAX_METADATA_DEPTH,
)


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


# Offsets that carry a moment past year 1 or year 9999 in UTC: Python has no such datetime.
UTC_OVERFLOWS = ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"]


@pytest.mark.parametrize("value", UTC_OVERFLOWS)
def test_start_date_beyond_the_utc_range_is_422(client: httpx.Client, value: str) -> None:
    r = start(client, pipeline_id=create_pipeline(client), start_date=value)
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["loc"] == ["body", "start_date"]


@pytest.mark.parametrize("value", UTC_OVERFLOWS)
def test_end_date_beyond_the_utc_range_is_422(client: httpx.Client, value: str) -> None:
    execution = start(client, pipeline_id=create_pipeline(client)).json()["id"]
    r = client.post(
        "/end_pipeline_execution",
        json={"id": execution, "completed_successfully": True, "end_date": value},
    )
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["loc"] == ["body", "end_date"]


@pytest.mark.parametrize("value", UTC_OVERFLOWS)
def test_since_beyond_the_utc_range_is_422(client: httpx.Client, value: str) -> None:
    r = client.get("/pipeline_execution", params={"since": value})
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["loc"] == ["query", "since"]


@pytest.mark.parametrize(
    "value, status",
    [
        ("1900-01-01T00:00:00Z", 201),
        ("1899-12-31T23:59:59Z", 422),
        ("1900-01-01T00:30:00+01:00", 422),
        ("8999-12-31T23:59:59Z", 201),
        ("9000-01-01T00:00:00Z", 422),
        ("0001-01-01T00:00:00Z", 422),  # asyncpg would store it as -infinity
    ],
)
def test_timestamps_are_kept_inside_a_window_date_arithmetic_can_handle(
    client: httpx.Client, value: str, status: int
) -> None:
    r = start(client, pipeline_id=create_pipeline(client), start_date=value)
    assert r.status_code == status, r.text


def nested_lists(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth - 1):
        value = [value]
    return value


@pytest.mark.parametrize("depth", [300, 900])
def test_metadata_nested_beyond_what_orjson_serialises_is_422(
    client: httpx.Client, depth: int
) -> None:
    # orjson.dumps stops at 255 levels with a TypeError: the depth is checked before it.
    body = {"name": "m", "pipeline_type_name": "t", "pipeline_metadata": nested(depth)}
    r = client.post("/pipeline", json=body)
    assert r.status_code == 422, r.text
    assert "pipeline_metadata" in str(r.json()["errors"])


def deep_body(field: str, depth: int) -> bytes:
    """A pipeline body whose `field` is `depth` nested arrays, written out by hand: the JSON
    encoders (stdlib and orjson) cannot serialise that deep, and that is the point."""
    head = b'{"name": "m", "pipeline_type_name": "t", "' + field.encode() + b'": '
    return head + b"[" * depth + b"]" * depth + b"}"


def post_raw(client: httpx.Client, path: str, content: bytes) -> httpx.Response:
    return client.post(path, content=content, headers={"content-type": "application/json"})


def test_a_deep_ignored_field_is_422_not_a_recursion_error(client: httpx.Client) -> None:
    r = post_raw(client, "/pipeline", deep_body("ignored", 1000))
    assert r.status_code == 422, r.text
    assert str(MAX_BODY_DEPTH) in r.text and "ignored" in r.text


def test_ignored_fields_up_to_the_body_depth_limit_are_still_ignored(
    client: httpx.Client,
) -> None:
    body = {"name": "m", "pipeline_type_name": "t", "extra": nested_lists(MAX_BODY_DEPTH - 1)}
    assert client.post("/pipeline", json=body).status_code == 201
    body["extra"] = nested_lists(MAX_BODY_DEPTH)
    assert client.post("/pipeline", json=body).status_code == 422


def test_json_deeper_than_the_parser_allows_is_422(client: httpx.Client) -> None:
    r = post_raw(client, "/pipeline", deep_body("x", 1100))  # orjson.loads stops at 1024
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["loc"] == ["body"]
