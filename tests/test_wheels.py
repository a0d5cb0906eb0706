"""Watcher installs like real software: the built wheels, in fresh virtual environments with
no access to the source tree.

- the server wheel: `watcher migrate` builds a new database from the migrations inside the
  wheel, and `watcher serve` answers `/health`;
- the client wheel: it installs with httpx (and httpx's own dependencies) and nothing else,
  and a tracked run made with it lands in a live Watcher.

Building and installing take a minute (dependencies come from pip's cache once `make install`
has run), so both environments are built once per session.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import venv
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import LiveServer, free_port
from watcher.db.embedded import EmbeddedPostgres

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
# Not part of a source distribution: the checkout's own state.
_NOT_SOURCE = shutil.ignore_patterns(
    ".git", ".venv", "site", "build", "dist", "*.egg-info", "__pycache__", ".*_cache"
)
# Packages a pipeline worker must never get from the client: the server's world.
SERVER_ONLY = {"watcher", "sqlalchemy", "asyncpg", "alembic", "numpy", "pgserver", "apscheduler"}


@dataclass
class Env:
    """A fresh virtual environment outside the checkout."""

    root: Path

    @property
    def bin(self) -> Path:
        return self.root / "bin"

    def run(self, *args: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
        return subprocess.run(  # type: ignore[call-overload, no-any-return]
            args, capture_output=True, text=True, check=False, cwd=self.root, **kwargs
        )


def _ok(process: subprocess.CompletedProcess[str]) -> str:
    assert process.returncode == 0, f"{process.args}:\n{process.stdout}\n{process.stderr}"
    return process.stdout


def build_wheel(source: Path, out: Path, scratch: Path) -> Path:
    """Build `source`'s wheel from a copy of it (building in place would leave build/ and
    egg-info in the checkout)."""
    copy = scratch / source.name
    shutil.copytree(source, copy, ignore=_NOT_SOURCE)
    _ok(
        subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(out), "."],
            capture_output=True,
            text=True,
            cwd=copy,
            check=False,
        )
    )
    built = sorted(out.glob("*.whl"), key=lambda p: p.stat().st_mtime)
    assert built, f"no wheel in {out}"
    return built[-1]


def fresh_env(root: Path, *wheels: Path) -> Env:
    venv.create(root, with_pip=True, clear=True)
    env = Env(root)
    _ok(env.run(str(env.bin / "python"), "-m", "pip", "install", "--quiet", *map(str, wheels)))
    return env


@dataclass
class Wheels:
    client: Path
    server: Path


@pytest.fixture(scope="session")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> Wheels:
    out = tmp_path_factory.mktemp("dist")
    scratch = tmp_path_factory.mktemp("src")
    client = build_wheel(ROOT / "clients" / "python", out / "client", scratch)
    (scratch / "server").mkdir()
    server = build_wheel(ROOT, out / "server", scratch / "server")
    return Wheels(client=client, server=server)


@pytest.fixture(scope="session")
def server_env(wheels: Wheels, tmp_path_factory: pytest.TempPathFactory) -> Env:
    return fresh_env(tmp_path_factory.mktemp("server-venv"), wheels.client, wheels.server)


@pytest.fixture(scope="session")
def client_env(wheels: Wheels, tmp_path_factory: pytest.TempPathFactory) -> Env:
    return fresh_env(tmp_path_factory.mktemp("client-venv"), wheels.client)


def test_the_wheels_carry_their_versions_and_the_migrations(wheels: Wheels) -> None:
    import zipfile

    from watcher_client._version import __version__ as client_version

    assert wheels.client.name.startswith(f"watcher_client-{client_version}-")
    names = zipfile.ZipFile(wheels.server).namelist()
    assert "watcher/db/migrations/env.py" in names
    assert any(n.startswith("watcher/db/migrations/versions/0001_") for n in names)
    assert not any(n.startswith(("tests/", "benchmarks/", "watcher_client/")) for n in names)


@pytest.fixture
def wheel_database(postgres: EmbeddedPostgres) -> Iterator[str]:
    """A new, empty database on the test server for the installed wheel to migrate."""
    name = "wheel_install"
    postgres.server.psql(f"DROP DATABASE IF EXISTS {name};")
    postgres.server.psql(f"CREATE DATABASE {name};")
    base, _, query = postgres.url.partition("?")
    yield f"{base.rsplit('/', 1)[0]}/{name}?{query}"
    postgres.server.psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE);")


def test_the_server_wheel_migrates_and_serves(server_env: Env, wheel_database: str) -> None:
    env = {**os.environ, "WATCHER_DATABASE_URL": wheel_database, "WATCHER_AUTH_ENABLED": "false"}
    where = _ok(
        server_env.run(
            str(server_env.bin / "python"), "-c", "import watcher; print(watcher.__file__)"
        )
    )
    assert str(server_env.root) in where and str(ROOT) not in where  # the wheel, not the tree

    _ok(server_env.run(str(server_env.bin / "watcher"), "migrate", env=env))
    port = free_port()
    log = server_env.root / "serve.log"
    with log.open("w") as output:
        server = subprocess.Popen(
            [str(server_env.bin / "watcher"), "serve", "--port", str(port)],
            cwd=server_env.root,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, log.read_text()
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)
                if health.status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "watcher serve never answered /health"
            time.sleep(0.2)
        assert health.json()["status"] == "ok", health.text
        made = httpx.post(
            f"http://127.0.0.1:{port}/pipeline",
            json={"name": "from_the_wheel", "pipeline_type_name": "etl"},
        )
        assert made.status_code == 201, made.text  # the schema the wheel's migrations built
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_the_client_wheel_installs_httpx_and_nothing_else(client_env: Env) -> None:
    script = (
        "import json, importlib.metadata as m\n"
        "print(json.dumps(sorted(d.metadata['Name'].lower() for d in m.distributions())))"
    )
    installed = set(json.loads(_ok(client_env.run(str(client_env.bin / "python"), "-c", script))))
    assert "watcher-client" in installed and "httpx" in installed
    assert not installed & SERVER_ONLY, installed & SERVER_ONLY
    # Everything else is httpx's own closure (and the venv's pip).
    closure = _ok(
        client_env.run(
            str(client_env.bin / "python"),
            "-c",
            "import importlib.metadata as m, re, json\n"
            "seen, todo = set(), ['httpx']\n"
            "while todo:\n"
            "    name = todo.pop()\n"
            "    if name in seen: continue\n"
            "    try: requires = m.requires(name) or []\n"
            "    except m.PackageNotFoundError: continue  # a marker left it out\n"
            "    seen.add(name)\n"
            "    for req in requires:\n"
            "        if 'extra ==' in req: continue\n"
            "        todo.append(re.split(r'[ ;<>=!~\\[(]', req, maxsplit=1)[0].lower())\n"
            "print(json.dumps(sorted(seen)))",
        )
    )
    expected = set(json.loads(closure)) | {"watcher-client", "pip", "setuptools"}
    normalised = {name.replace("_", "-") for name in installed}
    assert normalised <= {name.replace("_", "-") for name in expected}, normalised - expected


def test_a_tracked_run_from_the_client_wheel_reaches_watcher(
    client_env: Env, live: LiveServer
) -> None:
    script = (
        "import sys\n"
        "from watcher_client import WatcherClient\n"
        "with WatcherClient(sys.argv[1]) as client:\n"
        "    with client.track('wheel_worker', 'etl') as run:\n"
        "        run.inserts = 42\n"
    )
    _ok(client_env.run(str(client_env.bin / "python"), "-c", script, live.url))
    rows = httpx.get(f"{live.url}/pipeline_execution", params={"status": "succeeded"}).json()
    assert [r["inserts"] for r in rows] == [42], rows
