"""The connection pool and the two writes: one record (group-committed with the records that arrive
with it), or a batch in one round trip."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from .config import Settings
from .fast_decode import Record
from .group_commit import GroupCommit
from .metrics import DB_SECONDS, GROUP_RECORDS

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
# xmax = 0 marks a freshly inserted row (an updated one carries the updating transaction's id).
_WRITE_ROWS = (
    f"INSERT INTO staging.market_data AS m ({_COLUMNS}) "
    "SELECT * FROM unnest($1::text[], $2::timestamptz[], $3::text[]::numeric[], $4::text[]::numeric[], "
    "$5::text[]::numeric[], $6::text[]::numeric[], $7::bigint[], $8::text[]::numeric[]) {conflict} "
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
# starting or shutting down, too many connections, or a timeout.
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
)


@dataclass(frozen=True)
class WriteResult:
    received: int
    inserted: int
    updated: int

    @property
    def duplicates(self) -> int:
        return self.received - self.inserted


class Database:
    """One asyncpg pool, created lazily so the service starts (and reports not ready) without a database."""

    def __init__(self, settings: Settings):
        self._settings = settings
        self._pool: asyncpg.Pool | None = None
        self._lock = asyncio.Lock()
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
        if self._pool is not None:
            return self._pool
        async with self._lock:
            if self._pool is None:
                try:
                    self._pool = await asyncpg.create_pool(
                        self._settings.database.dsn,
                        min_size=self._settings.pool_min,
                        max_size=self._settings.pool_max,
                        command_timeout=self._settings.db_command_timeout,
                        timeout=self._settings.ready_timeout * 2,
                        max_inactive_connection_lifetime=300,
                        reset=_keep_session,
                        server_settings={"application_name": f"dw-ingest-{self._settings.environment}"},
                    )
                except _UNAVAILABLE as exc:
                    raise DatabaseUnavailable(_describe(exc)) from None
                log.info("connected to %s", self._settings.database.masked)
        return self._pool

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    async def ping(self, bound: float) -> None:
        try:
            pool = await asyncio.wait_for(self._get_pool(), bound)
            async with asyncio.timeout(bound), pool.acquire() as conn:
                await conn.fetchval("SELECT 1")
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
        """One write statement on a pooled connection, timed in DB_SECONDS (failures too); errors that
        mean "not now" become DatabaseUnavailable."""
        started = time.perf_counter()
        try:
            pool = await self._get_pool()
            async with pool.acquire() as conn:
                return await getattr(conn, method)(statement, *_columns(records))
        except _UNAVAILABLE as exc:
            raise DatabaseUnavailable(_describe(exc)) from None
        finally:
            DB_SECONDS.labels(operation=operation).observe(time.perf_counter() - started)


# Up to this many single-record requests share one INSERT. One writer: the next group forms while the
# current one is written. Two writers made groups smaller (3.6 against 4.3 records at C=8) and served
# about 10% fewer requests on two cores (alternating wrk runs; noisy, but the same sign each time).
_GROUP_MAX_RECORDS = 1000
_GROUP_WRITERS = 1


def _key(record: Record) -> tuple[str, datetime]:
    return (record.symbol, record.ts)


def _columns(records: Sequence[Record]) -> list[tuple[object, ...]]:
    """The unnest arguments, rows in key order: two writes in flight then take the unique index's
    locks in the same order and cannot deadlock on each other."""
    rows = sorted(
        (r.symbol, r.ts, str(r.open), str(r.high), str(r.low), str(r.close), r.volume, str(r.vwap)) for r in records
    )
    return list(zip(*rows, strict=True))


def _outcome(inserted: bool | None) -> WriteResult:
    return WriteResult(received=1, inserted=1 if inserted else 0, updated=1 if inserted is False else 0)


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Pool reset: asyncpg's default runs RESET ALL, UNLISTEN, CLOSE ALL and unlocks advisory locks on
    every release, a round trip per request. The service changes no session state, and asyncpg
    still rolls back a transaction left open before calling this."""


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}".strip().rstrip(":")
