# Generated from _async/_core.py by scripts/unasync.py: edit that file, then run the script.
"""The transport every route method shares: settings, retries, the spool (`request`, `_spool_raw`)."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import httpx

from watcher_client import _flush, _http
from watcher_client._errors import WatcherError
from watcher_client._models import (
    JSON,
)
from watcher_client._spool import spoolable as _spoolable

logger = logging.getLogger("watcher_client")


class Core:
    """What every route method stands on: `request()` (retried) and the spool for runs."""

    def __init__(
        self,
        base_url: str | None = None,
        *,
        token: str | None = None,
        timeout: float | httpx.Timeout | None = None,
        retry: _http.RetryPolicy | None = None,
        strict: bool = False,
        transport: httpx.BaseTransport | None = None,
        env: Mapping[str, str] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        spool: bool | None = None,
        spool_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        environ = os.environ if env is None else env
        self.settings = _http.Settings.resolve(base_url, token, timeout, environ)
        # Calls an outage made impossible, kept on disk and replayed (`_spool`, `_flush`).
        self.spool = _flush.spool_from_env(spool, spool_dir, environ, self.settings.base_url)
        self._flusher = None if self.spool is None else _flush.Background(self.spool, self.settings)
        self.retry = retry or _http.RetryPolicy()
        self.strict = strict
        self._sleep = sleep
        self._http = httpx.Client(
            base_url=self.settings.base_url,
            headers=self.settings.headers(),
            timeout=self.settings.timeout,
            transport=transport,
        )

    def request(
        self,
        method: str,
        path: str,
        *,
        body: _http.Body | None = None,
        params: Mapping[str, Any] | None = None,
        retry: bool = True,
    ) -> Any:
        """Send one request, retrying per `self.retry`; return the decoded JSON (None for 204)."""
        attempt = 0
        while True:
            try:
                response = self._send(method, path, body, params)
                if response.is_success:
                    if self._flusher is not None:
                        self._flusher.succeeded()
                    return _http.decode(response)
                error = _http.response_error(response)
            except _http.REQUEST_ERRORS as exc:
                error = _http.request_error(exc)
            delay = self.retry.delay(attempt, error) if retry else None
            if delay is None:
                raise error
            logger.debug("retrying %s %s in %.2fs after: %s", method, path, delay, error)
            self._sleep(delay)
            attempt += 1

    def _send(
        self,
        method: str,
        path: str,
        body: _http.Body | None,
        params: Mapping[str, Any] | None,
    ) -> httpx.Response:
        content = None if body is None else _http.encode(body)
        headers = {} if body is None else {"Content-Type": "application/json"}
        query = None if params is None else _http.query(params)
        return self._http.request(method, path, content=content, params=query, headers=headers)

    def _once(self, method: str, path: str) -> httpx.Response:
        try:
            return self._send(method, path, None, None)
        except _http.REQUEST_ERRORS as exc:
            raise _http.request_error(exc) from exc

    def _spool_call(self, kind: str, entry: Mapping[str, Any]) -> bool:
        """Append one call to the spool; False when there is none (or it dropped the run)."""
        if self.spool is None or self._flusher is None:
            return False
        fields = {k: v for k, v in entry.items() if k not in ("method", "path", "body", "run")}
        run = entry.get("run")
        stored = self.spool.append(
            kind, entry["method"], entry["path"], entry["body"], run=run, **fields
        )
        if stored:
            self._flusher.spooled()
        return stored

    def _spool_raw(self, error: WatcherError, kind: str, path: str, body: JSON) -> bool:
        if not _spoolable(error):
            return False
        # The replay reports when the call was made, not when Watcher came back.
        when = "start_date" if kind == "start" else "end_date"
        body = {when: datetime.now(UTC), **body}
        entry = {"method": "POST", "path": path, "body": body, "run": None}
        return self._spool_call(kind, entry)


def key(id_or_name: int | str) -> dict[str, int | str]:
    """The body fields naming a record by id (an int) or by name (a str)."""
    return {"id": id_or_name} if isinstance(id_or_name, int) else {"name": id_or_name}
