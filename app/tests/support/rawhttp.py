"""Raw-socket helpers and in-process servers for the tests of what the service refuses and how."""

from __future__ import annotations

import logging
import re
import socket
from collections.abc import Iterator

import pytest

from tests.support.pgcluster import PgCluster, free_port
from tests.test_direct_path import InProcess, serve, settings_for

BATCH = "/ingest/market-data/batch"
BATCH_ALIAS = BATCH + "/"
BIG = 4 * 1024 * 1024 - 1  # one byte under the default MAX_BODY_BYTES
FRESH_ID = re.compile(rb"x-request-id: [0-9a-f]{32}\r\n")


def strict_server(cluster: PgCluster, database: str) -> Iterator[InProcess]:
    """The default body limit (4 MiB), and a one-second time limit on a request's arrival."""
    yield from serve(settings_for(cluster.create_database(database), BODY_TIMEOUT_SECONDS="1"))


def unreachable_server() -> Iterator[InProcess]:
    """Nothing listens on the database's port: /ready fails, and a write gives up after the short
    retry budget."""
    url = f"postgresql://postgres:pw@127.0.0.1:{free_port()}/none"
    yield from serve(settings_for(url, DB_WRITE_RETRY_SECONDS="0.5", READY_TIMEOUT="1"))


def connect(server: InProcess, timeout: float = 10) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=timeout)


def read_until_closed(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def stored(cluster: PgCluster, server: InProcess, symbol: str) -> int:
    database = server.app.state.settings.database.database
    return int(cluster.psql(f"SELECT count(*) FROM staging.market_data WHERE symbol = '{symbol}'", database))


def errors_in(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
