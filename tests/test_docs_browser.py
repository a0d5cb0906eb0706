"""The `/docs` page renders in a real browser: headless Chromium loads Swagger UI from a live
Watcher (auth on, as by default) and the operations list appears in the DOM.

Locally a missing Chromium skips with the reason; in CI (`CI=true`) it is a failure, as for
the Prometheus binaries (`.ci/run` installs the Debian `chromium` package).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import LiveServer, start_live_server
from tests.conftest import test_settings as settings_for
from watcher.db.embedded import EmbeddedPostgres

BROWSERS = ("chromium", "chromium-browser", "google-chrome")


def need_chromium() -> str:
    """Path of an installed Chromium; skip (fail in CI) when none is."""
    found = next((p for n in BROWSERS if (p := shutil.which(n))), None)
    if found is None:
        reason = "chromium not installed (Debian package chromium)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return found


@pytest.fixture(scope="module")
def secured(postgres: EmbeddedPostgres) -> Iterator[LiveServer]:
    server = start_live_server(postgres.url, settings_for(auth_enabled=True))
    yield server
    server.stop()


def render(browser: str, url: str, profile: Path) -> str:
    """The DOM after Swagger UI ran: virtual time lets its fetch and rendering finish."""
    result = subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            f"--user-data-dir={profile}",
            "--virtual-time-budget=15000",
            "--dump-dom",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def test_docs_and_openapi_need_no_token(secured: LiveServer, live: LiveServer) -> None:
    # `live` is requested so the shared clean-up runs; the API itself is closed without a token.
    with httpx.Client(base_url=secured.url, timeout=30) as http:
        assert http.get("/pipeline").status_code == 401
        assert http.get("/docs").status_code == 200
        assert http.get("/openapi.json").status_code == 200
        assert http.get("/docs/assets/swagger-ui-bundle.js").status_code == 200


def test_docs_page_renders_the_operations_list_in_chromium(
    secured: LiveServer, live: LiveServer, tmp_path: Path
) -> None:
    browser = need_chromium()
    dom = render(browser, f"{secured.url}/docs", tmp_path / "profile")
    assert 'class="swagger-ui' in dom, dom[:2000]
    assert dom.count("opblock-summary-path") >= 30
    assert "/start_pipeline_execution" in dom
    assert "/api/v1/lineage" in dom
    assert "opblock-post" in dom and "opblock-get" in dom and "opblock-patch" in dom
