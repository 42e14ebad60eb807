"""A bounded pool for CPU-heavy work (CDS analysis, assessment of a posted chart, dosing fits).

Why: run on the event loop, one large chart (a 7 MB CDS call) stalled every other request of the
worker for seconds; run in an unbounded pool, a burst of them queues without limit. Here at most
``analysis_threads`` jobs run at once (off the event loop, so light requests and health checks keep
being answered), at most ``analysis_queue`` more wait, and any job beyond that is refused at once
with **503** and ``Retry-After`` - a clear "busy, try again" rather than a time-out.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import anyio
import anyio.to_thread
from fastapi import Request

from .errors import ApiError

T = TypeVar("T")
RETRY_AFTER_SECONDS = 2


class AnalysisPool:
    def __init__(self, threads: int, queue: int):
        self.threads = threads
        self.queue = queue
        self._limiter: anyio.CapacityLimiter | None = None  # made inside the event loop, on first use
        self.admitted = 0  # running + waiting
        self.refused = 0

    @property
    def limiter(self) -> anyio.CapacityLimiter:
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(self.threads)
        return self._limiter

    def _admit(self) -> None:
        if self.admitted >= self.threads + self.queue:
            self.refused += 1
            raise ApiError(503, "busy", "the server is busy with other analyses; try again in a few seconds",
                           headers={"Retry-After": str(RETRY_AFTER_SECONDS)})
        self.admitted += 1

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn(*args, **kwargs)`` on a pool thread; 503 when ``threads + queue`` jobs are already admitted."""
        self._admit()
        try:
            return await anyio.to_thread.run_sync(functools.partial(fn, *args, **kwargs), limiter=self.limiter)
        finally:
            self.admitted -= 1

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold one of the pool's places while a synchronous route runs on FastAPI's own thread pool
        (the same bound and the same 503 as :meth:`run`)."""
        self._admit()
        owner = object()
        try:
            await self.limiter.acquire_on_behalf_of(owner)
            try:
                yield
            finally:
                self.limiter.release_on_behalf_of(owner)
        finally:
            self.admitted -= 1


def pool_of(app: Any) -> AnalysisPool:
    pool: AnalysisPool = app.state.analysis_pool
    return pool


async def analysis_slot(request: Request) -> AsyncIterator[None]:
    """FastAPI dependency for a synchronous CPU-heavy route: ``dependencies=[Depends(analysis_slot)]``."""
    async with pool_of(request.app).slot():
        yield
