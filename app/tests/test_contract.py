"""The HTTP contract against a live server and a real PostgreSQL."""

from __future__ import annotations

import json
import re

import httpx
import pytest

from tests.conftest import API_KEY, record, unique_symbol


def test_single_record_round_trips_digit_for_digit(client, server):
    sent = record(
        open="14000.123456",
        high="14000.99999999",
        low="13999.00000001",
        close="14000.5",
        vwap="14000.25",
        volume=9_000_000_000,
    )
    response = client.post(
        "/ingest/market-data/",
        content=json.dumps(sent).replace('"14000.123456"', "14000.123456"),
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 200
    assert response.json() == {"status": "success"}
    row = server.cluster.psql(
        "SELECT open::text, high::text, low::text, close::text, vwap::text, volume::text, "
        f"to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') FROM staging.market_data "
        f"WHERE symbol = '{sent['symbol']}'",
        server.database,
    )
    assert row == (
        "14000.12345600|14000.99999999|13999.00000001|14000.50000000|14000.25000000|9000000000|2026-11-24 14:30:00"
    )


def test_json_number_is_never_a_float(client, server):
    # 0.1 + 0.2 style values that a float would alter in the last digits.
    symbol = unique_symbol()
    body = (
        f'{{"symbol":"{symbol}","ts":"2026-11-24T10:00:00Z","open":0.30000001,"high":0.30000009,'
        '"low":0.1,"close":0.2,"volume":0,"vwap":0.12345678}'
    )
    assert (
        client.post("/ingest/market-data/", content=body, headers={"Content-Type": "application/json"}).status_code
        == 200
    )
    assert (
        server.cluster.psql(
            f"SELECT open::text || ' ' || vwap::text FROM staging.market_data WHERE symbol = '{symbol}'",
            server.database,
        )
        == "0.30000001 0.12345678"
    )


def test_path_without_trailing_slash_is_answered_directly(client, server):
    response = client.post("/ingest/market-data", json=record(), follow_redirects=False)
    assert response.status_code == 200 and response.json() == {"status": "success"}


def test_resend_is_success_and_leaves_one_row(client, server):
    sent = record()
    for _ in range(3):
        assert client.post("/ingest/market-data/", json=sent).json() == {"status": "success"}
    assert server.count_symbol(sent["symbol"]) == 1


def test_offsets_are_kept_as_instants(client, server):
    sent = record(ts="2026-11-24T09:30:00-05:00")
    assert client.post("/ingest/market-data/", json=sent).status_code == 200
    assert (
        server.cluster.psql(
            f"SELECT ts = '2026-11-24 14:30:00+00' FROM staging.market_data WHERE symbol = '{sent['symbol']}'",
            server.database,
        )
        == "t"
    )


# field -> (value sent, words the 422 message for that field must contain)
INVALID_VALUES: dict[str, list[tuple[object, str]]] = {
    "ts": [
        ("2026-11-24T14:30:00", "timezone"),
        ("yesterday", "datetime"),
        (1700000000, "RFC 3339"),  # a Unix time: pydantic alone would read it, the schema says string
        ("2026-11-24 14:30:00Z", "RFC 3339"),
        ("0001-01-01T00:00:00+14:00", "years 1 to 9999"),  # before 0001 in UTC: it once made a 500
    ],
    "symbol": [
        ("aapl", "pattern"),
        ("WAY-TOO-LONG-SYMBOL", ""),
        ("A B", "pattern"),
        ("X'; DROP TABLE staging.market_data; --", ""),
        ("", ""),
    ],
    "open": [("0", "greater than 0"), ("NaN", ""), ("1.123456789", "decimal places"), (True, "")],
    "close": [("-1", "greater than 0")],
    "high": [("Infinity", ""), ("1e20", "digits"), ("100.6", "high must not be below open or close")],
    # Beyond 64 bits (2**70): the echoed input must still serialise (it once made the 422 a 500).
    "volume": [
        (-1, "greater than or equal to 0"),
        (1.5, "integer"),
        ("100", "integer"),
        (2**63, "less than or equal"),
        (2**70, "less than or equal"),
    ],
    "low": [("100.95", "low must not exceed open or close")],
    "vwap": [("99", "vwap must lie between low and high"), ("102", "vwap must lie between low and high")],
    "extra": [(1, "Extra inputs are not permitted")],
}


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [({field: value}, field, message) for field, cases in INVALID_VALUES.items() for value, message in cases],
)
def test_each_invalid_field_gets_a_422_naming_it(client, server, overrides, field, message):
    sent = record(**overrides)
    response = client.post("/ingest/market-data/", json=sent)
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    named = [e for e in detail if e["loc"][:2] == ["body", field]]
    assert named, detail
    assert message.lower() in " ".join(e["msg"] for e in named).lower()
    assert server.count_symbol(sent["symbol"]) == 0


# A lone surrogate is a valid JSON escape but no UTF-8 text: the 422 that names it must still
# serialise (the JSON client cannot send it, so the body is written by hand).
@pytest.mark.parametrize(
    ("fragment", "loc"),
    [('"symbol": "\\ud800"', ["body", "symbol"]), ('"\\ud800x": 1', ["body"])],
    ids=["in-a-value", "in-a-field-name"],
)
def test_lone_surrogates_get_a_422_naming_where(client, server, fragment, loc):
    sent = record()
    body = json.dumps({k: v for k, v in sent.items() if k != "symbol" or "symbol" not in fragment})[:-1]
    response = client.post(
        "/ingest/market-data/", content=f"{body}, {fragment}}}", headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 422, response.text
    assert loc in [e["loc"] for e in response.json()["detail"]], response.text
    assert server.count_symbol(sent["symbol"]) == 0


@pytest.mark.parametrize("missing", ["symbol", "ts", "open", "high", "low", "close", "volume", "vwap"])
def test_each_missing_field_is_named(client, missing):
    sent = record()
    del sent[missing]
    response = client.post("/ingest/market-data/", json=sent)
    assert response.status_code == 422
    assert ["body", missing] in [e["loc"] for e in response.json()["detail"]]


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        (b"{not json", "application/json", 422),
        (b'{"open": NaN}', "application/json", 422),
        (b"\xff\xfe\xfa", "application/json", 422),
        (b'{"symbol":"\xff\xfe","ts":"2026-01-01T00:00:00Z"}', "application/json", 422),
        (b"[" * 100_000 + b"]" * 100_000, "application/json", 422),
        (b'"just a string"', "application/json", 422),
        (b"[]", "application/json", 422),
        (b"symbol=AAPL", "application/x-www-form-urlencoded", 415),
        (b"", "application/json", 422),
    ],
    ids=["broken", "nan", "bad-utf8", "utf8-in-string", "deeply-nested", "string", "empty-array", "form", "empty"],
)
def test_malformed_bodies_get_4xx_and_add_nothing(client, server, body, content_type, status):
    before = server.count()
    response = client.post("/ingest/market-data/", content=body, headers={"Content-Type": content_type})
    assert response.status_code == status, response.text
    assert server.count() == before


def test_batch_counts_inserted_and_duplicates(client, server):
    symbol = unique_symbol("B")
    first = [record(symbol, ts=f"2026-11-24T10:00:{i:02d}Z") for i in range(5)]
    response = client.post("/ingest/market-data/batch", json=first)
    assert response.json() == {"status": "success", "received": 5, "inserted": 5, "duplicates": 0}
    again = [*first[:2], *[record(symbol, ts=f"2026-11-24T11:00:{i:02d}Z") for i in range(3)], first[0]]
    response = client.post("/ingest/market-data/batch", json=again)
    assert response.json() == {"status": "success", "received": 6, "inserted": 3, "duplicates": 3}
    assert server.count_symbol(symbol) == 8


def test_batch_is_all_or_nothing_and_lists_every_bad_index(client, server):
    symbol = unique_symbol("B")
    batch = [record(symbol, ts=f"2026-11-24T12:00:{i:02d}Z") for i in range(6)]
    batch[1]["low"] = "500"
    batch[4]["ts"] = "2026-11-24T12:00:04"
    batch[5]["surprise"] = True
    response = client.post("/ingest/market-data/batch", json=batch)
    assert response.status_code == 422
    locs = [e["loc"] for e in response.json()["detail"]]
    assert ["body", 1, "low"] in locs and ["body", 4, "ts"] in locs and ["body", 5, "surprise"] in locs
    assert server.count_symbol(symbol) == 0


def test_batch_limit_is_enforced(server):
    with server.client(headers={"X-API-Key": API_KEY}) as c:
        too_many = [record("LIMIT", ts=f"2026-11-24T00:00:00.{i:06d}Z") for i in range(10_001)]
        body = json.dumps(too_many).encode()
        # The test server caps bodies at 256 KiB, so a 10,001-record batch is refused for size first.
        assert (
            c.post("/ingest/market-data/batch", content=body, headers={"Content-Type": "application/json"}).status_code
            == 413
        )
    assert server.count("symbol = 'LIMIT'") == 0


def test_api_key_is_required_by_ingest_only(server):
    with server.client() as anonymous:
        assert anonymous.post("/ingest/market-data/", json=record()).status_code == 401
        assert anonymous.post("/ingest/market-data/batch", json=[record()]).status_code == 401
        assert anonymous.post("/ingest/market-data/", json=record(), headers={"X-API-Key": "wrong"}).status_code == 401
        assert (
            anonymous.post("/ingest/market-data/", json=record(), headers={"Authorization": "Bearer wrong"}).status_code
            == 401
        )
        assert anonymous.get("/health").status_code == 200
        assert anonymous.get("/ready").status_code == 200
        assert anonymous.get("/metrics").status_code == 200
        assert (
            anonymous.post(
                "/ingest/market-data/", json=record(), headers={"Authorization": f"Bearer {API_KEY}"}
            ).status_code
            == 200
        )
        assert anonymous.post("/ingest/market-data/", json=record(), headers={"X-API-Key": API_KEY}).status_code == 200


def test_oversized_body_gets_413(client, server):
    before = server.count()
    big = json.dumps(record() | {"pad": "x" * 300_000})
    response = client.post("/ingest/market-data/", content=big, headers={"Content-Type": "application/json"})
    assert response.status_code == 413

    def chunks():  # no Content-Length: the limit holds for streamed bodies too
        yield b'{"symbol": "AAPL", "pad": "'
        for _ in range(40):
            yield b"y" * 10_000
        yield b'"}'

    response = client.post("/ingest/market-data/", content=chunks(), headers={"Content-Type": "application/json"})
    assert response.status_code == 413
    assert server.count() == before


def test_health_ready_and_metrics(server, client):
    assert httpx.get(f"{server.base_url}/health").json()["status"] == "ok"
    ready = httpx.get(f"{server.base_url}/ready").json()
    assert ready == {"status": "ready", "environment": "testing", "database": server.database}
    client.post("/ingest/market-data/", json=record())
    client.post("/ingest/market-data/", json=record(volume=-5))
    metrics = httpx.get(f"{server.base_url}/metrics").text
    assert re.search(r'dw_ingest_records_total\{outcome="inserted"\} [1-9]', metrics)
    assert re.search(r'dw_ingest_records_total\{outcome="rejected"\} [1-9]', metrics)
    assert 'dw_ingest_requests_total{method="POST",route="/ingest/market-data/",status="200"}' in metrics
    assert "dw_ingest_db_seconds_bucket" in metrics
    assert "dw_ingest_pool_connections_in_use" in metrics


def test_log_line_per_request_with_id_and_no_password(server, client):
    response = client.post("/ingest/market-data/", json=record(), headers={"X-Request-ID": "trace-abc-123"})
    assert response.headers["x-request-id"] == "trace-abc-123"
    generated = client.get("/health").headers["x-request-id"]
    log = server.log()
    assert re.search(
        r"request_id=trace-abc-123 method=POST path=/ingest/market-data/ status=200 latency_ms=[\d.]+ "
        r"received=1 inserted=1 duplicates=0",
        log,
    )
    assert f"request_id={generated} method=GET path=/health status=200" in log
    assert "s3cret-pw" not in log
    assert "postgres:***@127.0.0.1" in log
