"""Fixtures: one real PostgreSQL cluster per session, and the service served for real by uvicorn."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.support.pgcluster import PgCluster, free_port

APP_DIR = Path(__file__).resolve().parents[1]
API_KEY = "test-key-" + uuid.uuid4().hex


@pytest.fixture(scope="session")
def cluster() -> Iterator[PgCluster]:
    pg = PgCluster().init()
    try:
        yield pg
    finally:
        pg.destroy()


@dataclass
class Server:
    """A uvicorn process serving the app, with the database it writes to."""

    process: subprocess.Popen
    base_url: str
    database: str
    cluster: PgCluster
    log_path: Path

    def client(self, **kw) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, timeout=30, **kw)

    def count(self, where: str = "true") -> int:
        return int(self.cluster.psql(f"SELECT count(*) FROM staging.market_data WHERE {where}", self.database))

    def count_symbol(self, symbol: str) -> int:
        literal = "'" + symbol.replace("'", "''") + "'"
        return self.count(f"symbol = {literal}")

    def log(self) -> str:
        return self.log_path.read_text()

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()


def start_server(
    cluster: PgCluster,
    tmp_dir: Path,
    *,
    database: str | None = None,
    extra_env: dict | None = None,
    create: bool = True,
) -> Server:
    database = database or "t_" + uuid.uuid4().hex[:10]
    if create:
        cluster.create_database(database)
    port = free_port()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "ENVIRONMENT": "testing",
        "DATABASE_URL": f"postgresql+asyncpg://postgres:s3cret-pw@127.0.0.1:{cluster.port}/{database}",
        "API_HOST": "127.0.0.1",
        "API_PORT": str(port),
        "API_KEYS": API_KEY,
        "LOG_LEVEL": "info",
        "MAX_BODY_BYTES": str(256 * 1024),
        "READY_TIMEOUT": "1",
        "DB_COMMAND_TIMEOUT": "3",
        **(extra_env or {}),
    }
    log_path = tmp_dir / f"server-{port}.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "dw_ingest"], cwd=APP_DIR, env=env, stdout=log_path.open("w"), stderr=subprocess.STDOUT
    )
    server = Server(process, f"http://127.0.0.1:{port}", database, cluster, log_path)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited: {server.log()}")
        try:
            if httpx.get(f"{server.base_url}/health", timeout=1).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    server.stop()
    raise RuntimeError(f"server did not start: {server.log()}")


@pytest.fixture(scope="session")
def server(cluster: PgCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = start_server(cluster, tmp_path_factory.mktemp("srv"))
    yield srv
    srv.stop()


@pytest.fixture()
def client(server: Server) -> Iterator[httpx.Client]:
    with server.client(headers={"X-API-Key": API_KEY}) as c:
        yield c


def unique_symbol(prefix: str = "T") -> str:
    return (prefix + uuid.uuid4().hex[:10]).upper()[:16]


def record(symbol: str | None = None, **overrides) -> dict:
    base = {
        "symbol": unique_symbol() if symbol is None else symbol,
        "ts": "2026-11-24T14:30:00+00:00",
        "open": "100.5",
        "high": "101.25",
        "low": "99.75",
        "close": "100.9",
        "volume": 1000,
        "vwap": "100.4",
    }
    return base | overrides
