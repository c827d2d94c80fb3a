"""Group commit: single-record requests that arrive together share one INSERT, and a 200 still
means committed. Against the real PostgreSQL; no assertion depends on timing."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import pytest
from dw_ingest.config import Settings
from dw_ingest.db import Database, DatabaseUnavailable
from dw_ingest.group_commit import GroupCommit
from dw_ingest.models import validate_record

from tests.conftest import API_KEY, record, start_server, unique_symbol
from tests.support.pgcluster import PgCluster

# A row with this symbol kills its own database session mid-INSERT: the statement, and with it
# every row of the group, is never committed, and the client sees the connection drop.
POISON = "POISON"
KILL_ON_POISON = f"""
CREATE FUNCTION staging.die_on_poison() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.symbol = '{POISON}' THEN
        PERFORM pg_terminate_backend(pg_backend_pid());
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER die_on_poison BEFORE INSERT ON staging.market_data
    FOR EACH ROW EXECUTE FUNCTION staging.die_on_poison();
"""


def post_all(server, bodies: Sequence[dict], request_id: str = "gc") -> list:
    """Each body posted from its own thread and connection, all at once; request ids <request_id>-<i>."""

    def post(item: tuple[int, dict]):
        index, body = item
        with server.client(headers={"X-API-Key": API_KEY, "X-Request-ID": f"{request_id}-{index}"}) as c:
            return c.post("/ingest/market-data/", json=body)

    with ThreadPoolExecutor(max_workers=16) as pool:
        return list(pool.map(post, enumerate(bodies)))


def test_concurrent_requests_are_all_committed(server):
    symbol = unique_symbol("G")
    sent = [record(symbol, ts=f"2026-11-24T10:{i // 60:02d}:{i % 60:02d}Z", volume=i) for i in range(64)]
    responses = post_all(server, sent)
    assert [r.status_code for r in responses] == [200] * 64
    assert server.count_symbol(symbol) == 64
    assert server.count(f"symbol = '{symbol}' AND volume BETWEEN 0 AND 63") == 64


def test_a_bad_record_fails_alone(server):
    symbol = unique_symbol("G")
    sent = [record(symbol, ts=f"2026-11-24T11:00:{i:02d}Z") for i in range(12)]
    sent[5] = sent[5] | {"low": "500"}
    responses = post_all(server, sent)
    assert [r.status_code for r in responses] == [200] * 5 + [422] + [200] * 6
    assert responses[5].json()["detail"][0]["loc"] == ["body", "low"]
    assert server.count_symbol(symbol) == 11


def test_concurrent_copies_of_one_record_leave_one_row_and_one_insert(server):
    sent = record()
    tag = "copies-" + sent["symbol"]
    responses = post_all(server, [sent] * 10, request_id=tag)
    assert [r.status_code for r in responses] == [200] * 10
    assert server.count_symbol(sent["symbol"]) == 1
    counts = re.findall(rf"request_id={tag}-\d+ .*received=1 inserted=(\d) duplicates=(\d)", server.log())
    assert sorted(counts) == [("0", "1")] * 9 + [("1", "0")]


def test_update_policy_applies_concurrent_versions_of_one_bar_one_at_a_time(cluster, tmp_path):
    """One INSERT ... ON CONFLICT DO UPDATE may not touch a row twice: versions of one bar that
    arrive together are written by successive groups, and every request succeeds."""
    server = start_server(cluster, tmp_path, extra_env={"CONFLICT_POLICY": "update"})
    try:
        symbol = unique_symbol("V")
        versions = [record(symbol, volume=v) for v in range(1, 11)]
        assert [r.status_code for r in post_all(server, versions)] == [200] * 10
        assert server.count_symbol(symbol) == 1
        assert int(
            cluster.psql(f"SELECT volume FROM staging.market_data WHERE symbol = '{symbol}'", server.database)
        ) in range(1, 11)
    finally:
        server.stop()


def test_group_size_is_a_metric(server, client):
    client.post("/ingest/market-data/", json=record())
    metrics = client.get("/metrics").text
    assert re.search(r"^dw_ingest_group_commit_records_count [1-9]", metrics, re.MULTILINE)


@pytest.fixture(scope="module")
def poisoned(cluster: PgCluster, tmp_path_factory: pytest.TempPathFactory):
    """A service whose database kills the session that inserts a POISON row."""
    server = start_server(cluster, tmp_path_factory.mktemp("poison"))
    cluster.psql(KILL_ON_POISON, server.database)
    yield server
    server.stop()


def test_database_failure_mid_group_fails_every_request_in_it(poisoned):
    """Requests queued together are written by one INSERT; when the database drops it, each of
    them gets the same exception and none of their rows is committed."""

    async def scenario() -> list[BaseException | object]:
        settings = Settings.from_env(
            {"DATABASE_URL": poisoned.cluster.url(poisoned.database), "DB_COMMAND_TIMEOUT": "5"}
        )
        database = Database(settings)
        try:
            symbol = unique_symbol("F")
            good = [validate_record(record(symbol, ts=f"2026-11-24T12:00:{i:02d}Z")) for i in range(5)]
            bad = validate_record(record(POISON))
            # gather starts every write before the first one reaches the database, so all six are
            # queued when the writer takes its group.
            outcomes = await asyncio.gather(
                *(database.write_one(r) for r in [*good[:2], bad, *good[2:]]), return_exceptions=True
            )
            assert poisoned.count_symbol(symbol) == 0
            # The pool replaces the dead connection: the same records go through afterwards.
            again = await asyncio.gather(*(database.write_one(r) for r in good))
            assert [r.inserted for r in again] == [1] * 5
            assert poisoned.count_symbol(symbol) == 5
            return outcomes
        finally:
            await database.close()

    outcomes = asyncio.run(scenario())
    assert all(isinstance(o, DatabaseUnavailable) for o in outcomes), outcomes
    assert len({id(o) for o in outcomes}) == 1  # one failure, shared by the whole group


def test_over_http_a_200_always_means_committed(poisoned):
    symbol = unique_symbol("H")
    sent = [record(symbol, ts=f"2026-11-24T13:00:{i:02d}Z") for i in range(15)]
    sent.insert(7, record(POISON))
    responses = post_all(poisoned, sent)
    statuses = [r.status_code for r in responses]
    assert statuses[7] == 503 and int(responses[7].headers["Retry-After"]) > 0
    assert set(statuses) <= {200, 503}
    for body, response in zip(sent, responses, strict=True):
        stored = poisoned.count(f"symbol = '{body['symbol']}' AND ts = '{body['ts']}'")
        assert stored == (1 if response.status_code == 200 else 0), (body, response.status_code)
    with poisoned.client(headers={"X-API-Key": API_KEY}) as c:
        assert c.post("/ingest/market-data/", json=record()).status_code == 200
    assert "Traceback" not in poisoned.log()


# The queue itself, without a database.


def test_items_of_one_key_go_to_successive_groups_in_arrival_order():
    groups: list[list[tuple[str, int]]] = []

    async def write(items: Sequence[tuple[str, int]]) -> list[int]:
        groups.append(list(items))
        return [value for _, value in items]

    async def scenario() -> list[int]:
        commit: GroupCommit[tuple[str, int], int] = GroupCommit(write, lambda i: i[0], max_items=10, writers=1)
        return await asyncio.gather(*(commit.submit(item) for item in [("a", 1), ("b", 2), ("a", 3), ("a", 4)]))

    assert asyncio.run(scenario()) == [1, 2, 3, 4]
    assert groups == [[("a", 1), ("b", 2)], [("a", 3)], [("a", 4)]]


def test_groups_are_capped_and_a_failed_group_fails_only_its_own_items():
    groups: list[list[int]] = []

    async def write(items: Sequence[int]) -> list[int]:
        groups.append(list(items))
        if 3 in items:
            raise DatabaseUnavailable("gone")
        return list(items)

    async def scenario() -> list[int | BaseException]:
        commit: GroupCommit[int, int] = GroupCommit(write, lambda i: i, max_items=2, writers=1)
        return await asyncio.gather(*(commit.submit(i) for i in range(6)), return_exceptions=True)

    outcomes = asyncio.run(scenario())
    assert groups == [[0, 1], [2, 3], [4, 5]]
    assert outcomes[0:2] == [0, 1] and outcomes[4:6] == [4, 5]
    assert all(isinstance(o, DatabaseUnavailable) for o in outcomes[2:4])
