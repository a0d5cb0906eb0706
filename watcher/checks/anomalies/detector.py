"""When detection runs: the background `Detector` fed by successful ends, and the leader's
catch-up of executions left unchecked (see `evaluation` for what one evaluation does)."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from datetime import datetime

from sqlalchemy import text

from watcher.checks.anomalies.evaluation import evaluate_batch, evaluate_now
from watcher.db.engine import transaction
from watcher.events import ExecutionEnded
from watcher.services import Services

log = logging.getLogger("watcher.checks.anomalies")

MAX_PENDING = 10_000  # execution ids queued for background detection
DEFERRED_LOG_INTERVAL = 60.0  # seconds
CATCHUP_BATCH = 500


class Detector:
    """Runs detection after each successful end, off the request, in batches.

    Ends queue their execution id; one worker task evaluates what has queued up, set-based
    (`evaluate_batch`): a lone end is evaluated at once, a burst in a few statements per
    batch rather than per execution, so detection keeps up with ingestion. Anything dropped
    here (more than `MAX_PENDING` queued, shutdown, an error) is left with anomaly_checked_at
    null and evaluated by the catch-up job.
    """

    def __init__(self, services: Services) -> None:
        self.services = services
        self.pending: list[int] = []
        self.worker: asyncio.Task[None] | None = None
        self.deferred = 0
        self._deferred_logged_at = -math.inf

    @property
    def busy(self) -> bool:
        return bool(self.pending) or (self.worker is not None and not self.worker.done())

    def on_end(self, event: ExecutionEnded) -> None:
        if not event.success:
            return
        if len(self.pending) >= MAX_PENDING:
            self._defer()
            return
        self.pending.append(event.execution_id)
        if self.worker is None or self.worker.done():
            self.worker = asyncio.get_running_loop().create_task(self._work())

    def _defer(self) -> None:
        """Count an end left to the catch-up; log it at most once a minute, not once per end."""
        self.deferred += 1
        now = time.monotonic()
        if now - self._deferred_logged_at >= DEFERRED_LOG_INTERVAL:
            self._deferred_logged_at = now
            log.warning(
                "anomaly detection deferred to catch-up",
                extra={"pending": len(self.pending), "deferred_total": self.deferred},
            )

    async def _work(self) -> None:
        while self.pending:
            batch, self.pending = self.pending[:CATCHUP_BATCH], self.pending[CATCHUP_BATCH:]
            try:
                async with transaction(self.services.engine) as conn:
                    await evaluate_batch(conn, batch, self.services.clock.now())
            except Exception:
                log.exception("anomaly detection failed; evaluating the batch one by one")
                await _one_by_one(self.services, batch)

    async def drain(self) -> None:
        """Wait until everything queued has been evaluated (tests, shutdown)."""
        while self.worker is not None and not self.worker.done():
            await asyncio.shield(self.worker)


UNCHECKED = text("""
SELECT id, end_date FROM pipeline_execution
WHERE completed_successfully AND anomaly_checked_at IS NULL
  AND (end_date, id) > (:after_end, :after_id)
ORDER BY end_date, id LIMIT :limit
""")


async def catch_up(services: Services) -> int:
    """Evaluate every successful execution not evaluated yet, in one pass; the count claimed.

    A batch at a time, set-based (a handful of statements per batch, not per execution). A
    batch that fails is retried one execution at a time, so one bad row costs only itself;
    what fails there stays unchecked for the next pass.
    """
    after: tuple[datetime, int] = (datetime.min.replace(tzinfo=services.clock.now().tzinfo), 0)
    claimed = 0
    while True:
        async with transaction(services.engine) as conn:
            params = {"after_end": after[0], "after_id": after[1], "limit": CATCHUP_BATCH}
            batch = (await conn.execute(UNCHECKED, params)).all()
        if not batch:
            break
        ids = [row.id for row in batch]
        try:
            async with transaction(services.engine) as conn:
                claimed += len(await evaluate_batch(conn, ids, services.clock.now()))
        except Exception:
            log.exception("anomaly catch-up batch failed; evaluating it one by one")
            claimed += await _one_by_one(services, ids)
        if len(batch) < CATCHUP_BATCH:
            break
        after = (batch[-1].end_date, batch[-1].id)
    if claimed:
        log.info("anomaly catch-up", extra={"evaluated": claimed})
    return claimed


async def _one_by_one(services: Services, ids: list[int]) -> int:
    claimed = 0
    for execution_id in ids:
        try:
            if await evaluate_now(services, execution_id) is not None:
                claimed += 1
        except Exception:
            log.exception("anomaly catch-up failed for one execution")
    return claimed
