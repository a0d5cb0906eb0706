from __future__ import annotations

import httpx

from tests.conftest import start_live_server
from tests.conftest import test_settings as server_settings
from watcher.db.embedded import EmbeddedPostgres


def test_profile_true_returns_a_profile_only_when_enabled(
    postgres: EmbeddedPostgres, client: httpx.Client
) -> None:
    assert "pyinstrument" not in client.get("/pipeline", params={"profile": "true"}).text
    server = start_live_server(postgres.url, server_settings(profiling=True))
    try:
        page = httpx.get(f"{server.url}/pipeline", params={"profile": "true"})
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert "pyinstrument" in page.text
        assert httpx.get(f"{server.url}/pipeline").json() == []
    finally:
        server.stop()
