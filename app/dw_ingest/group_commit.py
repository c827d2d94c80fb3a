"""Group commit: writes that arrive while others are in flight share one statement and one commit.

A single-record request costs the database a round trip, a statement and a commit; under load most
of that is overhead. Here each request queues its item and waits; a writer takes everything queued
(up to a cap) and writes it in one call. Nobody waits for a timer: an idle service writes a lone
request at once, and grouping happens only when requests arrive while writers are busy, which is
exactly when it pays. A request is answered only after the write holding its item has returned,
so success still means committed; if that write fails, every request in the group gets the same
exception and none of them is acknowledged.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class GroupCommit(Generic[T, R]):
    """Queue items; at most `writers` concurrent calls of `write`, each with up to `max_items` items.

    `write` gets distinct items (by `key`) and returns one result per item, in order. An item whose
    key is already in the group being formed waits for a later group, so a statement never touches
    the same row twice. Order is what it was without grouping: a request sent after another was
    answered is written after it; requests in flight together are written in no promised order.
    """

    def __init__(
        self,
        write: Callable[[Sequence[T]], Awaitable[Sequence[R]]],
        key: Callable[[T], Hashable],
        *,
        max_items: int,
        writers: int,
    ):
        self._write = write
        self._key = key
        self._max_items = max_items
        self._max_writers = writers
        self._writers = 0
        self._queue: deque[tuple[T, asyncio.Future[R]]] = deque()
        self._tasks: set[asyncio.Task[None]] = set()

    async def submit(self, item: T) -> R:
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._queue.append((item, future))
        if self._writers < self._max_writers:
            self._writers += 1
            # A task, not this request's own coroutine: the group must be written and every waiter
            # answered even if the request that started it is cancelled.
            task = asyncio.create_task(self._drain())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return await future

    def _take(self) -> list[tuple[T, asyncio.Future[R]]]:
        group: list[tuple[T, asyncio.Future[R]]] = []
        keys: set[Hashable] = set()
        later: list[tuple[T, asyncio.Future[R]]] = []
        while self._queue and len(group) < self._max_items:
            entry = self._queue.popleft()
            if entry[1].done():  # its request was cancelled before the write: nobody to answer
                continue
            key = self._key(entry[0])
            if key in keys:
                later.append(entry)
            else:
                keys.add(key)
                group.append(entry)
        self._queue.extendleft(reversed(later))
        return group

    async def _drain(self) -> None:
        try:
            while self._queue:
                group = self._take()
                if not group:
                    continue
                try:
                    results = await self._write([item for item, _ in group])
                    if len(results) != len(group):  # a bug in `write`; never leave a request waiting
                        raise RuntimeError(f"{len(results)} results for {len(group)} items")
                except BaseException as exc:
                    for _, future in group:
                        if not future.done():
                            future.set_exception(exc)
                    if not isinstance(exc, Exception):
                        raise
                    continue
                for (_, future), result in zip(group, results, strict=True):
                    if not future.done():
                        future.set_result(result)
        finally:
            self._writers -= 1
