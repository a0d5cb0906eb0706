from __future__ import annotations

import httpx
import pytest
from sqlalchemy import Table

from watcher.addresses import Address, AddressType
from watcher.app import operations
from watcher.checks.anomalies.models import DetectionResult, Rule
from watcher.db.schema import (
    address,
    address_type,
    anomaly_detection_result,
    anomaly_detection_rule,
    pipeline,
    pipeline_execution,
    pipeline_type,
)
from watcher.executions import Execution
from watcher.fields import Row
from watcher.pipeline_types import PipelineType
from watcher.pipelines import Pipeline


def test_openapi_documents_every_operation(client: httpx.Client) -> None:
    document = client.get("/openapi.json").json()
    assert document["openapi"].startswith("3.1")
    documented = {(m.upper(), p) for p, ops in document["paths"].items() for m in ops}
    declared = {(op.method, op.path.replace(":int}", "}")) for op in operations()}
    assert declared == documented
    start = document["paths"]["/start_pipeline_execution"]["post"]
    assert start["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "StartExecution"
    )


def test_docs_page_and_its_assets_are_served_locally(client: httpx.Client) -> None:
    page = client.get("/docs")
    assert page.status_code == 200 and "/docs/assets/swagger-ui-bundle.js" in page.text
    asset = client.get("/docs/assets/swagger-ui-bundle.js")
    assert asset.status_code == 200 and len(asset.content) > 100_000


def test_health_reports_database_and_scheduler(client: httpx.Client) -> None:
    body = client.get("/health").json()
    assert body["status"] == "ok" and body["database"]["status"] == "ok"
    assert body["scheduler"]["enabled"] is False


def test_every_json_operation_documents_its_success_body(client: httpx.Client) -> None:
    """A new route without a `response=` model fails here: schemathesis can only check 2xx
    bodies against a schema that says something."""
    document = client.get("/openapi.json").json()
    undocumented = [
        f"{method.upper()} {path} {code}"
        for path, ops in document["paths"].items()
        if path not in {"/metrics", "/docs"}
        for method, entry in ops.items()
        for code, response in entry["responses"].items()
        if code.startswith("2") and code != "204"
        if not response["content"]["application/json"]["schema"]
    ]
    assert undocumented == []


@pytest.mark.parametrize(
    ("model", "table"),
    [
        (Pipeline, pipeline),
        (PipelineType, pipeline_type),
        (Address, address),
        (AddressType, address_type),
        (Execution, pipeline_execution),
        (Rule, anomaly_detection_rule),
        (DetectionResult, anomaly_detection_result),
    ],
)
def test_row_models_name_every_column_of_their_table(model: type[Row], table: Table) -> None:
    assert set(table.c.keys()) <= set(model.model_fields)


def test_error_statuses_with_their_own_body_document_it(client: httpx.Client) -> None:
    paths = client.get("/openapi.json").json()["paths"]

    def schema(path: str, method: str, code: str) -> dict[str, object]:
        answer = paths[path][method]["responses"][code]
        return answer["content"]["application/json"]["schema"]  # type: ignore[no-any-return]

    error = {"$ref": "#/components/schemas/Error"}
    health = {"oneOf": [{"$ref": "#/components/schemas/Health"}, error]}
    assert schema("/health", "get", "503") == health
    batch = {"oneOf": [{"$ref": "#/components/schemas/BatchIngested"}, error]}
    assert schema("/api/v1/lineage/batch", "post", "422") == batch
    assert schema("/pipeline", "post", "422") == error


@pytest.mark.parametrize(
    ("finding", "value"),
    [
        ("watcher.checks.timeliness:OverdueFinding", "watcher.checks.timeliness:Overdue"),
        ("watcher.checks.freshness:StaleFinding", "watcher.checks.freshness:Stale"),
        ("watcher.checks.missed_runs:MissedRunFinding", "watcher.checks.missed_runs:Missed"),
    ],
)
def test_a_documented_finding_is_the_checks_value_plus_newly_logged(
    finding: str, value: str
) -> None:
    # The documented finding extends the check's own value (the dataclass its pure judge
    # returns) with newly_logged: the API shape cannot drift from the logic's.
    import dataclasses
    import importlib

    def load(path: str) -> type:
        module, name = path.split(":")
        return getattr(importlib.import_module(module), name)  # type: ignore[no-any-return]

    model, source = load(finding), load(value)
    expected = [f.name for f in dataclasses.fields(source)] + ["newly_logged"]
    assert [f.name for f in dataclasses.fields(model)] == expected
