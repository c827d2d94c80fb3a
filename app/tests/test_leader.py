"""Several database hosts, one of them writable (a Patroni leader): the service finds it, follows it
when it moves, never waits on a host that does not answer, and tries a write again for
DB_WRITE_RETRY_SECONDS before it answers 503.

Two local clusters play the hosts; one made read-only (default_transaction_read_only) answers as a
standby does. A dead host is a socket that never answers (support/tcpproxy.py), never a real
address: no test traffic leaves the machine."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import asyncpg
import httpx
import pytest
from dw_ingest.config import ConfigError, DatabaseHost, DatabaseURL, Settings
from dw_ingest.db import Database, WriteResult
from dw_ingest.models import MarketRecord

from tests.conftest import API_KEY, Server, record, start_server
from tests.support.pgcluster import PgCluster
from tests.support.tcpproxy import BlackHole, TcpProxy

INGEST = "/ingest/market-data/"
BATCH = "/ingest/market-data/batch"
APPLICATION_NAME = "dw-ingest-testing"  # the service's application_name, ENVIRONMENT=testing
UNAVAILABLE_BODY = {"detail": "database unavailable, retry later"}


@pytest.fixture(scope="module")
def hosts() -> Iterator[tuple[PgCluster, PgCluster]]:
    a = PgCluster().init()
    b = PgCluster().init()
    yield a, b
    a.destroy()
    b.destroy()


@pytest.fixture()
def pair(hosts: tuple[PgCluster, PgCluster]) -> Iterator[tuple[PgCluster, PgCluster, str]]:
    """Both hosts running and writable, each with the same new database."""
    database = "l_" + uuid.uuid4().hex[:10]
    for pg in hosts:
        pg.create_database(database)
    yield *hosts, database
    for pg in hosts:
        with contextlib.suppress(subprocess.CalledProcessError):
            pg.start()  # fails when it is running
        pg.set_read_only(False)


def dsn(database: str, *ports: int) -> str:
    hosts = ",".join(f"127.0.0.1:{port}" for port in ports)
    return f"postgresql://postgres:s3cret-pw@{hosts}/{database}?sslmode=disable&target_session_attrs=read-write"


def serve(pg: PgCluster, tmp_path, database: str, ports: list[int], **env: str) -> Server:
    return start_server(
        pg, tmp_path, database=database, create=False, extra_env={"DATABASE_URL": dsn(database, *ports)} | env
    )


def client(server: Server) -> httpx.Client:
    return server.client(headers={"X-API-Key": API_KEY})


def stored(pg: PgCluster, database: str) -> set[str]:
    return set(pg.psql("SELECT symbol FROM staging.market_data", database).split())


@dataclass
class Sent:
    started: float
    seconds: float
    status: int
    symbols: list[str]
    detail: str = ""


@dataclass
class Traffic:
    """Clients writing without a pause (single records and batches), each request noted."""

    base_url: str
    clients: int = 4
    sent: list[Sent] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def __enter__(self) -> Traffic:
        for n in range(self.clients):
            thread = threading.Thread(target=self._send, args=(n,), daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(60)

    def _send(self, n: int) -> None:
        with httpx.Client(base_url=self.base_url, headers={"X-API-Key": API_KEY}, timeout=60) as c:
            i = 0
            while not self._stop.is_set():
                i += 1
                records = [record() for _ in range(1 if (i + n) % 2 else 3)]
                started = time.monotonic()
                try:
                    single = len(records) == 1
                    response = c.post(INGEST, json=records[0]) if single else c.post(BATCH, json=records)
                    status, detail = response.status_code, response.text[:200]
                except httpx.HTTPError as exc:
                    status, detail = -1, repr(exc)
                self.sent.append(
                    Sent(started, time.monotonic() - started, status, [r["symbol"] for r in records], detail)
                )

    def wait_for_successes(self, count: int, *, since: float = 0.0, within: float = 30.0) -> None:
        deadline = time.monotonic() + within
        while sum(1 for s in list(self.sent) if s.started >= since and s.status == 200) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"fewer than {count} writes succeeded within {within} s: {self.sent[-5:]}")
            time.sleep(0.05)


def assert_followed(traffic: Traffic, old: PgCluster, new: PgCluster, database: str, moved_at: float) -> None:
    """Every request succeeded; every acknowledged record is stored; the ones sent after the leader
    moved are on the new leader only."""
    failed = [s for s in traffic.sent if s.status != 200]
    assert not failed, failed[:5]
    on_old, on_new = stored(old, database), stored(new, database)
    assert not [s for s in traffic.sent if not set(s.symbols) <= on_old | on_new]
    later = [s for s in traffic.sent if s.started > moved_at]
    assert len(later) >= 10
    assert all(set(s.symbols) <= on_new - on_old for s in later)


def test_a_dead_first_host_costs_no_wait(pair, tmp_path):
    a, _, database = pair
    connect_timeout = 5.0
    with BlackHole() as hole:
        server = serve(a, tmp_path, database, [hole.port, a.port], DB_CONNECT_TIMEOUT=str(connect_timeout))
        try:

            def write(_: int) -> int:
                with client(server) as c:
                    return c.post(BATCH, json=[record(), record()]).status_code

            with client(server) as c:
                assert c.get("/ready").status_code == 200
            for _ in range(3):
                # The pool's connections end (as when a leader goes): four writes at once open new ones.
                a.terminate_backends(APPLICATION_NAME)
                started = time.monotonic()
                with ThreadPoolExecutor(4) as pool:
                    statuses = list(pool.map(write, range(4)))
                # Neither the pool nor any of its new connections waited for the dead first host.
                assert time.monotonic() - started < connect_timeout
                assert statuses == [200] * 4
            assert int(a.psql("SELECT count(*) FROM staging.market_data", database)) == 24
            assert f"writable host 127.0.0.1:{a.port}" in server.log()
        finally:
            server.stop()


def test_writes_land_on_the_writable_host(pair, tmp_path):
    a, b, database = pair
    a.set_read_only(True)
    server = serve(a, tmp_path, database, [a.port, b.port])
    try:
        with client(server) as c:
            one, batch = record(), [record(), record()]
            assert c.post(INGEST, json=one).status_code == 200
            assert c.post(BATCH, json=batch).json()["inserted"] == 2
            assert c.get("/ready").status_code == 200
        assert stored(b, database) == {one["symbol"], batch[0]["symbol"], batch[1]["symbol"]}
        assert stored(a, database) == set()
        assert f"writable host 127.0.0.1:{b.port}" in server.log()
    finally:
        server.stop()


def test_writes_follow_a_leader_that_turns_read_only(pair, tmp_path):
    a, b, database = pair
    b.set_read_only(True)
    server = serve(a, tmp_path, database, [a.port, b.port])
    try:
        with Traffic(server.base_url) as traffic:
            traffic.wait_for_successes(10)
            # A demoted leader, its sessions still open: their next write is refused as read-only.
            a.set_read_only(True)
            moved_at = time.monotonic()
            time.sleep(1)  # no writable host meanwhile, as before a replica is promoted
            b.set_read_only(False)
            traffic.wait_for_successes(10, since=moved_at + 1)
        assert_followed(traffic, a, b, database, moved_at)
        # Within the retry budget (8 s by default): the clients saw latency, not errors.
        assert max(s.seconds for s in traffic.sent) < 8
        assert "ReadOnlySQLTransactionError" in server.log()
        assert server.process.poll() is None
    finally:
        server.stop()


def test_writes_follow_a_switchover(pair, tmp_path):
    a, b, database = pair
    b.set_read_only(True)
    server = serve(a, tmp_path, database, [a.port, b.port])
    try:
        with Traffic(server.base_url) as traffic:
            traffic.wait_for_successes(10)
            # As Patroni does it: the leader shuts down (its sessions ended), a replica is promoted,
            # and the old leader comes back as a replica.
            a.set_read_only(True, now=False)
            a.stop()
            moved_at = time.monotonic()
            time.sleep(1)
            b.set_read_only(False)
            a.start()
            traffic.wait_for_successes(10, since=moved_at + 1)
        assert_followed(traffic, a, b, database, moved_at)
        assert max(s.seconds for s in traffic.sent) < 8
        assert f"writable host 127.0.0.1:{b.port}" in server.log()
        assert "Traceback" not in server.log()
    finally:
        server.stop()


def test_writes_follow_a_leader_that_dies_without_a_word(pair, tmp_path):
    a, b, database = pair
    b.set_read_only(True)
    command_timeout, connect_timeout = 2.0, 2.0
    proxy = TcpProxy(a.port).start()  # the leader's address, until it goes silent
    server = serve(
        a,
        tmp_path,
        database,
        [proxy.port, b.port],
        DB_COMMAND_TIMEOUT=str(command_timeout),
        DB_CONNECT_TIMEOUT=str(connect_timeout),
    )
    try:
        with Traffic(server.base_url) as traffic:
            traffic.wait_for_successes(10)
            # The leader's machine dies: open connections and new ones get no answer, no reset.
            proxy.freeze()
            moved_at = time.monotonic()
            b.set_read_only(False)
            traffic.wait_for_successes(10, since=moved_at + 1)
        assert_followed(traffic, a, b, database, moved_at)
        # A write under way when the host died waited for its statement timeout once, not also for
        # the answer to asyncpg's cancel request, nor for a connection to the dead host.
        assert max(s.seconds for s in traffic.sent) < command_timeout + connect_timeout
    finally:
        server.stop()
        proxy.close()


def test_no_writable_host_gives_503_once_the_retry_budget_is_spent(pair, tmp_path):
    a, b, database = pair
    a.set_read_only(True)
    b.set_read_only(True)
    server = serve(a, tmp_path, database, [a.port, b.port], DB_WRITE_RETRY_SECONDS="1")
    try:
        with client(server) as c:
            for path, body in ((INGEST, record()), (BATCH, [record()])):
                started = time.monotonic()
                response = c.post(path, json=body)
                assert response.status_code == 503, response.text
                assert time.monotonic() - started >= 1
                assert int(response.headers["Retry-After"]) > 0
                assert response.json() == UNAVAILABLE_BODY
            ready = c.get("/ready")
            assert ready.status_code == 503
            assert ready.json() == {"status": "unavailable", "detail": "database not reachable"}
        assert "not ready: " in server.log() and "no writable database host" in server.log()
        assert stored(a, database) == stored(b, database) == set()
        assert "Traceback" not in server.log()
    finally:
        server.stop()


def test_the_retry_budget_bounds_a_write_to_a_stopped_database(pair, tmp_path):
    a, _, database = pair
    budget = 2.0
    server = start_server(
        a, tmp_path, database=database, create=False, extra_env={"DB_WRITE_RETRY_SECONDS": str(budget)}
    )
    try:
        with client(server) as c:
            assert c.post(INGEST, json=record()).status_code == 200
            a.stop()
            started = time.monotonic()
            response = c.post(INGEST, json=record())
            elapsed = time.monotonic() - started
            assert response.status_code == 503
            assert response.json() == UNAVAILABLE_BODY
            # The budget, then at most one more pause between attempts (a refused connection is quick).
            assert budget <= elapsed < budget + 1.5
    finally:
        server.stop()


def test_retries_can_be_turned_off(pair, tmp_path):
    a, _, database = pair
    server = start_server(a, tmp_path, database=database, create=False, extra_env={"DB_WRITE_RETRY_SECONDS": "0"})
    try:
        with client(server) as c:
            assert c.post(INGEST, json=record()).status_code == 200
            a.stop()
            started = time.monotonic()
            assert c.post(BATCH, json=[record()]).status_code == 503
            assert time.monotonic() - started < 1
    finally:
        server.stop()


def test_a_restart_within_the_retry_budget_shows_clients_only_latency(pair, tmp_path):
    a, _, database = pair
    server = start_server(a, tmp_path, database=database, create=False)
    try:
        with Traffic(server.base_url) as traffic:
            traffic.wait_for_successes(10)
            a.stop()
            stopped_at = time.monotonic()
            time.sleep(1)
            a.start()
            traffic.wait_for_successes(10, since=stopped_at + 1)
        failed = [s for s in traffic.sent if s.status != 200]
        assert not failed, failed[:5]
        assert not [s for s in traffic.sent if not set(s.symbols) <= stored(a, database)]
    finally:
        server.stop()


def test_a_write_whose_pool_is_reset_under_it_is_tried_again(pair, monkeypatch):
    """Another request's failure throws the pool away (terminate()) while this write's statement runs
    on one of the pool's connections. Injected: the reset happens as asyncpg prepares the statement.
    asyncpg then fails in whatever state the connection was left (in a CI run: AttributeError during
    type introspection, answered 500); the write must be tried again on a new pool and stored."""
    a, b, database = pair
    b.set_read_only(True)  # one writable host, so the retried write lands where the test looks
    settings = Settings.from_env({"DATABASE_URL": dsn(database, a.port, b.port), "ENVIRONMENT": "testing"})
    seen: list[BaseException] = []
    original = asyncpg.connection.Connection._get_statement

    async def reset_once(self, *args, **kwargs):
        if not seen:
            db._discard(db._pool, ConnectionResetError("another request's connection broke"))
            try:
                return await original(self, *args, **kwargs)
            except BaseException as exc:
                seen.append(exc)
                raise
        return await original(self, *args, **kwargs)

    monkeypatch.setattr(asyncpg.connection.Connection, "_get_statement", reset_once)
    sent = record()
    db = Database(settings)

    async def write() -> WriteResult:
        try:
            return await db.write_many([MarketRecord.model_validate(sent)])
        finally:
            await db.close()

    result = asyncio.run(write())
    assert seen, "the injected reset did not happen during the statement"
    assert (result.received, result.inserted) == (1, 1)
    assert stored(a, database) == {sent["symbol"]}


def test_a_url_with_several_hosts():
    url = DatabaseURL.parse(
        "postgresql+asyncpg://api%40dw:p%3Aw@db1:5432,db2,[2001:db8::3]:5433/cosc471_prod"
        "?sslmode=verify-full&sslrootcert=/etc/ssl/certs/ca-certificates.crt&target_session_attrs=read-write"
    )
    assert url.multi_host
    assert url.hosts == (DatabaseHost("db1", 5432), DatabaseHost("db2", 5432), DatabaseHost("2001:db8::3", 5433))
    assert (url.user, url.password, url.database) == ("api@dw", "p:w", "cosc471_prod")
    assert dict(url.params)["sslrootcert"] == "/etc/ssl/certs/ca-certificates.crt"
    # Each host by its name, everything else kept but the choice among hosts.
    assert url.host_dsn(url.hosts[2]) == (
        "postgresql://api%40dw:p%3Aw@[2001:db8::3]:5433/cosc471_prod"
        "?sslmode=verify-full&sslrootcert=/etc/ssl/certs/ca-certificates.crt"
    )
    assert url.masked == (
        "postgresql://api%40dw:***@db1:5432,db2,[2001:db8::3]:5433/cosc471_prod"
        "?sslmode=verify-full&sslrootcert=/etc/ssl/certs/ca-certificates.crt&target_session_attrs=read-write"
    )
    assert "p%3Aw" not in repr(url)
    single = DatabaseURL.parse("postgresql://u:pw@db1:5433/d")
    assert not single.multi_host and single.hosts == (DatabaseHost("db1", 5433),)
    assert DatabaseURL.parse("postgresql://u:pw@/d?host=/run/postgresql").hosts == ()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("postgresql://u@db1:5432,db2:x/d", "malformed port: 'x'"),
        ("postgresql://u@db1:5432,db2:70000/d", "malformed port: '70000'"),
        ("postgresql://u@db1,,db3/d", "empty host"),
        ("postgresql://u@db1,db2/d?target_session_attrs=standby", "target_session_attrs must be read-write"),
        ("postgresql://u@db1,db2/d?port=5432", "give each its port"),
        ("postgresql://u@/d?host=db1,db2", "list several hosts in the host part"),
    ],
)
def test_a_bad_url_with_several_hosts_is_refused(url, message):
    with pytest.raises(ConfigError, match="DATABASE_URL") as refused:
        DatabaseURL.parse(url)
    assert message in str(refused.value)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"DB_CONNECT_TIMEOUT": "0"}, "DB_CONNECT_TIMEOUT must be a positive finite number"),
        ({"DB_CONNECT_TIMEOUT": "soon"}, "DB_CONNECT_TIMEOUT must be a number"),
        ({"DB_WRITE_RETRY_SECONDS": "-1"}, "DB_WRITE_RETRY_SECONDS must be zero or a positive finite number"),
        ({"DB_WRITE_RETRY_SECONDS": "inf"}, "DB_WRITE_RETRY_SECONDS must be zero or a positive finite number"),
    ],
)
def test_bad_failover_settings_are_refused(env, message):
    with pytest.raises(ConfigError, match=message):
        Settings.from_env({"DATABASE_URL": "postgresql://u@db1,db2/d"} | env)


def test_failover_settings_defaults():
    settings = Settings.from_env({"DATABASE_URL": "postgresql://u@db1,db2/d"})
    assert (settings.db_connect_timeout, settings.db_write_retry_seconds) == (3.0, 8.0)
    assert (
        Settings.from_env({"DATABASE_URL": "postgresql://u@h/d", "DB_WRITE_RETRY_SECONDS": "0"}).db_write_retry_seconds
        == 0
    )
