"""Finding the writable host (the leader) among the hosts DATABASE_URL names, without waiting on a dead one.

asyncpg given several hosts tries them in turn under one overall timeout: a first host that died
without a word (its address swallows every packet) spends the whole timeout, on every connection
the pool opens, and the next hosts are never tried. Here the pool's `connect` opens a connection to
every host at once, each bounded by its own timeout, keeps the first one that is writable and closes
the others. A dead host then costs nothing as long as another one is writable.

Writable means `SHOW transaction_read_only` answers off, as libpq checks for
target_session_attrs=read-write: a hot standby answers on, and so does a server whose
default_transaction_read_only is on. Each connection is made to its host by name, so TLS
verify-full checks that host's certificate.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import asyncpg

from .config import DatabaseHost, DatabaseURL

log = logging.getLogger("dw_ingest.db")


class NoWritableHost(Exception):
    """No host is writable right now (each one is down, read-only, or slower than its timeout)."""


class ReadOnlyHost(Exception):
    """The host answered, read-only: a standby, or a leader being demoted."""


class PoolTerminated(Exception):
    """The pool this connection was for has been thrown away; its replacement finds the leader itself."""


class LeaderConnector:
    """The `connect` of one asyncpg pool: each new connection goes to the host that is writable now."""

    def __init__(self, url: DatabaseURL, per_host_timeout: float):
        self._targets = [(host, url.host_dsn(host)) for host in url.hosts]
        self._timeout = per_host_timeout
        self._terminated = False
        self.leader: DatabaseHost | None = None  # the host of the last connection opened
        self._stray: set[asyncio.Task[asyncpg.Connection]] = set()

    def terminate(self) -> None:
        """Connections still being opened for this pool (it is being thrown away) give up at once."""
        self._terminated = True

    async def __call__(self, dsn: str | None = None, **kwargs: Any) -> asyncpg.Connection:
        """Called by the pool as asyncpg.connect(dsn, **connect_kwargs); its DSN and timeout are
        replaced by each host's DSN and the per-host timeout."""
        if self._terminated:
            raise PoolTerminated("the pool was reset")
        kwargs["timeout"] = self._timeout
        kwargs["target_session_attrs"] = "any"  # the check is done here, not by asyncpg (or PGTARGETSESSIONATTRS)
        attempts = {asyncio.ensure_future(self._attempt(host_dsn, kwargs)): host for host, host_dsn in self._targets}
        pending = set(attempts)
        chosen: asyncio.Task[asyncpg.Connection] | None = None
        try:
            while pending and chosen is None:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                # In host order when several finish together (two writable hosts: a leader being
                # demoted and its successor; the other one's writes fail and send us back here).
                chosen = next((t for t in attempts if t in done and not t.cancelled() and t.exception() is None), None)
        finally:
            for task in attempts:
                if task is not chosen:
                    # Not awaited: a host that does not answer must not hold up the winner. Whatever
                    # the attempt still produces is closed (or its error read) when it ends.
                    task.cancel()
                    self._stray.add(task)
                    task.add_done_callback(self._drop)
        if chosen is None:
            raise NoWritableHost(
                "no writable database host: " + "; ".join(f"{attempts[t]} {_describe(t)}" for t in attempts)
            )
        if self._terminated:  # the pool was reset while this connection was being opened
            chosen.result().terminate()
            raise PoolTerminated("the pool was reset")
        if attempts[chosen] != self.leader:
            if self.leader is not None:
                log.warning("the writable database host is now %s (was %s)", attempts[chosen], self.leader)
            self.leader = attempts[chosen]
        return chosen.result()

    async def _attempt(self, dsn: str, kwargs: dict[str, Any]) -> asyncpg.Connection:
        async with asyncio.timeout(self._timeout):
            conn = await asyncpg.connect(dsn, **kwargs)
            try:
                read_only = await conn.fetchval("SHOW transaction_read_only")
            except BaseException:
                conn.terminate()
                raise
        if read_only != "off":
            conn.terminate()
            raise ReadOnlyHost("read-only")
        return conn

    def _drop(self, task: asyncio.Task[asyncpg.Connection]) -> None:
        self._stray.discard(task)
        if task.cancelled():
            return
        if task.exception() is None:
            task.result().terminate()


def _describe(task: asyncio.Task[asyncpg.Connection]) -> str:
    if task.cancelled():
        return "cancelled"
    exc = task.exception()
    if isinstance(exc, ReadOnlyHost):
        return "read-only"
    if isinstance(exc, TimeoutError):
        return "no answer (timeout)"
    return f"{type(exc).__name__}: {exc}".strip().rstrip(":")
