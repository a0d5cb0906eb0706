"""Development profiling: with WATCHER_PROFILING=true, `?profile=true` on any request returns
a pyinstrument HTML profile of that request instead of its body (as the original offers)."""

from __future__ import annotations

from starlette.responses import HTMLResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class ProfilingMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or b"profile=true" not in scope.get("query_string", b""):
            await self.app(scope, receive, send)
            return
        from pyinstrument import Profiler

        async def discard(message: Message) -> None:
            return None

        profiler = Profiler(async_mode="enabled")
        profiler.start()
        try:
            await self.app(scope, receive, discard)
        finally:
            profiler.stop()
        await HTMLResponse(profiler.output_html())(scope, receive, send)
