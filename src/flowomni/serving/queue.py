"""A bounded work queue for answers: the engine's decode-loop jobs, or blocking generators.

At most `max_concurrent` answers run at once, at most `max_waiting` more wait for a slot;
anything beyond that is refused at once with `Busy`, so load never builds an unbounded
backlog. An answer is a job for the engine's decode loop (`Engine.submit`: one thread steps
every running answer together, batcher.py) or, for models the loop cannot step, a blocking
generator run in a worker thread. Either way events reach the asyncio side through a per-job
queue. Stopping early (barge-in, a closed socket) sets a flag the loop checks before every
step (a worker, between events); the slot is only given back once the answer holds no decode
slot any more (`Ticket.ended`), so the concurrency limit counts real work.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")
_END = object()


class Busy(Exception):
    """The queue is full: the request was not accepted."""


class Ticket:
    """An admitted job. It counts as waiting until it runs (or is closed unused); `ended` is
    set once it holds no place in the queue any more (its worker, if any, has returned)."""

    def __init__(self, queue: WorkQueue) -> None:
        self.queue = queue
        self.used = False
        self.ended = asyncio.Event()

    def close(self) -> None:
        """Give the place back if the job never ran (idempotent)."""
        if not self.used:
            self.used = True
            self.queue.waiting -= 1
            self.ended.set()


class _Raised:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


class WorkQueue:
    def __init__(self, max_concurrent: int, max_waiting: int) -> None:
        if max_concurrent < 1 or max_waiting < 0:
            raise ValueError(f"need max_concurrent >= 1 and max_waiting >= 0, got {max_concurrent}, {max_waiting}")
        self.max_concurrent, self.max_waiting = max_concurrent, max_waiting
        self.running = 0  # answers holding a decode slot or a worker (including ones told to stop and not yet stopped)
        self.waiting = 0
        self.refused = 0
        self._sem: asyncio.Semaphore | None = None  # made on first use, inside the event loop
        self._pool = ThreadPoolExecutor(max_concurrent, thread_name_prefix="flowomni-gen")

    def stats(self) -> dict[str, int]:
        return {
            "running": self.running,
            "waiting": self.waiting,
            "refused": self.refused,
            "max_concurrent": self.max_concurrent,
            "max_waiting": self.max_waiting,
        }

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    @property
    def full(self) -> bool:
        return self.running + self.waiting >= self.max_concurrent + self.max_waiting

    def admit(self) -> Ticket:
        """Take a place in the queue now, or raise Busy. Synchronous, so callers know at once
        whether a request is accepted."""
        if self.full:
            self.refused += 1
            raise Busy(f"server busy: {self.running} answers running and {self.waiting} waiting")
        self.waiting += 1
        return Ticket(self)

    async def stream(
        self, ticket: Ticket, make: Callable[[threading.Event], Any], on_start: Callable[[float], Any] | None = None
    ) -> AsyncIterator[T]:
        """Wait for a slot, run `make(stop)`'s job and yield its items; re-raises its exceptions.
        `make(stop)` returns a decode-loop job (an object with `start(sink)`, see
        inference/batcher.py) or an iterator, run in a worker thread. `on_start(wait_s)` is called
        when the slot is granted. Use with `contextlib.aclosing` so that leaving early stops the
        job: `stop` is set then, and a job that polls it (the engine's `should_stop`) ends within
        one step, not one item."""
        if ticket.used or ticket.queue is not self:
            raise RuntimeError("a ticket runs one job, on the queue that issued it")
        ticket.used = True
        if self._sem is None:
            self._sem = asyncio.Semaphore(self.max_concurrent)
        t0 = time.perf_counter()
        try:
            await self._sem.acquire()
        except BaseException:
            ticket.ended.set()
            raise
        finally:
            self.waiting -= 1
        self.running += 1
        loop = asyncio.get_running_loop()
        items: asyncio.Queue[Any] = asyncio.Queue()
        stop = threading.Event()

        def put(item: Any) -> None:
            try:
                loop.call_soon_threadsafe(items.put_nowait, item)
            except RuntimeError:  # the event loop is gone (server shutting down)
                stop.set()

        def work(it: Iterator[Any]) -> None:
            try:
                for item in it:
                    if stop.is_set():
                        break
                    put(item)
            except BaseException as e:  # noqa: BLE001 - handed to the consumer
                put(_Raised(e))
            finally:
                if hasattr(it, "close"):
                    it.close()  # runs the generator's cleanup in its own thread
                put(_END)

        def release(_: Any = None) -> None:
            if ticket.ended.is_set():
                return
            self.running -= 1
            self._sem.release()  # type: ignore[union-attr]
            ticket.ended.set()

        def deliver(item: Any) -> None:  # on the event loop, from a decode-loop job's sink
            if item is None:
                items.put_nowait(_END)
                release()
            else:
                items.put_nowait(_Raised(item) if isinstance(item, BaseException) else item)

        def sink(item: Any) -> None:  # in the decode loop's thread
            try:
                loop.call_soon_threadsafe(deliver, item)
            except RuntimeError:  # the event loop is gone (server shutting down)
                stop.set()

        try:
            if on_start is not None:
                on_start(time.perf_counter() - t0)
            job = make(stop)
            if hasattr(job, "start"):
                job.start(sink)
            else:
                fut = loop.run_in_executor(self._pool, work, job)
                fut.add_done_callback(release)  # runs on the loop once the worker has returned
        except BaseException:
            release()
            raise
        try:
            while True:
                item = await items.get()
                if item is _END:
                    return
                if isinstance(item, _Raised):
                    raise item.exc
                yield item
        finally:
            stop.set()
