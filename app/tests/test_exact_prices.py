"""Prices reach PostgreSQL as decimal text (see db.py): every form a client may send is stored
digit for digit, through the batch endpoint and the single-record one."""

from __future__ import annotations

import json

import pytest

from tests.conftest import record, unique_symbol

# (as sent in the JSON body, as PostgreSQL's numeric(20, 8) text must show it)
PRICES = [
    ('"999999999999.99999999"', "999999999999.99999999"),
    ("999999999999.99999999", "999999999999.99999999"),
    ('"0.00000001"', "0.00000001"),
    ("1e2", "100.00000000"),
    ('"1E+2"', "100.00000000"),
    ("1.5E-7", "0.00000015"),
    ('"0012.50"', "12.50000000"),
]


def body_with_prices(symbol: str, ts: str, price: str) -> str:
    """A record whose five prices are all `price`, written into the JSON verbatim."""
    sent = record(symbol, ts=ts)
    text = json.dumps({k: ("@" if k in ("open", "high", "low", "close", "vwap") else v) for k, v in sent.items()})
    return text.replace('"@"', price)


@pytest.mark.parametrize("endpoint", ["/ingest/market-data/", "/ingest/market-data/batch"])
def test_every_price_form_is_stored_exactly(client, server, endpoint):
    symbol = unique_symbol("X")
    bodies = [body_with_prices(symbol, f"2026-11-24T09:00:{i:02d}Z", sent) for i, (sent, _) in enumerate(PRICES)]
    payloads = ["[" + ",".join(bodies) + "]"] if endpoint.endswith("batch") else bodies
    for payload in payloads:
        response = client.post(endpoint, content=payload, headers={"Content-Type": "application/json"})
        assert response.status_code == 200, response.text
    stored = server.cluster.psql(
        "SELECT string_agg(concat_ws(' ', open, high, low, close, vwap), '|' ORDER BY ts) "
        f"FROM staging.market_data WHERE symbol = '{symbol}'",
        server.database,
    )
    assert stored.split("|") == [" ".join([want] * 5) for _, want in PRICES]
