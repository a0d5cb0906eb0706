from __future__ import annotations

import httpx

from tests.conftest import LiveServer
from tests.factories import make_pipeline


def test_it_creates_then_gets_a_pipeline_by_normalised_name(client: httpx.Client) -> None:
    first = client.post("/pipeline", json={"name": " Orders ", "pipeline_type_name": "Extraction"})
    again = client.post("/pipeline", json={"name": "orders", "pipeline_type_name": "extraction"})
    assert (first.status_code, again.status_code) == (201, 200)
    assert (
        first.json()
        == again.json()
        == {
            "id": first.json()["id"],
            "active": True,
            "load_lineage": True,
            "watermark": None,
        }
    )
    assert client.get(f"/pipeline/{first.json()['id']}").json()["name"] == "orders"


def test_it_creates_the_type_when_missing(client: httpx.Client) -> None:
    make_pipeline(client, pipeline_type_name="brand_new_type")
    names = [t["name"] for t in client.get("/pipeline_type").json()]
    assert names == ["brand_new_type"]


def test_it_stores_next_watermark_of_any_scalar_type_as_text(client: httpx.Client) -> None:
    for value, stored in [
        (42, "42"),
        ("2024-01-01", "2024-01-01"),
        ("2024-01-01T10:00:00+00:00", "2024-01-01T10:00:00+00:00"),
    ]:
        pipeline = make_pipeline(client, next_watermark=value)
        assert client.get(f"/pipeline/{pipeline['id']}").json()["next_watermark"] == stored


def test_it_updates_changed_config_and_keeps_the_rest(
    client: httpx.Client, live: LiveServer
) -> None:
    pipeline = make_pipeline(
        client, freshness_number=2, freshness_datepart="hour", pipeline_metadata={"a": 1}
    )
    before = live.sql("SELECT updated_at FROM pipeline")[0]["updated_at"]
    make_pipeline(client, freshness_number=2, freshness_datepart="hour", pipeline_metadata={"a": 1})
    assert (
        live.sql("SELECT updated_at FROM pipeline")[0]["updated_at"] == before
    )  # unchanged: no write
    make_pipeline(client, timeliness_number=30, timeliness_datepart="minute")
    stored = client.get(f"/pipeline/{pipeline['id']}").json()
    assert (stored["freshness_number"], stored["timeliness_number"]) == (2, 30)
    assert stored["pipeline_metadata"] == {"a": 1}


def test_it_rejects_half_a_rule_and_bad_dateparts(client: httpx.Client) -> None:
    half = client.post(
        "/pipeline", json={"name": "p", "pipeline_type_name": "t", "freshness_number": 1}
    )
    assert half.status_code == 422
    assert "freshness_number and freshness_datepart" in half.json()["detail"]
    bad = client.post(
        "/pipeline",
        json={
            "name": "p",
            "pipeline_type_name": "t",
            "freshness_number": 1,
            "freshness_datepart": "fortnight",
        },
    )
    assert bad.status_code == 422
    zero = client.post(
        "/pipeline",
        json={
            "name": "p",
            "pipeline_type_name": "t",
            "freshness_number": 0,
            "freshness_datepart": "day",
        },
    )
    assert zero.status_code == 422 and zero.json()["errors"][0]["loc"] == [
        "body",
        "freshness_number",
    ]
    assert client.get("/pipeline").json() == []  # nothing half-written


def test_it_names_each_missing_field(client: httpx.Client) -> None:
    response = client.post("/pipeline", json={})
    assert response.status_code == 422
    locs = {tuple(e["loc"]) for e in response.json()["errors"]}
    assert locs == {("body", "name"), ("body", "pipeline_type_name")}


def test_it_rejects_non_json_and_non_objects(client: httpx.Client) -> None:
    assert (
        client.post(
            "/pipeline", content=b"{nope", headers={"content-type": "application/json"}
        ).status_code
        == 422
    )
    assert client.post("/pipeline", json=[1, 2]).status_code == 422


def test_it_ignores_unknown_fields(client: httpx.Client) -> None:
    response = client.post(
        "/pipeline", json={"name": "p", "pipeline_type_name": "t", "full_load": True}
    )
    assert response.status_code == 201


def test_it_pages_the_list(client: httpx.Client) -> None:
    for i in range(5):
        make_pipeline(client, name=f"p{i}")
    page = client.get("/pipeline", params={"limit": 2, "offset": 2}).json()
    assert [p["name"] for p in page] == ["p2", "p3"]
    assert client.get("/pipeline", params={"limit": 0}).status_code == 422


def test_it_patches_by_id_or_name(client: httpx.Client) -> None:
    pipeline = make_pipeline(client)
    by_id = client.patch("/pipeline", json={"id": pipeline["id"], "active": False, "watermark": 7})
    assert (
        by_id.status_code == 200
        and by_id.json()["active"] is False
        and by_id.json()["watermark"] == "7"
    )
    by_name = client.patch(
        "/pipeline",
        json={"name": "ORDERS_LOAD", "load_lineage": False, "mute_freshness_check": True},
    )
    assert (
        by_name.json()["load_lineage"] is False and by_name.json()["mute_freshness_check"] is True
    )
    assert make_pipeline(client)["active"] is False


def test_it_returns_404_for_unknown_ids(client: httpx.Client) -> None:
    assert client.get("/pipeline/999").status_code == 404
    assert client.patch("/pipeline", json={"id": 999, "active": False}).status_code == 404
    assert client.patch("/pipeline", json={"active": False}).status_code == 422
    assert client.get("/pipeline_type/999").json()["detail"] == "pipeline type 999 not found"
    assert client.get("/pipeline/99999999999999999999").status_code == 422


def test_pipeline_types_create_or_get_and_patch(client: httpx.Client) -> None:
    created = client.post(
        "/pipeline_type", json={"name": "Batch", "freshness_number": 1, "freshness_datepart": "day"}
    )
    again = client.post("/pipeline_type", json={"name": "batch"})
    assert (created.status_code, again.status_code) == (201, 200)
    assert again.json()["freshness_number"] == 1
    patched = client.patch(
        "/pipeline_type",
        json={
            "name": "batch",
            "mute_timeliness_check": True,
            "timeliness_number": 2,
            "timeliness_datepart": "hour",
        },
    )
    assert patched.status_code == 200 and patched.json()["timeliness_datepart"] == "hour"
    assert (
        client.get(f"/pipeline_type/{created.json()['id']}").json()["mute_timeliness_check"] is True
    )


def test_unknown_routes_and_methods_use_the_error_envelope(client: httpx.Client) -> None:
    assert client.get("/nope").json() == {"detail": "not found", "errors": []}
    assert client.delete("/pipeline").status_code == 405


def test_patch_with_id_and_name_renames_as_the_original_watcher_does(
    client: httpx.Client, live: LiveServer
) -> None:
    """The original's PATCH takes a required `id` and `name` as a field to update: giving
    both renames. It used to ignore `name` silently."""
    pipeline = make_pipeline(client)
    renamed = client.patch("/pipeline", json={"id": pipeline["id"], "name": " Orders_V2 "})
    assert renamed.status_code == 200, renamed.text
    assert renamed.json()["name"] == "orders_v2"
    assert live.sql("SELECT name FROM pipeline") == [{"name": "orders_v2"}]
    kind = client.post("/pipeline_type", json={"name": "batch"}).json()
    patched = client.patch("/pipeline_type", json={"id": kind["id"], "name": "nightly"})
    assert patched.json()["name"] == "nightly"


def test_renaming_onto_a_taken_name_is_409_and_changes_nothing(
    client: httpx.Client, live: LiveServer
) -> None:
    first, second = make_pipeline(client, name="first"), make_pipeline(client, name="second")
    r = client.patch("/pipeline", json={"id": second["id"], "name": "first", "active": False})
    assert r.status_code == 409, r.text
    assert r.json()["errors"] == [{"loc": ["body", "name"], "msg": "already taken by another row"}]
    rows = live.sql("SELECT id, name, active FROM pipeline ORDER BY id")
    assert rows == [
        {"id": first["id"], "name": "first", "active": True},
        {"id": second["id"], "name": "second", "active": True},
    ]


def test_patch_by_name_alone_still_finds_the_row_by_name(client: httpx.Client) -> None:
    make_pipeline(client, name="by_name")
    r = client.patch("/pipeline", json={"name": "by_name", "active": False})
    assert r.status_code == 200 and r.json()["name"] == "by_name"


def test_an_unknown_schedule_timezone_is_422_even_without_a_schedule(
    client: httpx.Client,
) -> None:
    make_pipeline(client, name="zoned")
    for method, path, body in [
        ("PATCH", "/pipeline", {"name": "zoned", "schedule_timezone": "Mars/Olympus"}),
        ("POST", "/pipeline_type", {"name": "zoned_type", "schedule_timezone": "Europe/Pariss"}),
        ("POST", "/pipeline", {"name": "z2", "pipeline_type_name": "t", "schedule_timezone": ""}),
    ]:
        r = client.request(method, path, json=body)
        assert r.status_code == 422, (path, r.text)
        assert r.json()["errors"][0]["loc"] == ["body", "schedule_timezone"]
    ok = client.patch("/pipeline", json={"name": "zoned", "schedule_timezone": "Europe/Paris"})
    assert ok.status_code == 200 and ok.json()["schedule_timezone"] == "Europe/Paris"
