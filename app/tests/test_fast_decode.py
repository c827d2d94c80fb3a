"""The msgspec fast path (fast_decode.py) against the model's path: whatever the fast path takes,
the model takes too, with equal values; what it cannot take it leaves to the model (None), so
every 422 is still the model's. The endpoints' own tests (test_contract, test_exact_prices) cover
the served behaviour."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from dw_ingest.fast_decode import FastRecord, fast_batch, fast_record
from dw_ingest.intake import decode_json
from dw_ingest.models import MarketRecord, RecordErrors, validate_batch, validate_record
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import record
from tests.test_properties import consistent_records

FIELDS = list(MarketRecord.model_fields)


def test_the_struct_has_the_models_fields_in_order():
    assert list(FastRecord.__struct_fields__) == FIELDS


def model_path(body: bytes) -> MarketRecord | None:
    try:
        return validate_record(decode_json(body))
    except RecordErrors:
        return None


def assert_same_as_model(body: bytes) -> bool:
    """True when the fast path took the body; then the model took it too, to the same values."""
    fast = fast_record(body)
    if fast is None:
        return False
    slow = model_path(body)
    assert slow is not None, body
    for field in FIELDS:
        assert getattr(fast, field) == getattr(slow, field), (field, body)
        assert type(getattr(fast, field)) is type(getattr(slow, field)) or field == "ts"
    assert fast.ts.utcoffset() == slow.ts.utcoffset()
    return True


def with_text(overrides: dict[str, str]) -> bytes:
    """A record whose fields in `overrides` are written into the JSON verbatim."""
    sent = record("AAPL") | {k: f"@{k}@" for k in overrides}
    text = json.dumps(sent)
    for key, raw in overrides.items():
        text = text.replace(f'"@{key}@"', raw)
    return text.encode()


TAKEN = [
    with_text({}),
    with_text({"open": "100.5", "high": "101.25", "close": '"100.9"'}),
    with_text({"ts": '"2026-11-24T14:30:00.123456+05:30"'}),
    with_text({"ts": '"2026-11-24T14:30:00Z"'}),
    with_text({"open": '"0012.50"', "low": "1", "vwap": '"100"'}),
    with_text({"high": '"999999999999.99999999"', "close": "999999999999.99999999"}),
    with_text({"volume": "9223372036854775807"}),
]

# Each either left to the model or taken with the model's values: never a different answer.
EDGES = [
    with_text({"open": "0.1000000000000000055511151231257827"}),
    with_text({"open": '"1E+2"', "high": "1e2", "low": "1.5E-7"}),
    with_text({"open": '"100.000000000"'}),
    with_text({"open": '"1_00.5"'}),
    with_text({"open": '" 100.5"'}),
    with_text({"open": '"NaN"'}),
    with_text({"open": '"-0"'}),
    with_text({"open": "true"}),
    with_text({"volume": "1e3"}),
    with_text({"volume": "1000.0"}),
    with_text({"volume": "true"}),
    with_text({"volume": "-1"}),
    with_text({"volume": "9223372036854775808"}),
    with_text({"volume": '"1000"'}),
    with_text({"symbol": '"AAPL\\n"'}),
    with_text({"symbol": '"aapl"'}),
    with_text({"symbol": '"\\ud800"'}),
    with_text({"symbol": '"\\u0041APL"'}),
    with_text({"ts": '"2026-11-24T14:30:00"'}),
    with_text({"ts": '"2026-11-24t14:30:00z"'}),
    with_text({"ts": '"2026-11-24 14:30:00Z"'}),
    with_text({"ts": '"2026-11-24T14:30:00.1234567Z"'}),
    with_text({"ts": '"2026-11-24T24:00:00Z"'}),
    with_text({"ts": '"2026-02-30T10:00:00Z"'}),
    with_text({"ts": '"0001-01-01T00:00:00+14:00"'}),
    with_text({"ts": '"9999-12-31T23:59:59-14:00"'}),
    with_text({"ts": '"2026-11-24T14:30:00+24:00"'}),
    with_text({"ts": "1700000000"}),
    with_text({"low": '"100.95"'}),
    with_text({"vwap": '"102"'}),
    b'{"symbol": "AAPL", "symbol": "MSFT", ' + with_text({})[1:],
    with_text({})[:-1] + b', "extra": 1}',
    b"\xef\xbb\xbf" + with_text({}),
    with_text({}) + b" x",
    b"[" + with_text({}) + b"]",
    b"{not json",
    b"",
]


@pytest.mark.parametrize("body", TAKEN, ids=range(len(TAKEN)))
def test_plain_records_take_the_fast_path(body):
    assert assert_same_as_model(body)


@pytest.mark.parametrize("body", EDGES, ids=range(len(EDGES)))
def test_edge_cases_agree_with_the_model(body):
    assert_same_as_model(body)


def test_missing_or_rule_breaking_records_are_left_to_the_model():
    for body in (with_text({"low": '"100.95"'}), b'{"symbol": "AAPL"}', with_text({"open": '"1.123456789"'})):
        assert fast_record(body) is None
        assert model_path(body) is None


@settings(max_examples=300, deadline=None)
@given(consistent_records(), st.booleans())
def test_consistent_records_agree_with_the_model(sent, as_strings):
    def price(value: Decimal) -> str:
        return json.dumps(str(value)) if as_strings else str(value)

    body = json.dumps({k: ("@" + k if isinstance(v, Decimal) else v) for k, v in sent.items()})
    for key, value in sent.items():
        if isinstance(value, Decimal):
            body = body.replace(f'"@{key}"', price(value))
    assert_same_as_model(body.encode())


def test_batches_are_all_fast_or_all_left_to_the_model():
    good = [json.loads(TAKEN[0]) | {"ts": f"2026-11-24T14:{i:02d}:00Z"} for i in range(20)]
    records = fast_batch(json.dumps(good).encode(), 1000)
    assert records is not None
    assert [(r.symbol, r.ts) for r in records] == [(r.symbol, r.ts) for r in validate_batch(good, 1000)]
    bad = [*good, good[0] | {"low": "100.95"}]
    assert fast_batch(json.dumps(bad).encode(), 1000) is None
    assert fast_batch(json.dumps(good).encode(), 19) is None
    assert fast_batch(b"[]", 1000) is None


@pytest.mark.parametrize(
    "body", [b'{"symbol":"\xff\xfe","ts":"2026-01-01T00:00:00Z"}', b'[{"symbol":"A\xc3"}]'], ids=["record", "batch"]
)
def test_a_body_that_is_not_utf8_is_left_to_the_model(body):
    # msgspec raises UnicodeDecodeError, not DecodeError, for bad UTF-8 inside a string.
    assert fast_record(body) is None
    assert fast_batch(body, 1000) is None
