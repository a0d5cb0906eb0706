"""The run lifecycle of `track()`, free of I/O: what a run holds and the calls it makes.

The lifecycle is written once, as two generators that yield HTTP calls and receive their
results (or have the `WatcherError` thrown in); the sync and async managers only drive them.

Opening a run:
1. `POST /pipeline` (create-or-get, with next_watermark and rules) → pipeline id, the stored
   watermark to start from, `active`, `load_lineage`. Inactive → the run is skipped.
2. `POST /address_lineage` when `load_lineage` is true and sources/targets were given.
3. `POST /start_pipeline_execution` with a client-generated run_id, so a retried start
   returns the same execution instead of a second one.
Closing it:
4. `POST /end_pipeline_execution` with the counts, or with `error_type`/`error_message` in
   execution_metadata when the body raised; the exception is always re-raised. On success
   Watcher moves the pipeline's watermark to next_watermark and turns load_lineage off.

Fail-open: any `WatcherError` on the way is logged once per top-level run (children share
the warning) on the `watcher_client` logger, and the user's code runs untracked; with
`strict=True` it is raised instead.

Spooling (`_spool`): when the failure is an outage (unreachable, 5xx, 429 past the retries)
and the client has a spool, the steps still to come are yielded as `SPOOL` calls instead:
the pipeline sync, the start (naming the pipeline when its id is unknown) and, at the end,
the end carrying its start so the replay can find its execution. The run is then `spooled`.
"""

from __future__ import annotations

import logging
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

from watcher_client._errors import (
    InvalidResponse,
    PipelineInactive,
    ServerError,
    WatcherError,
    WatcherUnavailable,
)
from watcher_client._http import compact, pipeline_body, start_body, watermark_text
from watcher_client._models import JSON, Address, Watermark
from watcher_client._spool import spoolable

logger = logging.getLogger("watcher_client")

Call = tuple[str, str, dict[str, Any]]
# A step for the local spool instead of Watcher: (SPOOL, kind, entry); the driver answers True
# when the entry is on disk, False when there is no spool (or it dropped the run).
SPOOL = "SPOOL"
Steps = Generator[Call, Any, None]
ERROR_MESSAGE_LIMIT = 4000


@dataclass(frozen=True)
class Spec:
    """What `track(...)` was asked to record; one Spec can open many runs (a decorator)."""

    name: str
    pipeline_type_name: str
    next_watermark: Watermark | None = None
    sources: Sequence[Address] = ()
    targets: Sequence[Address] = ()
    strict: bool = False
    config: JSON = field(default_factory=dict)


class _Session:
    """State shared by a top-level run and its children: they warn once between them."""

    warned = False


class BaseRun:
    """One run of a pipeline as the body sees it. Set counts and metadata on it."""

    def __init__(self, spec: Spec, parent: BaseRun | None = None) -> None:
        self.spec = spec
        self.name = spec.name
        self.parent = parent
        self.session: _Session = parent.session if parent else _Session()
        self.run_id = str(uuid4())
        self.pipeline_id: int | None = None
        self.execution_id: int | None = None
        self.load_lineage: bool | None = None
        self.skipped = False
        self.spooled = False
        self._start: JSON | None = None  # the start body, once it had to be spooled
        self.inserts: int | None = None
        self.updates: int | None = None
        self.soft_deletes: int | None = None
        self.total_rows: int | None = None
        self.metadata: JSON = {}
        self._watermark: str | None = None
        self._next_watermark = watermark_text(spec.next_watermark)
        self._started_at: datetime | None = None

    @property
    def tracked(self) -> bool:
        """True when Watcher is recording this run (False when skipped or failing open)."""
        return self.execution_id is not None

    @property
    def watermark(self) -> str | None:
        """The stored watermark to start from (None on a first run or when untracked)."""
        self._raise_if_skipped()
        return self._watermark

    @property
    def next_watermark(self) -> str | None:
        """Where this run loads up to: the watermark of the next run once this one succeeds."""
        self._raise_if_skipped()
        return self._next_watermark

    def _raise_if_skipped(self) -> None:
        if self.skipped:
            raise PipelineInactive(self.name)

    def _child_spec(self, name: str, pipeline_type_name: str | None, **kwargs: Any) -> Spec:
        self._raise_if_skipped()
        strict = kwargs.pop("strict", None)
        return Spec(
            name=name,
            pipeline_type_name=pipeline_type_name or self.spec.pipeline_type_name,
            strict=self.spec.strict if strict is None else strict,
            **kwargs,
        )

    def fail_open(self, error: WatcherError, step: str) -> None:
        if self.spec.strict:
            raise error
        if self.session.warned:
            logger.debug("watcher: %s for pipeline %r failed: %s", step, self.name, error)
            return
        self.session.warned = True
        logger.warning(
            "watcher: %s for pipeline %r failed, the pipeline itself is unaffected (%s): %s",
            step,
            self.name,
            "the run is spooled and will be replayed"
            if self.spooled
            else "this run may be missing from Watcher",
            error,
        )

    def may_spool(self, error: WatcherError) -> bool:
        return not self.spec.strict and spoolable(error)

    def end_body(self, error: BaseException | None) -> JSON:
        metadata = dict(self.metadata)
        if error is not None:
            metadata["error_type"] = type(error).__name__
            metadata["error_message"] = str(error)[:ERROR_MESSAGE_LIMIT]
        return compact(
            id=self.execution_id,
            completed_successfully=error is None,
            end_date=_end_date(self._started_at),
            inserts=self.inserts,
            updates=self.updates,
            soft_deletes=self.soft_deletes,
            total_rows=self.total_rows,
            execution_metadata=metadata or None,
        )


def _now() -> datetime:
    return datetime.now(UTC)


def _end_date(started_at: datetime | None) -> datetime:
    # Watcher rejects end <= start; a coarse clock can return the same instant twice.
    now = _now()
    if started_at is not None and now <= started_at:
        return started_at + timedelta(microseconds=1)
    return now


def opening(run: BaseRun) -> Steps:
    """Steps 1-3 of the module docstring."""
    spec = run.spec
    parent = run.parent
    if parent is not None and not parent.tracked and not parent.spooled:
        return  # the parent already failed open (and warned); its children run untracked too
    body = pipeline_body(spec.name, spec.pipeline_type_name, spec.config)
    if run._next_watermark is not None:
        body["next_watermark"] = run._next_watermark
    if parent is not None and parent.spooled:
        # Its parent's execution id is known only at replay: spool this run whole.
        yield from _spool_start(run, body, None)
        return
    try:
        synced = yield ("POST", "/pipeline", body)
        run.pipeline_id = _id(synced)
    except WatcherError as error:
        if run.may_spool(error):
            yield from _spool_start(run, body, None)
        run.fail_open(error, "syncing the pipeline")
        return
    run._watermark = synced.get("watermark")
    run.load_lineage = synced.get("load_lineage")
    if not synced.get("active", True):
        run.skipped = True
        logger.info("watcher: pipeline %r is inactive; skipping this run", spec.name)
        return
    if run.load_lineage and (spec.sources or spec.targets):
        try:
            yield ("POST", "/address_lineage", _lineage_body(run))
        except WatcherError as error:
            if isinstance(error, WatcherUnavailable | ServerError):
                # a start now would only wait out the same outage
                if run.may_spool(error):
                    lineage = _entry("POST", "/address_lineage", _lineage_body(run), run)
                    if (yield (SPOOL, "lineage", lineage)):
                        yield from _spool_start(run, None, run.pipeline_id)
                run.fail_open(error, "posting lineage")
                return
            run.fail_open(error, "posting lineage")
    run._started_at = _now()
    start = _start_body(run, run.pipeline_id)
    try:
        run.execution_id = _id((yield ("POST", "/start_pipeline_execution", start)))
    except WatcherError as error:
        if run.may_spool(error):
            yield from _spool_start(run, None, run.pipeline_id)
        run.fail_open(error, "starting the execution")


def _start_body(run: BaseRun, pipeline_id: int | None) -> JSON:
    assert run._started_at is not None
    return start_body(
        pipeline_id,
        run.name if pipeline_id is None else None,
        run._started_at,
        run.parent.execution_id if run.parent else None,
        run._watermark,
        run._next_watermark,
        run.run_id,
    )


def _entry(method: str, path: str, body: JSON, run: BaseRun, **extra: Any) -> JSON:
    return {"method": method, "path": path, "body": body, "run": run.run_id, **extra}


def _spool_start(run: BaseRun, pipeline: JSON | None, pipeline_id: int | None) -> Steps:
    """Spool the pipeline sync (when its id is unknown) and the start; mark the run spooled."""
    if pipeline is not None and not (
        yield (SPOOL, "pipeline", _entry("POST", "/pipeline", pipeline, run))
    ):
        return
    if run._started_at is None:
        run._started_at = _now()
    start = _start_body(run, pipeline_id)
    extra: JSON = {}
    if run.parent is not None and run.parent.execution_id is None and run.parent._start:
        extra = {"parent_run": run.parent.run_id, "parent_start": run.parent._start}
    if (yield (SPOOL, "start", _entry("POST", "/start_pipeline_execution", start, run, **extra))):
        run.spooled = True
        run._start = start


def closing(run: BaseRun, error: BaseException | None) -> Steps:
    """Step 4 of the module docstring."""
    if run.spooled:
        end = _entry("POST", "/end_pipeline_execution", run.end_body(error), run, start=run._start)
        yield (SPOOL, "end", end)
        return
    if run.execution_id is None:
        return
    body = run.end_body(error)
    try:
        yield ("POST", "/end_pipeline_execution", body)
    except WatcherError as failure:
        if run.may_spool(failure):
            spooled = yield (SPOOL, "end", _entry("POST", "/end_pipeline_execution", body, run))
            run.spooled = bool(spooled)
        run.fail_open(failure, "ending the execution")


def _id(answer: Any) -> int:
    # A malformed answer must fail open like any other Watcher trouble, not crash the pipeline.
    if not isinstance(answer, dict) or not isinstance(answer.get("id"), int):
        raise InvalidResponse(f"expected an object with an integer id, got {answer!r:.200}")
    return int(answer["id"])


def _lineage_body(run: BaseRun) -> JSON:
    return {
        "pipeline_id": run.pipeline_id,
        "source_addresses": list(run.spec.sources),
        "target_addresses": list(run.spec.targets),
    }
