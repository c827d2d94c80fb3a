"""Schemathesis hooks: teach the generator the one record rule the OpenAPI schema cannot state.

A JSON Schema cannot compare two fields, so a record schemathesis draws as valid usually breaks
low <= open, close <= high and low <= vwap <= high, and the service rightly answers 422. The five
drawn prices are handed out in order (lowest to low, highest to high), which keeps every value and
the form it was drawn in. That is done for every case: a case may be negative for a header alone
and still expect its body accepted, and reordering cannot make a bad price (or a missing or an
extra field) good, so a negative case stays negative.

And a volume that float64 cannot tell from the bound: schemathesis works out the bounds of large
integers in floating point, so it may draw 9223372036854775998 as below "exclusiveMaximum":
9223372036854775808 (both round to 2**63) and expect it accepted. Such a volume is put back on
the largest one the schema allows; in a positive case, any volume beyond it is.

And a time on the first or last day of the calendar with an offset that takes it out of years
1 to 9999 in UTC (0001-01-01T00:00:01+06:03): the pattern cannot say so, and the service rightly
refuses it. In a positive case its year moves one step inward (0001 to 0002, 9999 to 9998).

Standalone (schemathesis only), so that it also runs where the service is not installed: loaded
by the pytest run (import) and by `st run` with SCHEMATHESIS_HOOKS=<path of this file>. Through
as_strategy() the hook runs before the case gets its metadata; the pytest run calls it once more.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import schemathesis

# The order low <= open <= vwap <= close <= high satisfies every rule whatever the values.
PRICE_ORDER = ("low", "open", "vwap", "close", "high")
VOLUME_MAX = 2**63 - 1  # BIGINT


def _value(price: Any) -> Decimal:
    """A sort key for any drawn price: NaN (which Decimal refuses to order) and anything that is
    not a number sort as 0, where the service rejects them anyway."""
    try:
        value = Decimal(str(price))
    except InvalidOperation:
        return Decimal(0)
    return value if not value.is_nan() else Decimal(0)


def _in_utc_range(ts: str) -> bool:
    try:
        datetime.fromisoformat(ts.replace("z", "Z").replace("Z", "+00:00")).astimezone(UTC)
    except OverflowError:
        return False
    except ValueError:
        return True  # not a time at all: the case is about something else
    return True


def consistent(record: Any, *, positive: bool) -> Any:
    """The record with its prices in a valid order, its volume within the bound and its time
    within the calendar in UTC (see above)."""
    if not isinstance(record, dict) or not all(field in record for field in PRICE_ORDER):
        return record
    ts = record.get("ts")
    if positive and isinstance(ts, str) and not _in_utc_range(ts):
        record = record | {"ts": ("0002" if ts.startswith("0001") else "9998") + ts[4:]}
    prices = sorted((record[field] for field in PRICE_ORDER), key=_value)
    volume = record.get("volume")
    if isinstance(volume, int | float) and volume > VOLUME_MAX and (positive or float(volume) == 2.0**63):
        record = record | {"volume": VOLUME_MAX}
    return record | dict(zip(PRICE_ORDER, prices, strict=True))


@schemathesis.hook
def map_case(context: Any, case: Any) -> Any:
    positive = case.meta is not None and case.meta.generation.mode.is_positive
    if isinstance(case.body, list):
        case.body = [consistent(record, positive=positive) for record in case.body]
    else:
        case.body = consistent(case.body, positive=positive)
    return case
