from __future__ import annotations

import httpx

from watcher.app import operations


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
