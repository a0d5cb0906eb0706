"""`track()`: the sync and async context managers and decorators that drive a run.

The lifecycle itself (what is sent, when, and how failures are handled) is in `_run`: two
generators that yield HTTP calls and receive their results, or have the `WatcherError` thrown
in. `_drive` and `_adrive` are the only places that turn those calls into requests.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, ParamSpec, TypeVar, Unpack

from watcher_client._errors import PipelineInactive, WatcherError
from watcher_client._models import Address, PipelineConfig, Watermark
from watcher_client._run import SPOOL, BaseRun, Spec, Steps, closing, opening

if TYPE_CHECKING:
    from watcher_client._async import AsyncWatcherClient
    from watcher_client._sync import WatcherClient

P = ParamSpec("P")
R = TypeVar("R")


def _suppress(run: BaseRun, exc: BaseException | None) -> bool:
    return run.skipped and isinstance(exc, PipelineInactive)


def _note(exc: BaseException, failure: WatcherError) -> None:
    # The body's exception matters more than Watcher's: it propagates, carrying this note.
    exc.add_note(f"watcher (strict): recording the failed run also failed: {failure}")


# -- sync ----------------------------------------------------------------------------------


class Run(BaseRun):
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
        **config: Unpack[PipelineConfig],
    ) -> Track:
        """A nested run (same pipeline type unless given) whose execution carries parent_id."""
        spec = self._child_spec(
            name,
            pipeline_type_name,
            next_watermark=next_watermark,
            sources=sources,
            targets=targets,
            strict=strict,
            config=dict(config),
        )
        return Track(self.client, spec, parent=self)


def _drive(client: WatcherClient, steps: Steps) -> None:
    try:
        call = next(steps)
        while True:
            method, path, body = call
            if method == SPOOL:
                call = steps.send(client._spool_call(path, body))
                continue
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


class AsyncRun(BaseRun):
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
        **config: Unpack[PipelineConfig],
    ) -> AsyncTrack:
        """A nested run (same pipeline type unless given) whose execution carries parent_id."""
        spec = self._child_spec(
            name,
            pipeline_type_name,
            next_watermark=next_watermark,
            sources=sources,
            targets=targets,
            strict=strict,
            config=dict(config),
        )
        return AsyncTrack(self.client, spec, parent=self)


async def _adrive(client: AsyncWatcherClient, steps: Steps) -> None:
    try:
        call = next(steps)
        while True:
            method, path, body = call
            if method == SPOOL:
                call = steps.send(client._spool_call(path, body))
                continue
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
