"""The market-data record and every rule a record must meet before it is stored."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StrictInt, ValidationError

# NUMERIC(20, 8) in the schema: at most 12 integer digits and 8 decimals. A value that does not fit
# is refused rather than rounded, so what is stored is exactly what was sent.
Price = Annotated[Decimal, Field(gt=0, max_digits=20, decimal_places=8, allow_inf_nan=False)]
Symbol = Annotated[str, Field(pattern=r"^[A-Z0-9./-]{1,16}$", min_length=1, max_length=16)]
BIGINT_MAX = 2**63 - 1


class MarketRecord(BaseModel):
    """One OHLCV+VWAP bar. Unknown fields are rejected; prices are exact decimals."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    symbol: Symbol
    ts: AwareDatetime
    open: Price
    high: Price
    low: Price
    close: Price
    volume: Annotated[StrictInt, Field(ge=0, le=BIGINT_MAX)]
    vwap: Price

    def consistency_errors(self) -> list[dict[str, Any]]:
        """The bar's internal rules, each reported on the field that breaks it."""
        errors = []
        if self.low > min(self.open, self.close):
            errors.append(_error("low", "low must not exceed open or close", self.low))
        if max(self.open, self.close) > self.high:
            errors.append(_error("high", "high must not be below open or close", self.high))
        if not self.low <= self.vwap <= self.high:
            errors.append(_error("vwap", "vwap must lie between low and high", self.vwap))
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
