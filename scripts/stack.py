"""Run Prometheus and Alertmanager from the local binaries against a running Watcher.

    make stack                                  # Watcher on 127.0.0.1:8000
    .venv/bin/python scripts/stack.py --help

The repository's configs (monitoring/prometheus.yml, monitoring/rules/, alertmanager/) are
rendered into a run directory (default .watcher-data/stack/, git-ignored) with this
machine's addresses, then both binaries start on loopback. Options:
- WATCHER_METRICS_TOKEN_FILE (or --token-file; default secrets/metrics_token when it exists,
  the file monitoring/prometheus.yml names): a token with the "read" scope, for a Watcher with
  authentication on; Prometheus sends it as a bearer token. Without one, the scrape config
  goes without `authorization` (a Watcher with WATCHER_AUTH_ENABLED=false).
- SLACK_WEBHOOK_URL, or --slack-webhook-url-file (default secrets/slack_webhook_url): the
  Slack incoming webhook; written into the run directory, never into the repository.
- --postgres-dsn: also start prometheus-postgres-exporter for the database panels.
- --fast: 1 s scrapes and evaluations, alerts without `for`, Alertmanager waiting 1 s (demos
  and tests/test_stack_e2e.py, which uses these functions).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
MONITORING = ROOT / "monitoring"
DEFAULT_TOKEN_FILE = ROOT / "secrets" / "metrics_token"  # what monitoring/prometheus.yml names
ALERTMANAGER = ROOT / "alertmanager"
BINARIES = {
    "prometheus": ("prometheus",),
    "alertmanager": ("prometheus-alertmanager", "alertmanager"),
    "postgres_exporter": ("prometheus-postgres-exporter", "postgres_exporter"),
}


def binary(kind: str) -> str | None:
    """The installed binary for `kind` (Debian and upstream names), or None."""
    return next((p for name in BINARIES[kind] if (p := shutil.which(name))), None)


@dataclass(frozen=True)
class Addresses:
    watcher: str = "127.0.0.1:8000"
    prometheus: str = "127.0.0.1:9090"
    alertmanager: str = "127.0.0.1:9093"
    postgres_exporter: str | None = None


def prometheus_config(
    run_dir: Path,
    addresses: Addresses,
    *,
    token_file: Path | None = None,
    fast: bool = False,
) -> Path:
    """Render monitoring/prometheus.yml (and the rules) into `run_dir`; return the config."""
    config: dict[str, Any] = yaml.safe_load((MONITORING / "prometheus.yml").read_text())
    if fast:
        config["global"] |= {"scrape_interval": "1s", "evaluation_interval": "1s"}
    config["rule_files"] = [str(p) for p in _rules(run_dir, fast=fast)]
    config["alerting"]["alertmanagers"] = [
        {"static_configs": [{"targets": [addresses.alertmanager]}]}
    ]
    targets = {
        "watcher": addresses.watcher,
        "prometheus": addresses.prometheus,
        "alertmanager": addresses.alertmanager,
    }
    jobs = [j for j in config["scrape_configs"] if j["job_name"] in targets]
    for job in jobs:
        job["static_configs"] = [{"targets": [targets[job["job_name"]]]}]
        if job["job_name"] == "watcher":
            # The repository's path is relative to monitoring/, not to the run directory.
            job.pop("authorization", None)
            if token_file is not None:
                job["authorization"] = {"type": "Bearer", "credentials_file": str(token_file)}
    if addresses.postgres_exporter:
        jobs.append(
            {"job_name": "postgres", "static_configs": [{"targets": [addresses.postgres_exporter]}]}
        )
    config["scrape_configs"] = jobs
    path = run_dir / "prometheus.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def _rules(run_dir: Path, *, fast: bool) -> list[Path]:
    out = run_dir / "rules"
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for source in sorted((MONITORING / "rules").glob("*.yml")):
        rules = yaml.safe_load(source.read_text())
        if fast:  # fire on the first evaluation that matches
            for group in rules["groups"]:
                for rule in group["rules"]:
                    rule.pop("for", None)
        path = out / source.name
        path.write_text(yaml.safe_dump(rules, sort_keys=False, allow_unicode=True))
        paths.append(path)
    return paths


def alertmanager_config(run_dir: Path, slack_url_file: Path, *, fast: bool = False) -> Path:
    """Render alertmanager/alertmanager.yml into `run_dir` with this Slack URL file."""
    config: dict[str, Any] = yaml.safe_load((ALERTMANAGER / "alertmanager.yml").read_text())
    config["global"]["slack_api_url_file"] = str(slack_url_file)
    config["templates"] = [str(ALERTMANAGER / "templates" / "*.tmpl")]
    if fast:
        for route in [config["route"], *config["route"].get("routes", [])]:
            route |= {"group_wait": "1s", "group_interval": "2s", "repeat_interval": "1m"}
    path = run_dir / "alertmanager.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False, allow_unicode=True))
    return path


def start_prometheus(config: Path, data_dir: Path, listen: str) -> subprocess.Popen[bytes]:
    return _spawn(
        binary("prometheus"),
        f"--config.file={config}",
        f"--storage.tsdb.path={data_dir}",
        f"--web.listen-address={listen}",
        "--log.level=warn",
    )


def start_alertmanager(config: Path, data_dir: Path, listen: str) -> subprocess.Popen[bytes]:
    return _spawn(
        binary("alertmanager"),
        f"--config.file={config}",
        f"--storage.path={data_dir}",
        f"--web.listen-address={listen}",
        "--cluster.listen-address=",  # a single local instance: no gossip port
        "--log.level=warn",
    )


def start_postgres_exporter(dsn: str, listen: str) -> subprocess.Popen[bytes]:
    env = os.environ | {"DATA_SOURCE_NAME": dsn}
    return _spawn(binary("postgres_exporter"), f"--web.listen-address={listen}", env=env)


def _spawn(
    executable: str | None, *args: str, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    if executable is None:
        raise SystemExit("binary not found: install prometheus and prometheus-alertmanager")
    return subprocess.Popen([executable, *args], env=env)


def wait_ready(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} not ready after {timeout}s")
        time.sleep(0.2)


def stop(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        if process.poll() is None:
            process.terminate()
    for process in processes:
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()


@contextmanager
def running(processes: list[subprocess.Popen[bytes]]) -> Iterator[None]:
    try:
        yield
    finally:
        stop(processes)


def _slack_url_file(args: argparse.Namespace, run_dir: Path) -> Path:
    url = os.environ.get("SLACK_WEBHOOK_URL")
    if url:
        path = run_dir / "slack_webhook_url"
        path.write_text(url.strip() + "\n")
        path.chmod(0o600)
        return path
    path = Path(args.slack_webhook_url_file).resolve()
    if not path.exists():
        print(
            f"stack: no Slack webhook ({path} missing, SLACK_WEBHOOK_URL unset): alerts will "
            "show in Alertmanager but not reach Slack",
            file=sys.stderr,
        )
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--watcher", default="127.0.0.1:8000", help="Watcher host:port")
    parser.add_argument("--prometheus", default="127.0.0.1:9090", help="listen host:port")
    parser.add_argument("--alertmanager", default="127.0.0.1:9093", help="listen host:port")
    parser.add_argument(
        "--run-dir", default=str(ROOT / ".watcher-data" / "stack"), help="configs and data"
    )
    parser.add_argument("--token-file", default=os.environ.get("WATCHER_METRICS_TOKEN_FILE"))
    parser.add_argument(
        "--slack-webhook-url-file", default=str(ROOT / "secrets" / "slack_webhook_url")
    )
    parser.add_argument("--postgres-dsn", help="start postgres-exporter against this DSN")
    parser.add_argument("--fast", action="store_true", help="1 s intervals (demos, tests)")
    args = parser.parse_args(argv)

    run_dir = Path(args.run_dir).resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    exporter = "127.0.0.1:9187" if args.postgres_dsn else None
    addresses = Addresses(args.watcher, args.prometheus, args.alertmanager, exporter)
    token = Path(args.token_file).resolve() if args.token_file else None
    if token is None and DEFAULT_TOKEN_FILE.exists():
        token = DEFAULT_TOKEN_FILE
    if token is None:
        print(
            f"stack: no token file ({DEFAULT_TOKEN_FILE.relative_to(ROOT)} or "
            "WATCHER_METRICS_TOKEN_FILE): scraping without authentication, which only works "
            "with WATCHER_AUTH_ENABLED=false",
            file=sys.stderr,
        )
    prom_config = prometheus_config(run_dir, addresses, token_file=token, fast=args.fast)
    am_config = alertmanager_config(run_dir, _slack_url_file(args, run_dir), fast=args.fast)
    processes = [
        start_alertmanager(am_config, run_dir / "alertmanager-data", args.alertmanager),
        start_prometheus(prom_config, run_dir / "prometheus-data", args.prometheus),
    ]
    if exporter:
        processes.append(start_postgres_exporter(args.postgres_dsn, exporter))
    with running(processes):
        wait_ready(f"http://{args.prometheus}/-/ready")
        wait_ready(f"http://{args.alertmanager}/-/ready")
        print(
            f"stack: Prometheus http://{args.prometheus}  Alertmanager http://{args.alertmanager}"
            f"  scraping Watcher at {args.watcher} — Ctrl-C to stop",
            file=sys.stderr,
        )
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        try:
            while all(p.poll() is None for p in processes):
                time.sleep(1)
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
