"""Send a few plausible market-data records to an ingestion endpoint (the dev feed's stand-in).

    python -m dw_ingest.simulator [--url URL] [--api-key KEY] [--min-records 4] [--max-records 8]

Each run sends N records (N drawn between the bounds) with consistent OHLC and VWAP and distinct
timestamps, retries connection errors and 5xx with backoff, prints one summary line, and exits
non-zero when any record was not accepted.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

import httpx

DEFAULT_URL = "http://127.0.0.1:8001/ingest/market-data/"
DEFAULT_SYMBOLS = ("AAPL", "TSLA", "BTCUSD", "XOM", "GLD", "SPY", "MSFT", "NVDA")
# Rough price levels, so records look like their instruments.
PRICE_LEVELS = {"AAPL": 190, "TSLA": 240, "BTCUSD": 64000, "XOM": 110, "GLD": 215, "SPY": 520, "MSFT": 420, "NVDA": 900}
CENT = Decimal("0.01")


def make_record(symbol: str, ts: datetime, rng: random.Random) -> dict[str, object]:
    level = Decimal(PRICE_LEVELS.get(symbol, 100))
    open_ = (level * Decimal(1 + rng.gauss(0, 0.01))).quantize(CENT)
    close = (open_ * Decimal(1 + rng.gauss(0, 0.004))).quantize(CENT)
    # Round the extremes outward so that low <= open, close <= high holds after rounding.
    high = (max(open_, close) * Decimal(1 + abs(rng.gauss(0, 0.002)))).quantize(CENT, ROUND_CEILING)
    low = (min(open_, close) * Decimal(1 - abs(rng.gauss(0, 0.002)))).quantize(CENT, ROUND_FLOOR)
    vwap = (low + (high - low) * Decimal(rng.random())).quantize(CENT, ROUND_FLOOR)
    return {
        "symbol": symbol,
        "ts": ts.isoformat(),
        "open": str(open_),
        "high": str(high),
        "low": str(low),
        "close": str(close),
        "volume": rng.randint(100, 50_000),
        "vwap": str(max(low, min(vwap, high))),
    }


def make_records(count: int, symbols: Sequence[str], rng: random.Random, now: datetime | None = None) -> list[dict]:
    now = (now or datetime.now(UTC)).replace(microsecond=0)
    # One millisecond apart: distinct timestamps within a run whatever symbols are drawn.
    return [make_record(rng.choice(symbols), now - timedelta(milliseconds=i), rng) for i in range(count)]


def send(client: httpx.Client, url: str, record: dict, attempts: int = 5, backoff: float = 0.5) -> bool:
    for attempt in range(attempts):
        try:
            response = client.post(url, json=record)
        except httpx.TransportError as exc:
            reason = f"{type(exc).__name__}: {exc}"
        else:
            if response.status_code == 200:
                return True
            if response.status_code < 500:
                print(
                    f"simulator: {record['symbol']} {record['ts']} rejected: {response.status_code} "
                    f"{response.text[:300]}",
                    file=sys.stderr,
                )
                return False
            reason = f"HTTP {response.status_code}"
        if attempt + 1 < attempts:
            time.sleep(backoff * 2**attempt)
    print(f"simulator: {record['symbol']} {record['ts']} failed after {attempts} attempts: {reason}", file=sys.stderr)
    return False


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    env = os.environ
    parser = argparse.ArgumentParser(prog="python -m dw_ingest.simulator", description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=env.get("SIMULATOR_URL", DEFAULT_URL))
    parser.add_argument("--api-key", default=env.get("SIMULATOR_API_KEY", ""))
    parser.add_argument("--min-records", type=int, default=int(env.get("SIMULATOR_MIN_RECORDS", "4")))
    parser.add_argument("--max-records", type=int, default=int(env.get("SIMULATOR_MAX_RECORDS", "8")))
    parser.add_argument("--symbols", default=env.get("SIMULATOR_SYMBOLS", ",".join(DEFAULT_SYMBOLS)))
    parser.add_argument("--seed", type=int, default=None, help="for reproducible runs")
    parser.add_argument("--timeout", type=float, default=10.0)
    args = parser.parse_args(argv)
    if not 1 <= args.min_records <= args.max_records:
        parser.error("need 1 <= --min-records <= --max-records")
    args.symbols = [s.strip().upper() for s in args.symbols.split(",") if s.strip()]
    if not args.symbols:
        parser.error("--symbols names no symbol")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    rng = random.Random(args.seed)
    records = make_records(rng.randint(args.min_records, args.max_records), args.symbols, rng)
    headers = {"X-API-Key": args.api_key} if args.api_key else {}
    with httpx.Client(timeout=args.timeout, headers=headers) as client:
        accepted = sum(send(client, args.url, record) for record in records)
    failed = len(records) - accepted
    print(f"simulator: sent={len(records)} accepted={accepted} failed={failed} url={args.url}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
