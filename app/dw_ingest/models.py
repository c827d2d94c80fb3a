"""The market-data record and every rule a record must meet before it is stored.

The model is also the record's OpenAPI schema: every constraint a JSON Schema can state is declared
here, next to the validator that enforces it, so the two cannot drift apart."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictInt,
    ValidationError,
    ValidatorFunctionWrapHandler,
    WrapValidator,
)

# NUMERIC(20, 8) in the schema: at most 12 integer digits and 8 decimals. A value that does not fit
# is refused rather than rounded, so what is stored is exactly what was sent.
PRICE_INTEGER_DIGITS = 12
PRICE_DECIMAL_PLACES = 8
# A positive price in plain decimal notation that fits NUMERIC(20, 8): leading zeros and trailing
# zeros after the 8th decimal change nothing. Written without look-arounds, which test generators
# (hypothesis' from_regex) and ECMA-262 validators read alike.
PRICE_TEXT_PATTERN = (
    rf"^0*(?:[1-9][0-9]{{0,{PRICE_INTEGER_DIGITS - 1}}}(?:\.[0-9]{{0,{PRICE_DECIMAL_PLACES}}}0*)?"
    rf"|\.[0-9]{{0,{PRICE_DECIMAL_PLACES - 1}}}[1-9]0*)$"
)


def _describe_price(schema: dict[str, Any]) -> None:
    """pydantic documents a Decimal as "a positive number, or any string"; state the limits it
    enforces. A JSON number is read as an exact decimal (never a float), so multipleOf is exact."""
    number, text = schema["anyOf"]
    number["exclusiveMaximum"] = 10**PRICE_INTEGER_DIGITS
    number["multipleOf"] = 10**-PRICE_DECIMAL_PLACES
    text["pattern"] = PRICE_TEXT_PATTERN
    schema["description"] = (
        f"Positive, at most {PRICE_INTEGER_DIGITS} integer digits and {PRICE_DECIMAL_PLACES} decimals, stored "
        'digit for digit: a JSON number, or a decimal string. Exponent notation in a string ("1E+2") is '
        "read as well, for feeds that write it, but is outside the documented pattern."
    )


Price = Annotated[
    Decimal,
    Field(
        gt=0,
        max_digits=PRICE_INTEGER_DIGITS + PRICE_DECIMAL_PLACES,
        decimal_places=PRICE_DECIMAL_PLACES,
        allow_inf_nan=False,
        json_schema_extra=_describe_price,
    ),
]
Symbol = Annotated[
    str, Field(pattern=r"^[A-Z0-9./-]{1,16}$", min_length=1, max_length=16, description="Ticker, upper case")
]
BIGINT_MAX = 2**63 - 1


# RFC 3339, the date-time of JSON Schema and OpenAPI. pydantic alone also reads Unix times (numbers
# and digit strings), a space for the T and offsets without a colon; the service takes only this.
TIMESTAMP_PATTERN = (
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)?(?:[Zz]|[+-][0-9]{2}:[0-9]{2})$"
)
_TIMESTAMP = re.compile(TIMESTAMP_PATTERN)


def _rfc3339(value: Any, parse: ValidatorFunctionWrapHandler) -> datetime:
    """pydantic parses first, so a naive or unreadable time keeps its own message."""
    if not isinstance(value, str):
        raise ValueError("Input should be an RFC 3339 datetime string")
    ts = parse(value)
    if not _TIMESTAMP.match(value):
        raise ValueError("Input should be an RFC 3339 datetime, such as 2026-11-24T14:30:00Z")
    return ts


def _storable_instant(ts: datetime) -> datetime:
    """An offset can carry a valid local time out of the years 1-9999 in UTC, which the database
    driver cannot send (it once made such a record a 500)."""
    try:
        ts.astimezone(UTC)
    except OverflowError:
        raise ValueError("ts must fall within the years 1 to 9999 in UTC") from None
    return ts


Timestamp = Annotated[
    AwareDatetime,
    WrapValidator(_rfc3339),
    AfterValidator(_storable_instant),
    Field(
        description="RFC 3339 date-time with its UTC offset (Z or +hh:mm); a time without one is refused",
        json_schema_extra={"pattern": TIMESTAMP_PATTERN},
    ),
]


def _whole_number(value: Any) -> Any:
    """JSON has one number type: 2308250.0 and 1e3 are integers to a JSON Schema, and reach the model
    as Decimals (decode_json reads fractions exactly), so those become ints. A fraction, a float
    (never from JSON here) or a string goes on to StrictInt and is refused there. The size check
    comes first so that 1e999999 is not expanded into a million digits."""
    if isinstance(value, Decimal) and value.is_finite() and value.adjusted() < 19:
        whole = int(value)
        if whole == value:
            return whole
    return value


def _describe_volume(schema: dict[str, Any]) -> None:
    """FastAPI's OpenAPI model holds bounds as floats, in which 2**63 - 1 becomes 2**63 and the
    documented maximum would admit one value too many; 2**63 as an exclusive bound is exact in a
    float and, for integers, says the same as the inclusive bound the validator checks."""
    schema["exclusiveMaximum"] = schema.pop("maximum") + 1


Volume = Annotated[
    StrictInt,
    Field(ge=0, le=BIGINT_MAX, description="Units traded", json_schema_extra=_describe_volume),
    BeforeValidator(_whole_number),
]


class MarketRecord(BaseModel):
    """One OHLCV+VWAP bar. Unknown fields are rejected; prices are exact decimals. Beyond what the
    schema states: low <= open, close <= high and low <= vwap <= high (a JSON Schema cannot compare
    two fields), each breach reported as a 422 on the field that breaks it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    symbol: Symbol
    ts: Timestamp
    open: Price
    high: Price
    low: Price
    close: Price
    volume: Volume
    vwap: Price

    def consistency_errors(self) -> list[dict[str, Any]]:
        """The bar's internal rules, each reported on the field that breaks it."""
        return consistency_errors(self)


def consistency_errors(bar: Any) -> list[dict[str, Any]]:
    """low <= open, close <= high and low <= vwap <= high, each breach on the field that breaks it.
    `bar` is a MarketRecord or the fast path's struct generated from it (fast_decode.py)."""
    errors = []
    if bar.low > min(bar.open, bar.close):
        errors.append(_error("low", "low must not exceed open or close", bar.low))
    if max(bar.open, bar.close) > bar.high:
        errors.append(_error("high", "high must not be below open or close", bar.high))
    if not bar.low <= bar.vwap <= bar.high:
        errors.append(_error("vwap", "vwap must lie between low and high", bar.vwap))
    return errors


def _error(field: str, message: str, value: Any) -> dict[str, Any]:
    return {"type": "value_error", "loc": [field], "msg": message, "input": value}


class RecordErrors(Exception):
    """A request's records broke rules; errors are in FastAPI's 422 shape (loc starts with body)."""

    def __init__(self, errors: list[dict[str, Any]]):
        super().__init__(f"{len(errors)} validation error(s)")
        self.errors = errors


def validate_record(data: Any, loc_prefix: tuple[Any, ...] = ("body",)) -> MarketRecord:
    """Validate one decoded JSON value; raise RecordErrors naming every bad field."""
    if not isinstance(data, dict):
        raise RecordErrors(
            [
                {
                    "type": "model_attributes_type",
                    "loc": list(loc_prefix),
                    "msg": "Input should be a JSON object",
                    "input": _jsonable(data),
                }
            ]
        )
    try:
        record = MarketRecord.model_validate(data)
    except ValidationError as exc:
        raise RecordErrors(_from_pydantic(exc, loc_prefix)) from None
    problems = record.consistency_errors()
    if problems:
        raise RecordErrors([{**p, "loc": [*loc_prefix, *p["loc"]], "input": _jsonable(p["input"])} for p in problems])
    return record


def validate_batch(data: Any, max_records: int) -> list[MarketRecord]:
    """All-or-nothing: every bad record and field is listed, with its index."""
    if not isinstance(data, list):
        raise RecordErrors(
            [{"type": "list_type", "loc": ["body"], "msg": "Input should be a JSON array of records", "input": None}]
        )
    if not data:
        raise RecordErrors([{"type": "too_short", "loc": ["body"], "msg": "The batch holds no record", "input": []}])
    if len(data) > max_records:
        raise RecordErrors(
            [
                {
                    "type": "too_long",
                    "loc": ["body"],
                    "msg": f"A batch holds at most {max_records} records, not {len(data)}",
                    "input": None,
                }
            ]
        )
    records: list[MarketRecord] = []
    errors: list[dict[str, Any]] = []
    for index, item in enumerate(data):
        try:
            records.append(validate_record(item, ("body", index)))
        except RecordErrors as exc:
            errors.extend(exc.errors)
    if errors:
        raise RecordErrors(errors)
    return records


def _from_pydantic(exc: ValidationError, loc_prefix: tuple[Any, ...]) -> list[dict[str, Any]]:
    return [
        {
            "type": e["type"],
            "loc": [*loc_prefix, *(_jsonable(part) for part in e["loc"])],
            "msg": e["msg"],
            "input": _jsonable(e.get("input")),
        }
        for e in exc.errors(include_url=False, include_context=False)
    ]


_INT64 = range(-(2**63), 2**63)


def _jsonable(value: Any) -> Any:
    """Inputs echoed in errors, in what the JSON encoder can always write: decimals and integers
    beyond 64 bits as exact strings, containers summarised, long text cut, and lone surrogates
    (valid JSON escapes, not UTF-8) replaced."""
    if isinstance(value, Decimal) or (isinstance(value, int) and value not in _INT64):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict | list):
        return None
    if isinstance(value, str):
        text = value if len(value) <= 200 else value[:200] + "..."
        return text.encode("utf-8", "replace").decode("utf-8")
    return value
