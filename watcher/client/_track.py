"""`track()`: record one run of a pipeline around the user's code, failing open.

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
the warning) on the `watcher.client` logger, and the user's code runs untracked; with
`strict=True` it is raised instead.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Awaitable, Callable, Generator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar
from uuid import uuid4

from watcher.client._errors import PipelineInactive, ServerError, WatcherError, WatcherUnavailable
from watcher.client._http import compact, pipeline_body, start_body, watermark_text
from watcher.client._models import JSON, Address, Watermark

if TYPE_CHECKING:
    from watcher.client._async import AsyncWatcherClient
    from watcher.client._sync import WatcherClient

logger = logging.getLogger("watcher.client")

P = ParamSpec("P")
R = TypeVar("R")
Call = tuple[str, str, dict[str, Any]]
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


class _BaseRun:
    """One run of a pipeline as the body sees it. Set counts and metadata on it."""

    def __init__(self, spec: Spec, parent: _BaseRun | None = None) -> None:
        self.spec = spec
        self.name = spec.name
        self.parent = parent
        self.session = parent.session if parent else _Session()
        self.run_id = str(uuid4())
        self.pipeline_id: int | None = None
        self.execution_id: int | None = None
        self.load_lineage: bool | None = None
        self.skipped = False
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
            "watcher: %s for pipeline %r failed, the pipeline itself is unaffected "
            "(this run may be missing from Watcher): %s",
            step,
            self.name,
            error,
        )

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


def opening(run: _BaseRun) -> Steps:
    """Steps 1-3 of the module docstring."""
    spec = run.spec
    if run.parent is not None and not run.parent.tracked:
        return  # the parent already failed open (and warned); its children run untracked too
    body = pipeline_body(spec.name, spec.pipeline_type_name, spec.config)
    if run._next_watermark is not None:
        body["next_watermark"] = run._next_watermark
    try:
        synced = yield ("POST", "/pipeline", body)
    except WatcherError as error:
        run.fail_open(error, "syncing the pipeline")
        return
    run.pipeline_id = synced["id"]
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
            run.fail_open(error, "posting lineage")
            if isinstance(error, WatcherUnavailable | ServerError):
                return  # a start now would only wait out the same outage
    run._started_at = _now()
    start = start_body(
        run.pipeline_id,
        None,
        run._started_at,
        run.parent.execution_id if run.parent else None,
        run._watermark,
        run._next_watermark,
        run.run_id,
    )
    try:
        started = yield ("POST", "/start_pipeline_execution", start)
    except WatcherError as error:
        run.fail_open(error, "starting the execution")
        return
    run.execution_id = started["id"]


def closing(run: _BaseRun, error: BaseException | None) -> Steps:
    """Step 4 of the module docstring."""
    if run.execution_id is None:
        return
    try:
        yield ("POST", "/end_pipeline_execution", run.end_body(error))
    except WatcherError as failure:
        run.fail_open(failure, "ending the execution")


def _lineage_body(run: _BaseRun) -> JSON:
    return {
        "pipeline_id": run.pipeline_id,
        "source_addresses": list(run.spec.sources),
        "target_addresses": list(run.spec.targets),
    }


def _suppress(run: _BaseRun, exc: BaseException | None) -> bool:
    return run.skipped and isinstance(exc, PipelineInactive)


def _note(exc: BaseException, failure: WatcherError) -> None:
    # The body's exception matters more than Watcher's: it propagates, carrying this note.
    exc.add_note(f"watcher (strict): recording the failed run also failed: {failure}")


# -- sync ----------------------------------------------------------------------------------


class Run(_BaseRun):
    def __init__(self, client: WatcherClient, spec: Spec, parent: Run | None = None) -> None:
        super().__init__(spec, parent)
        self.client = client

    def child(
        self,
        name: str,
        pipeline_type_name: str | None = None,
        *,
        next_watermark: Watermark | None = None,
        sources: Sequence[Address] = (),
        targets: Sequence[Address] = (),
        strict: bool | None = None,
        **config: Any,
    ) -> Track:
        """A nested run (same pipeline type unless given) whose execution carries parent_id."""
        spec = self._child_spec(
            name,
            pipeline_type_name,
            next_watermark=next_watermark,
            sources=sources,
            targets=targets,
            strict=strict,
            config=config,
        )
        return Track(self.client, spec, parent=self)


def _drive(client: WatcherClient, steps: Steps) -> None:
    try:
        call = next(steps)
        while True:
            method, path, body = call
            try:
                result = client.request(method, path, body=body)
            except WatcherError as error:
                call = steps.throw(error)
            else:
                call = steps.send(result)
    except StopIteration:
        return


class Track:
    """A context manager (`with ... as run`) and a decorator; see `WatcherClient.track`."""

    def __init__(self, client: WatcherClient, spec: Spec, parent: Run | None = None) -> None:
        self.client = client
        self.spec = spec
        self.parent = parent
        self._run: Run | None = None

    def __enter__(self) -> Run:
        if self._run is not None:
            raise RuntimeError("a track() is entered once; call track() again for another run")
        self._run = Run(self.client, self.spec, self.parent)
        _drive(self.client, opening(self._run))
        return self._run

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        run = self._run
        assert run is not None, "__exit__ without __enter__"
        if _suppress(run, exc):
            return True
        try:
            _drive(self.client, closing(run, exc))
        except WatcherError as failure:
            if exc is None:
                raise
            _note(exc, failure)
        return False

    def __call__(self, fn: Callable[P, R]) -> Callable[P, R | None]:
        """Decorate a function: each call is one run; returns None when the run is skipped.

        A function with a parameter named `run` receives the Run as that keyword argument.
        """
        if inspect.iscoroutinefunction(fn):
            raise TypeError("decorate async functions with AsyncWatcherClient.track")
        wants_run = "run" in inspect.signature(fn).parameters

        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R | None:
            with Track(self.client, self.spec, self.parent) as run:
                if run.skipped:
                    return None
                if wants_run:
                    kwargs["run"] = run
                return fn(*args, **kwargs)
            return None  # the with block swallowed PipelineInactive

        return wrapper


# -- async ---------------------------------------------------------------------------------


class AsyncRun(_BaseRun):
    def __init__(
        self, client: AsyncWatcherClient, spec: Spec, parent: AsyncRun | None = None
    ) -> None:
        super().__init__(spec, parent)
        self.client = client

    def child(
        self,
        name: str,
        pipeline_type_name: str | None = None,
        *,
        next_watermark: Watermark | None = None,
        sources: Sequence[Address] = (),
        targets: Sequence[Address] = (),
        strict: bool | None = None,
        **config: Any,
    ) -> AsyncTrack:
        """A nested run (same pipeline type unless given) whose execution carries parent_id."""
        spec = self._child_spec(
            name,
            pipeline_type_name,
            next_watermark=next_watermark,
            sources=sources,
            targets=targets,
            strict=strict,
            config=config,
        )
        return AsyncTrack(self.client, spec, parent=self)


async def _adrive(client: AsyncWatcherClient, steps: Steps) -> None:
    try:
        call = next(steps)
        while True:
            method, path, body = call
            try:
                result = await client.request(method, path, body=body)
            except WatcherError as error:
                call = steps.throw(error)
            else:
                call = steps.send(result)
    except StopIteration:
        return


class AsyncTrack:
    """An async context manager (`async with ... as run`) and a decorator of async functions."""

    def __init__(
        self, client: AsyncWatcherClient, spec: Spec, parent: AsyncRun | None = None
    ) -> None:
        self.client = client
        self.spec = spec
        self.parent = parent
        self._run: AsyncRun | None = None

    async def __aenter__(self) -> AsyncRun:
        if self._run is not None:
            raise RuntimeError("a track() is entered once; call track() again for another run")
        self._run = AsyncRun(self.client, self.spec, self.parent)
        await _adrive(self.client, opening(self._run))
        return self._run

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        run = self._run
        assert run is not None, "__aexit__ without __aenter__"
        if _suppress(run, exc):
            return True
        try:
            await _adrive(self.client, closing(run, exc))
        except WatcherError as failure:
            if exc is None:
                raise
            _note(exc, failure)
        return False

    def __call__(self, fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R | None]]:
        """Decorate an async function: each call is one run; None when the run is skipped."""
        if not inspect.iscoroutinefunction(fn):
            raise TypeError("AsyncWatcherClient.track decorates async functions only")
        wants_run = "run" in inspect.signature(fn).parameters

        @functools.wraps(fn)
        async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R | None:
            async with AsyncTrack(self.client, self.spec, self.parent) as run:
                if run.skipped:
                    return None
                if wants_run:
                    kwargs["run"] = run
                return await fn(*args, **kwargs)
            return None  # the with block swallowed PipelineInactive

        return wrapper
