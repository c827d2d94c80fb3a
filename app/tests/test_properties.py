"""Property-based checks of the validation rules (hypothesis): every consistent record is accepted
exactly as sent, and every record breaking one rule is refused on the field that breaks it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from dw_ingest.models import RecordErrors, validate_record
from hypothesis import given, settings
from hypothesis import strategies as st

prices = st.decimals(
    min_value=Decimal("0.00000001"),
    max_value=Decimal("999999999999.99999999"),
    places=8,
    allow_nan=False,
    allow_infinity=False,
)
symbols = st.from_regex(r"[A-Z0-9./-]{1,16}", fullmatch=True)
instants = st.datetimes(
    min_value=datetime(1990, 1, 1),
    max_value=datetime(2100, 1, 1),
    timezones=st.sampled_from([UTC, None]).map(lambda _: UTC),
)


@st.composite
def consistent_records(draw) -> dict:
    four = sorted(draw(st.lists(prices, min_size=4, max_size=4)))
    low, high = four[0], four[3]
    open_, close = draw(st.permutations([four[1], four[2]]))
    vwap = draw(st.sampled_from(four))
    return {
        "symbol": draw(symbols),
        "ts": draw(instants).isoformat(),
        "open": open_,
        "high": high,
        "low": low,
        "close": close,
        "volume": draw(st.integers(0, 2**63 - 1)),
        "vwap": vwap,
    }


def _refused_on(record: dict) -> set[str]:
    try:
        validate_record(record)
    except RecordErrors as exc:
        return {str(e["loc"][1]) for e in exc.errors}
    return set()


@settings(max_examples=300, deadline=None)
@given(consistent_records())
def test_consistent_records_are_accepted_exactly(record):
    parsed = validate_record(record)
    for field in ("open", "high", "low", "close", "vwap"):
        assert getattr(parsed, field) == record[field]
    assert parsed.volume == record["volume"]


@settings(max_examples=200, deadline=None)
@given(
    consistent_records(),
    st.sampled_from(["open", "high", "low", "close", "vwap"]),
    st.sampled_from([Decimal(0), Decimal(-1), Decimal("NaN"), Decimal("Infinity"), Decimal("1E-9")]),
)
def test_a_bad_price_is_refused_on_its_field(record, field, bad):
    assert field in _refused_on(record | {field: bad})


@settings(max_examples=200, deadline=None)
@given(consistent_records(), st.decimals(min_value=Decimal("0.00000001"), max_value=Decimal(1000), places=8))
def test_low_above_the_body_is_refused_on_low(record, excess):
    low = max(record["open"], record["close"]) + excess
    if low > record["high"]:
        return  # then high is also broken; covered by the next property
    assert "low" in _refused_on(record | {"low": min(record["open"], record["close"]) + excess})


@settings(max_examples=200, deadline=None)
@given(consistent_records(), st.decimals(min_value=Decimal("0.00000001"), max_value=Decimal(1000), places=8))
def test_high_below_the_body_is_refused_on_high(record, shortfall):
    high = max(record["open"], record["close"]) - shortfall
    if high <= 0:
        return
    assert "high" in _refused_on(record | {"high": high})


@settings(max_examples=200, deadline=None)
@given(
    consistent_records(), st.decimals(min_value=Decimal("0.00000001"), max_value=Decimal(1000), places=8), st.booleans()
)
def test_vwap_outside_the_range_is_refused_on_vwap(record, distance, above):
    vwap = record["high"] + distance if above else record["low"] - distance
    if vwap <= 0 or vwap >= Decimal("1e12"):
        return
    assert _refused_on(record | {"vwap": vwap}) == {"vwap"}


@settings(max_examples=200, deadline=None)
@given(
    consistent_records(),
    st.one_of(
        st.integers(max_value=-1),
        st.floats(allow_nan=True),
        st.text(max_size=5),
        st.booleans(),
        st.integers(min_value=2**63),
    ),
)
def test_bad_volume_is_refused_on_volume(record, volume):
    assert "volume" in _refused_on(record | {"volume": volume})


@settings(max_examples=200, deadline=None)
@given(
    consistent_records(),
    st.text(min_size=0, max_size=20).filter(
        lambda s: not (1 <= len(s) <= 16 and all(c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789./-" for c in s))
    ),
)
def test_bad_symbol_is_refused_on_symbol(record, symbol):
    assert "symbol" in _refused_on(record | {"symbol": symbol})


@settings(max_examples=100, deadline=None)
@given(consistent_records(), st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2100, 1, 1)))
def test_naive_timestamps_are_refused_on_ts(record, naive):
    assert _refused_on(record | {"ts": naive.isoformat()}) == {"ts"}


@settings(max_examples=100, deadline=None)
@given(consistent_records(), st.integers(-14 * 60, 14 * 60))
def test_any_offset_is_the_same_instant(record, minutes):
    instant = datetime.fromisoformat(record["ts"])
    shifted = instant.astimezone(__import__("datetime").timezone(timedelta(minutes=minutes)))
    assert validate_record(record | {"ts": shifted.isoformat()}).ts == instant
