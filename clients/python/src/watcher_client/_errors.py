"""What the client raises. Route methods always raise; `track()` raises only when strict.

WatcherError                  anything the client reports
 ├── WatcherUnavailable       no answer: connection refused, timeout, network error
 ├── InvalidResponse          an answer that is not the JSON the contract promises, a body
 │                            httpx cannot decode, a redirect loop (not retried)
 └── APIError                 an error status (.status_code, .detail, .errors, .body)
      ├── BadRequest          400 / 413
      ├── ValidationError     422  a field is wrong (.errors carries loc and msg)
      ├── AuthenticationError 401  no or unknown token
      ├── PermissionDenied    403  the token lacks the scope
      ├── NotFound            404  an id or name that does not exist
      ├── Conflict            409  the request contradicts stored state
      ├── RateLimited         429  (retried, honouring Retry-After)
      └── ServerError         5xx  (retried)
           └── ServiceUnavailable  503  the database is down (retried, honouring Retry-After)

PipelineInactive              not an error: the pipeline is paused in Watcher. Raised inside
                              a `track` body and swallowed by the `with` block itself.
"""

from __future__ import annotations

from typing import Any


class WatcherError(Exception):
    """Base of every error the client raises."""

    retryable = False
    retry_after: float | None = None


class WatcherUnavailable(WatcherError):
    retryable = True


class Spooled(WatcherUnavailable):
    """Watcher could not take the call (an outage past the retries); it is in the local spool
    and will be replayed. `run_id` is the spooled start's (None for other calls)."""

    retryable = False

    def __init__(self, message: str, run_id: str | None = None) -> None:
        super().__init__(message)
        self.run_id = run_id


class InvalidResponse(WatcherError):
    pass


class APIError(WatcherError):
    def __init__(
        self,
        status_code: int,
        detail: str,
        errors: list[dict[str, Any]] | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(f"{status_code}: {detail}")
        self.status_code = status_code
        self.detail = detail
        self.errors = errors or []
        self.retry_after = retry_after
        self.body: Any = None  # the decoded JSON of the answer, when it was JSON


class BadRequest(APIError):
    pass


class ValidationError(APIError):
    pass


class AuthenticationError(APIError):
    pass


class PermissionDenied(APIError):
    pass


class NotFound(APIError):
    pass


class Conflict(APIError):
    pass


class RateLimited(APIError):
    retryable = True


class ServerError(APIError):
    retryable = True


class ServiceUnavailable(ServerError):
    pass


class PipelineInactive(Exception):
    """The pipeline is inactive (`active = false`): its run is skipped, nothing is recorded."""

    def __init__(self, pipeline: str) -> None:
        super().__init__(f"pipeline {pipeline!r} is inactive in Watcher; its run is skipped")
        self.pipeline = pipeline


_BY_STATUS: dict[int, type[APIError]] = {
    401: AuthenticationError,
    403: PermissionDenied,
    404: NotFound,
    409: Conflict,
    422: ValidationError,
    429: RateLimited,
    503: ServiceUnavailable,
}

# 501 and 505 say the request can never work; retrying them only delays the failure.
_NOT_RETRYABLE_5XX = frozenset({501, 505})


def error_for_status(
    status_code: int,
    detail: str,
    errors: list[dict[str, Any]] | None = None,
    retry_after: float | None = None,
) -> APIError:
    cls = _BY_STATUS.get(status_code)
    if cls is None:
        cls = ServerError if status_code >= 500 else BadRequest
    error = cls(status_code, detail, errors, retry_after)
    if status_code in _NOT_RETRYABLE_5XX:
        error.retryable = False
    return error
