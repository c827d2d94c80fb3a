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

Standalone (schemathesis only), so that it also runs where the service is not installed: loaded
by the pytest run (import) and by `st run` with SCHEMATHESIS_HOOKS=<path of this file>. Through
as_strategy() the hook runs before the case gets its metadata; the pytest run calls it once more.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

import schemathesis

# The order low <= open <= vwap <= close <= high satisfies every rule whatever the values.
PRICE_ORDER = ("low", "open", "vwap", "close", "high")
VOLUME_MAX = 2**63 - 1  # BIGINT


def _value(price: Any) -> Decimal:
    try:
        return Decimal(str(price))
    except InvalidOperation:
        return Decimal(0)


def consistent(record: Any, *, positive: bool) -> Any:
    """The record with its prices in a valid order and its volume within the bound (see above)."""
    if not isinstance(record, dict) or not all(field in record for field in PRICE_ORDER):
        return record
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
