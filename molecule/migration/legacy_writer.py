"""The old server's API traffic, as the test bed replays it: one insert after another into each
database's staging.market_data in the OLD layout, as dw_user over TCP (the old units' login).

Two logs per database under the work directory: `<db>.attempted` gets a line before each INSERT,
`<db>.committed` gets `id ticker trade_time` only after COMMIT returned. What the cutover must
carry over is exactly the committed lines; an INSERT refused once the cutover revoked the privilege
is retried later (a client of the old API would have retried too)."""

from __future__ import annotations

import contextlib
import datetime as dt
import random
import sys
import time
from pathlib import Path

import psycopg2

RNG = random.Random()  # noqa: S311 (test data, not secrets)
DATABASES = ("cosc471_prod", "cosc471_dev", "cosc471_test")
INSERT = (
    "INSERT INTO staging.market_data (ticker, trade_time, open_price, high_price, low_price, "
    "close_price, volume, vwap) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) RETURNING id"
)


def connect(database: str, password: str):
    return psycopg2.connect(host="127.0.0.1", dbname=database, user="dw_user", password=password, connect_timeout=5)


def main(workdir: Path, password: str, interval: float) -> None:
    with contextlib.ExitStack() as files:
        logs = {
            db: tuple(
                files.enter_context(open(workdir / f"{db}.{kind}", "a", buffering=1))
                for kind in ("attempted", "committed")
            )
            for db in DATABASES
        }
        write_forever(logs, password, interval)


def write_forever(logs: dict, password: str, interval: float) -> None:
    connections: dict = {}
    while True:
        for db in DATABASES:
            attempted, committed = logs[db]
            low = round(RNG.uniform(10, 500), 4)
            high = round(low + RNG.uniform(0, 5), 4)
            open_, close = round(RNG.uniform(low, high), 4), round(RNG.uniform(low, high), 4)
            vwap = round((low + high) / 2, 4)
            # Microseconds of the wall clock: unique per database, as the old API's bars were.
            trade_time = dt.datetime.now(dt.UTC).replace(tzinfo=None)
            row = ("LIVE", trade_time, open_, high, low, close, RNG.randint(1, 10**6), vwap)
            attempted.write(f"{trade_time.isoformat()}\n")
            try:
                conn = connections.get(db) or connections.setdefault(db, connect(db, password))
                with conn.cursor() as cur:
                    cur.execute(INSERT, row)
                    new_id = cur.fetchone()[0]
                conn.commit()
            except psycopg2.Error:
                conn = connections.pop(db, None)
                if conn is not None:
                    conn.close()
                continue
            committed.write(f"{new_id} LIVE {trade_time.isoformat()}\n")
        time.sleep(interval)


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]).read_text().strip(), float(sys.argv[3]))
