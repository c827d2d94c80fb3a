"""The connection pool and the two writes: one record (group-committed with the records that arrive
with it), or a batch in one round trip."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
from prometheus_client import Histogram

from .config import Settings
from .fast_decode import Record
from .group_commit import GroupCommit
from .leader import LeaderConnector, NoWritableHost, PoolTerminated, ReadOnlyHost
from .metrics import DB_POOL_RESETS, DB_RETRIES, DB_SECONDS, GROUP_RECORDS

log = logging.getLogger("dw_ingest.db")

_COLUMNS = "symbol, ts, open, high, low, close, volume, vwap"

# ON CONFLICT policies. "ignore" keeps the first version of a bar; "update" lets a correction feed
# overwrite it, but only when something differs, so an exact re-send changes nothing.
_ON_CONFLICT = {
    "ignore": "ON CONFLICT (symbol, ts) DO NOTHING",
    "update": (
        "ON CONFLICT (symbol, ts) DO UPDATE SET open = EXCLUDED.open, high = EXCLUDED.high, low = EXCLUDED.low, "
        "close = EXCLUDED.close, volume = EXCLUDED.volume, vwap = EXCLUDED.vwap, ingested_at = clock_timestamp() "
        "WHERE (m.open, m.high, m.low, m.close, m.volume, m.vwap) IS DISTINCT FROM "
        "(EXCLUDED.open, EXCLUDED.high, EXCLUDED.low, EXCLUDED.close, EXCLUDED.volume, EXCLUDED.vwap)"
    ),
}

# The rows, one array per column. Prices travel as their decimal text and PostgreSQL parses them
# (exactly, in C): asyncpg's binary numeric encoding goes through Decimal.as_tuple() in Python, about
# 8 of the service's CPU microseconds per row against 4 for text (measured, 1,000-row batches).
# Every column but ts goes as one array literal ('{...}', one text parameter) that PostgreSQL's
# array_in parses: asyncpg encodes a list parameter element by element, with two isinstance checks
# against collections.abc per element (in the batch profile, asyncpg's execute held 29% of the
# service's samples, 17% with literals); a literal is one join in C. 2.2 against 4.0 CPU microseconds per row for the
# arguments and the statement (1,000-row batches, measured). ts keeps asyncpg's binary encoding,
# cheaper than formatting each time as text in Python.
# xmax = 0 marks a freshly inserted row (an updated one carries the updating transaction's id).
_WRITE_ROWS = (
    f"INSERT INTO staging.market_data AS m ({_COLUMNS}) "
    "SELECT * FROM unnest($1::text::text[], $2::timestamptz[], $3::text::numeric[], $4::text::numeric[], "
    "$5::text::numeric[], $6::text::numeric[], $7::text::bigint[], $8::text::numeric[]) {conflict} "
    "RETURNING {returning}"
)
# A group of single-record requests (distinct keys): each row written comes back with its key, so
# every request learns its own outcome; a row the conflict policy left alone does not come back.
_INSERT_GROUP = _WRITE_ROWS.replace("{returning}", "m.symbol, m.ts, (xmax = 0) AS inserted")
# A batch: only the counts come back.
_INSERT_MANY = (
    "WITH written AS ("
    + _WRITE_ROWS.replace("{returning}", "(xmax = 0) AS inserted")
    + ") SELECT count(*) FILTER (WHERE inserted) AS inserted, count(*) FILTER (WHERE NOT inserted) AS updated "
    "FROM written"
)


class DatabaseUnavailable(Exception):
    """The database cannot be reached or refuses work right now; the client should retry."""


# Errors that mean "not now" rather than "bad request": connection lost or refused, server
# starting or shutting down, too many connections, a timeout, or a server that is read-only (a
# standby, or a leader being demoted), or no writable host among several.
_UNAVAILABLE = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.InterfaceError,
    asyncpg.exceptions.PostgresConnectionError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.TooManyConnectionsError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.InvalidAuthorizationSpecificationError,
    asyncpg.exceptions.InvalidPasswordError,
    asyncpg.exceptions.InsufficientResourcesError,
    asyncpg.exceptions.ReadOnlySQLTransactionError,
    # asyncpg's own state errors, TargetServerAttributeNotMatched among them. Seen when a statement
    # is sent on a connection whose server has just said goodbye (FATAL, terminating connection due
    # to administrator command: a fast shutdown) but not yet closed it: "cannot switch to state 12;
    # another operation (2) is in progress". The connection is unusable; a new one is fine.
    asyncpg.exceptions.InternalClientError,
    NoWritableHost,
    ReadOnlyHost,
    PoolTerminated,
)
# Of those, the ones after which the pool is kept: the server refused a new connection for lack of
# resources or credentials, but the pool's other connections still reach the right server.
_KEEP_POOL = (
    asyncpg.exceptions.InsufficientResourcesError,
    asyncpg.exceptions.InvalidAuthorizationSpecificationError,
    asyncpg.exceptions.InvalidPasswordError,
)

# A write that failed "not now" is tried again after this pause, doubled each time up to the cap,
# while DB_WRITE_RETRY_SECONDS last.
_RETRY_FIRST_PAUSE = 0.1
_RETRY_MAX_PAUSE = 1.0


@dataclass(frozen=True)
class WriteResult:
    received: int
    inserted: int
    updated: int

    @property
    def duplicates(self) -> int:
        return self.received - self.inserted


class Database:
    """One asyncpg pool, created lazily so the service starts (and reports not ready) without a database.

    When DATABASE_URL names several hosts, the pool connects through a LeaderConnector (leader.py):
    every connection goes to the host that is writable when it is opened. When a statement fails
    "not now" (the host died, shut down, or turned read-only), the whole pool is thrown away at once
    (terminated: nothing waits on a dead host) and the next request creates a new one, which finds
    the leader again. Writes are tried again for DB_WRITE_RETRY_SECONDS before the client gets 503.
    """

    def __init__(self, settings: Settings):
        self._settings = settings
        self._pool: asyncpg.Pool | None = None
        self._connector: LeaderConnector | None = None  # the current pool's, with several hosts
        self._creating: asyncio.Future[asyncpg.Pool] | None = None
        self._ping_sql = "SHOW transaction_read_only" if settings.database.multi_host else "SELECT 1"
        conflict = _ON_CONFLICT[settings.conflict_policy]
        self._insert_many = _INSERT_MANY.format(conflict=conflict)
        self._insert_group = _INSERT_GROUP.format(conflict=conflict)
        self._group: GroupCommit[Record, WriteResult] = GroupCommit(
            self._write_group, _key, max_items=_GROUP_MAX_RECORDS, writers=_GROUP_WRITERS
        )

    @property
    def name(self) -> str:
        return self._settings.database.database

    def pool_in_use(self) -> int:
        pool = self._pool
        if pool is None:
            return 0
        return pool.get_size() - pool.get_idle_size()

    async def _get_pool(self) -> asyncpg.Pool:
        """The pool, created by one task that every request arriving meanwhile waits for: when it
        fails they all get its error, and the next request tries again."""
        if self._pool is not None:
            return self._pool
        if self._creating is None:
            self._creating = asyncio.ensure_future(self._create_pool())
            self._creating.add_done_callback(self._created)
        # Shielded: a request that gives up (a /ready bound) does not cancel the others' pool.
        return await asyncio.shield(self._creating)

    def _created(self, task: asyncio.Future[asyncpg.Pool]) -> None:
        self._creating = None
        if not task.cancelled():
            task.exception()  # read, in case every request waiting for it was cancelled

    async def _create_pool(self) -> asyncpg.Pool:
        settings = self._settings
        connector = None
        options: dict[str, Any] = {}
        if settings.database.multi_host:
            connector = LeaderConnector(settings.database, settings.db_connect_timeout)
            options["connect"] = connector
        try:
            pool = await asyncpg.create_pool(
                settings.database.dsn,
                min_size=settings.pool_min,
                max_size=settings.pool_max,
                command_timeout=settings.db_command_timeout,
                timeout=settings.ready_timeout * 2,
                max_inactive_connection_lifetime=300,
                reset=_keep_session,
                server_settings={"application_name": f"dw-ingest-{settings.environment}"},
                **options,
            )
        except _UNAVAILABLE as exc:
            raise DatabaseUnavailable(_describe(exc)) from None
        self._pool, self._connector = pool, connector
        if connector is None:
            log.info("connected to %s", settings.database.masked)
        else:
            log.info("connected to %s, writable host %s", settings.database.masked, connector.leader or "?")
        return pool

    def _discard(self, pool: asyncpg.Pool | None, exc: BaseException) -> None:
        """Throws the pool away after a statement or a new connection failed "not now": its other
        connections may reach a dead or read-only host too. terminate() aborts every connection at
        once (close() would wait for a dead host's answer, for ever); statements under way on them
        fail and are tried again like this one. Only once per pool: a request that failed on an
        older pool leaves the new one alone."""
        if pool is None or pool is not self._pool or isinstance(exc, _KEEP_POOL):
            return
        if self._connector is not None:
            self._connector.terminate()
        self._pool = self._connector = None
        pool.terminate()
        DB_POOL_RESETS.inc()
        log.warning("database connection pool reset after %s", _describe(exc))

    async def close(self) -> None:
        if self._creating is not None:
            self._creating.cancel()
        pool, self._pool = self._pool, None
        if pool is None:
            return
        try:
            await asyncio.wait_for(pool.close(), self._settings.db_command_timeout)
        except TimeoutError:
            # A dead host never acknowledges a graceful close (measured: close() waits for ever).
            log.warning("database connections not closed within %s s: aborted", self._settings.db_command_timeout)
            pool.terminate()
        except BaseException:
            pool.terminate()
            raise

    async def ping(self, bound: float) -> None:
        """A statement on a pooled connection within `bound`; with several hosts, the host must
        still be writable. A connection that fails it is dropped, and the pool too; waiting for a
        busy pool's connection is no such failure."""
        try:
            async with asyncio.timeout(bound):
                pool = await self._get_pool()
                value = await self._run(pool, "fetchval", self._ping_sql, ())
                if value == "on":
                    exc = ReadOnlyHost("the database host is read-only")
                    self._discard(pool, exc)
                    raise exc
        except DatabaseUnavailable:
            raise
        except _UNAVAILABLE as exc:
            raise DatabaseUnavailable(_describe(exc)) from None

    async def write_one(self, record: Record) -> WriteResult:
        """Returns once the record is committed (in a group with the requests that came with it)."""
        return await self._group.submit(record)

    async def _write_group(self, records: Sequence[Record]) -> list[WriteResult]:
        GROUP_RECORDS.observe(len(records))
        result = await self._write("insert_one", "fetch", self._insert_group, records)
        written = {(r["symbol"], r["ts"]): r["inserted"] for r in result}
        # No row back: the conflict policy kept the existing row unchanged.
        return [_outcome(written.get(_key(r))) for r in records]

    async def write_many(self, records: Sequence[Record]) -> WriteResult:
        rows = records
        if self._settings.conflict_policy == "update":
            # One statement may not update the same row twice: the last version of a bar wins.
            rows = list({(r.symbol, r.ts): r for r in records}.values())
        result = await self._write("insert_many", "fetchrow", self._insert_many, rows)
        return WriteResult(received=len(records), inserted=result["inserted"], updated=result["updated"])

    async def _write(self, operation: str, method: str, statement: str, records: Sequence[Record]) -> Any:
        """One write statement on a pooled connection, timed in DB_SECONDS (failures and retries
        too); errors that mean "not now" become DatabaseUnavailable, once DB_WRITE_RETRY_SECONDS
        have passed without success.

        Trying again is safe: a write is one statement in its own transaction, and it is idempotent
        (ON CONFLICT DO NOTHING, or DO UPDATE only where something differs). Success is returned only
        once a statement returned, after its commit. When an attempt did commit but its answer was
        lost (the connection broke during the commit), the next attempt finds the rows already
        there: they are reported as duplicates (inserted 0, or updated 0) rather than inserted. The
        stored data is right; only that count is off, and only then.
        """
        started = time.perf_counter()
        deadline = time.monotonic() + self._settings.db_write_retry_seconds
        args = _columns(records)
        pause = _RETRY_FIRST_PAUSE
        try:
            while True:
                pool = None
                try:
                    pool = await self._get_pool()
                    return await self._run(pool, method, statement, args)
                except _UNAVAILABLE as exc:
                    self._discard(pool, exc)
                    failure = DatabaseUnavailable(_describe(exc))
                except DatabaseUnavailable as exc:  # the pool could not be created
                    failure = exc
                left = deadline - time.monotonic()
                if left <= 0:
                    raise failure from None
                DB_RETRIES.labels(operation=operation).inc()
                log.debug("%s failed, trying again: %s", operation, failure)
                await asyncio.sleep(min(pause, left))
                pause = min(pause * 2, _RETRY_MAX_PAUSE)
        finally:
            _db_seconds(operation).observe(time.perf_counter() - started)

    async def _run(self, pool: asyncpg.Pool, method: str, statement: str, args: Sequence[object]) -> Any:
        """One statement on a connection of `pool`. A failed new connection throws the pool away; a
        connection whose statement failed "not now" or was cancelled is terminated, not released:
        release would wait for the answer to the cancel request asyncpg sends to a timed-out
        statement's server, another DB_COMMAND_TIMEOUT when that server is dead (measured)."""
        try:
            conn = await pool.acquire()
        except _UNAVAILABLE as exc:
            self._discard(pool, exc)
            raise
        try:
            return await getattr(conn, method)(statement, *args)
        except (*_UNAVAILABLE, asyncio.CancelledError) as exc:
            with contextlib.suppress(asyncpg.exceptions.InterfaceError):  # already closed and given back
                conn.terminate()
            self._discard(pool, exc)
            raise
        except Exception as exc:
            if pool is self._pool:
                raise
            # Another request threw this pool away while the statement ran: terminate() pulls the
            # connection out from under asyncpg in whatever state it is, and asyncpg then fails with
            # whatever that state gives (seen: AttributeError, 'NoneType' object has no attribute
            # 'bind_execute', during type introspection). The write is tried again on the new pool.
            raise PoolTerminated(f"the pool was reset during the statement ({_describe(exc)})") from exc
        finally:
            await pool.release(conn)


# Up to this many single-record requests share one INSERT. One writer: the next group forms while the
# current one is written. Two writers made groups smaller (3.6 against 4.3 records at C=8) and served
# about 10% fewer requests on two cores (alternating wrk runs; noisy, but the same sign each time).
_GROUP_MAX_RECORDS = 1000
_GROUP_WRITERS = 1


@functools.cache
def _db_seconds(operation: str) -> Histogram:
    """DB_SECONDS' child for an operation, looked up once: labels() takes a lock and checks its
    arguments on every call, and a write runs for every group or batch."""
    return DB_SECONDS.labels(operation=operation)


def _key(record: Record) -> tuple[str, datetime]:
    return (record.symbol, record.ts)


def _columns(records: Sequence[Record]) -> list[object]:
    """The unnest arguments (_WRITE_ROWS), rows in key order: two writes in flight then take the
    unique index's locks in the same order and cannot deadlock on each other."""
    rows = sorted((r.symbol, r.ts, r.open, r.high, r.low, r.close, r.volume, r.vwap) for r in records)
    symbols, ts, *numbers = zip(*rows, strict=True)
    # A Decimal's or an int's text has no character an array literal must quote (NaN and infinities
    # never get here: both paths refuse them); str(Decimal) is exact, an exponent included.
    return [_text_array(symbols), list(ts), *("{" + ",".join(map(str, column)) + "}" for column in numbers)]


def _text_array(values: Sequence[str]) -> str:
    """An array literal of texts, each element quoted (so that NULL stays the text NULL): one C-speed
    join and search for the whole column. The symbol's pattern admits no quote or backslash; any
    other text is escaped all the same. NUL, which PostgreSQL's text cannot hold, separates here."""
    joined = "\x00".join(values)
    if '"' in joined or "\\" in joined:
        joined = joined.replace("\\", "\\\\").replace('"', '\\"')
    return '{"' + joined.replace("\x00", '","') + '"}'


def _outcome(inserted: bool | None) -> WriteResult:
    return WriteResult(received=1, inserted=1 if inserted else 0, updated=1 if inserted is False else 0)


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Pool reset: asyncpg's default runs RESET ALL, UNLISTEN, CLOSE ALL and unlocks advisory locks on
    every release, a round trip per request. The service changes no session state, and asyncpg
    still rolls back a transaction left open before calling this."""


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError) and not str(exc):
        return "TimeoutError: no answer in time"
    return f"{type(exc).__name__}: {exc}".strip().rstrip(":")
