"""Backfill: stream a CSV or JSON-lines file of any size through the batch endpoint.

    python -m dw_ingest.load FILE --url https://host:8444 --api-key-file KEYFILE
        [--batch-size 1000] [--in-flight 4] [--format csv|jsonl] [--resume-file PATH] [--retries 8]

- Bounded memory: the file is read batch by batch; at most --in-flight batches are on the wire.
- Exact decimals: prices go to the API as the file's text (JSON strings), never through a float.
- Retries with exponential backoff (and the server's Retry-After) on 429, 502, 503, 504 and on
  connection errors and timeouts; --retries consecutive failures of one batch give up (exit 3)
  with the resume point saved. Re-sends are harmless: a stored record is a duplicate, not a row.
- Resume point (FILE.resume unless --resume-file): the last line up to which every batch was
  acknowledged, written as batches are; a rerun skips those lines instead of resending them.
- The batch endpoint stores all records of a batch or none; when it refuses some (422, each with
  its index), those are reported with their line numbers and the rest of the batch is sent again.
- Progress: one line with rows/s and ETA redrawn on a terminal, a plain line every
  --progress-seconds otherwise; then a summary: read, inserted, duplicates, rejected (line: why).

Exit status: 0 all stored, 1 finished with rejected records, 2 usage error, 3 gave up (service
unavailable), 4 refused by the service (401, 413, ...), 130 interrupted (resume point saved).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import random
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import IO, Any

import httpx
import orjson

from .models import MarketRecord

FIELDS = tuple(MarketRecord.model_fields)
BATCH_PATH = "/ingest/market-data/batch"
RETRY_STATUSES = frozenset({429, 502, 503, 504})
MAX_BACKOFF_SECONDS = 30.0


class LoadError(Exception):
    """The load cannot go on; the message says why. `status` is the exit status."""

    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.status = status


@dataclass
class Batch:
    number: int
    records: list[dict[str, Any]]
    lines: list[int]  # the file line of each record
    last_line: int  # the last line read for this batch (blank or rejected lines included)
    end: int  # the file offset after last_line, for the ETA
    rejected: list[tuple[int, str]] = field(default_factory=list)
    inserted: int = 0
    duplicates: int = 0


@dataclass
class Totals:
    """What is acknowledged, over every run on this file (kept in the resume point)."""

    line: int = 0
    end: int = 0  # the file offset after `line`
    read: int = 0
    inserted: int = 0
    duplicates: int = 0
    rejected: list[tuple[int, str]] = field(default_factory=list)

    def add(self, batch: Batch) -> None:
        self.line = batch.last_line
        self.end = batch.end
        self.read += len(batch.lines) + len(batch.rejected)  # lines: the records stored
        self.inserted += batch.inserted
        self.duplicates += batch.duplicates
        self.rejected.extend(batch.rejected)


class Source:
    """The file's records with their line numbers, read lazily; counts bytes for the ETA."""

    def __init__(self, path: Path, kind: str, skip_through: int):
        self._file: IO[bytes] = path.open("rb")
        self.size = path.stat().st_size if path.is_file() else 0
        self.position = 0
        self.line = 0
        self._skip_through = skip_through
        self._rows = self._csv() if kind == "csv" else self._jsonl()

    def _text_lines(self) -> Iterator[str]:
        for raw in self._file:
            self.position += len(raw)
            self.line += 1
            try:
                yield raw.decode("utf-8")
            except UnicodeDecodeError:
                yield "\ufffd"  # reported as a reject of this line

    def _csv(self) -> Iterator[tuple[int, dict[str, Any] | str]]:
        reader = csv.reader(self._text_lines())
        header = next(reader, None)
        if header is None:
            return
        header = [name.strip() for name in header]
        missing = [name for name in FIELDS if name not in header]
        unknown = [name for name in header if name not in FIELDS]
        if missing or unknown:
            raise LoadError(
                f"CSV header must name the fields {', '.join(FIELDS)}"
                + (f"; missing: {', '.join(missing)}" if missing else "")
                + (f"; unknown: {', '.join(unknown)}" if unknown else ""),
                2,
            )
        for values in reader:
            line = self.line
            if line <= self._skip_through or not values:
                continue
            if len(values) != len(header):
                yield line, f"{len(values)} values for {len(header)} columns"
                continue
            record: dict[str, Any] = dict(zip(header, values, strict=True))
            volume = record["volume"].strip()
            record["volume"] = int(volume) if volume.isdigit() else volume  # else the API names it
            yield line, record

    def _jsonl(self) -> Iterator[tuple[int, dict[str, Any] | str]]:
        for text in self._text_lines():
            line = self.line
            if line <= self._skip_through or not text.strip():
                continue
            try:
                record = json.loads(text, parse_float=Decimal)
            except ValueError as exc:
                yield line, f"not valid JSON: {exc}"
                continue
            if not isinstance(record, dict):
                yield line, "not a JSON object"
                continue
            # Decimals travel as their text (the API reads decimal strings exactly); a whole volume
            # written as 1000.0 stays a number, as it was in the file.
            for name, value in record.items():
                if isinstance(value, Decimal):
                    record[name] = int(value) if name == "volume" and value == value.to_integral_value() else str(value)
            yield line, record

    def batches(self, size: int) -> Iterator[Batch]:
        number = 0
        records: list[dict[str, Any]] = []
        lines: list[int] = []
        rejected: list[tuple[int, str]] = []
        for line, item in self._rows:
            if isinstance(item, str):
                rejected.append((line, item))
                continue
            records.append(item)
            lines.append(line)
            if len(records) == size:
                yield Batch(number, records, lines, self.line, self.position, rejected)
                number += 1
                records, lines, rejected = [], [], []
        if records or rejected:
            yield Batch(number, records, lines, self.line, self.position, rejected)

    def close(self) -> None:
        self._file.close()


class ResumePoint:
    """The acknowledged prefix of the file, saved atomically (write, then rename)."""

    def __init__(self, path: Path, source: Path):
        self.path = path
        self._source = str(source.resolve())

    def load(self) -> Totals:
        if not self.path.exists():
            return Totals()
        state = json.loads(self.path.read_text())
        if state.get("source") != self._source:
            raise LoadError(f"{self.path} is the resume point of {state.get('source')}, not of this file", 2)
        return Totals(
            line=state["line"],
            end=state["end"],
            read=state["read"],
            inserted=state["inserted"],
            duplicates=state["duplicates"],
            rejected=[(line, why) for line, why in state["rejected"]],
        )

    def save(self, totals: Totals, finished: bool) -> None:
        state = {"source": self._source, "finished": finished, **totals.__dict__}
        temporary = self.path.with_name(self.path.name + ".tmp")
        temporary.write_text(json.dumps(state))
        os.replace(temporary, self.path)


class Progress:
    """Rows/s and ETA: redrawn in place on a terminal, a plain line every `every` seconds otherwise."""

    def __init__(self, stream: IO[str], every: float, rows_before: int, start_offset: int):
        self._stream = stream
        self._tty = stream.isatty()
        self._every = 0.25 if self._tty else every
        self._started = time.monotonic()
        self._last = self._started
        self._rows_before = rows_before
        self._start_offset = start_offset  # where this run starts (after a resume point)

    def update(self, rows: int, acknowledged: int, size: int, force: bool = False) -> None:
        """`acknowledged`: the file offset up to which every batch is stored; `size` 0 if unknown."""
        now = time.monotonic()
        if not force and now - self._last < self._every:
            return
        self._last = now
        elapsed = max(now - self._started, 1e-9)
        rate = rows / elapsed
        text = f"{self._rows_before + rows:,} rows acknowledged, {rate:,.0f} rows/s"
        if size and acknowledged > self._start_offset:
            done = acknowledged / size
            share = (acknowledged - self._start_offset) / (size - self._start_offset)
            eta = elapsed * (1 - share) / share
            text += f", {done:.1%} of the file, ETA {int(eta // 60)}:{int(eta % 60):02d}"
        if self._tty:
            self._stream.write("\r\x1b[K" + text)
        else:
            self._stream.write(text + "\n")
        self._stream.flush()

    def done(self) -> None:
        if self._tty:
            self._stream.write("\n")
            self._stream.flush()


class Loader:
    def __init__(self, args: argparse.Namespace, key: str, resume: ResumePoint, totals: Totals):
        self._args = args
        self._resume = resume
        self.totals = totals
        self.retries = 0
        self.rows_this_run = 0
        self.acknowledged = totals.end
        self._done: dict[int, Batch] = {}
        self._next_to_ack = 0
        self._http = httpx.AsyncClient(
            base_url=args.url.rstrip("/"),
            headers={"X-API-Key": key, "Content-Type": "application/json"},
            timeout=args.timeout,
            limits=httpx.Limits(max_connections=args.in_flight, max_keepalive_connections=args.in_flight),
        )

    async def close(self) -> None:
        await self._http.aclose()

    async def run(self, source: Source, progress: Progress) -> None:
        """Keep up to --in-flight batches on the wire while the next one is read (in a thread: the
        file may be slow, a pipe), and acknowledge each as it is answered."""
        batches = source.batches(self._args.batch_size)
        pending: set[asyncio.Task[Batch]] = set()
        reading: asyncio.Task[Batch | None] | None = None
        exhausted = False
        try:
            while True:
                if reading is None and not exhausted and len(pending) < self._args.in_flight:
                    reading = asyncio.create_task(asyncio.to_thread(next, batches, None))
                waiting: set[asyncio.Task[Any]] = pending | ({reading} if reading else set())
                if not waiting:
                    break
                finished, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                for task in finished:
                    if task is reading:
                        reading = None
                        batch = task.result()
                        if batch is None:
                            exhausted = True
                        else:
                            pending.add(asyncio.create_task(self._send(batch)))
                    else:
                        pending.discard(task)
                        self._acknowledge(task.result())  # a LoadError propagates
                progress.update(self.rows_this_run, self.acknowledged, source.size)
        finally:
            for task in pending:  # after an error: the batches still on the wire are not acknowledged
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        progress.update(self.rows_this_run, self.acknowledged, source.size, force=True)

    def _acknowledge(self, batch: Batch) -> None:
        """Fold finished batches into the totals in file order, so the resume point is a prefix."""
        self._done[batch.number] = batch
        advanced = False
        while self._next_to_ack in self._done:
            done = self._done.pop(self._next_to_ack)
            self.totals.add(done)
            self.rows_this_run += len(done.lines)
            self.acknowledged = done.end  # == self.totals.end
            self._next_to_ack += 1
            advanced = True
        if advanced:
            self._resume.save(self.totals, finished=False)

    async def _send(self, batch: Batch) -> Batch:
        records, lines = batch.records, batch.lines
        while records:
            response = await self._post(records, lines[0])
            if response.status_code == 200:
                answer = response.json()
                batch.inserted, batch.duplicates = answer["inserted"], answer["duplicates"]
                break
            # 422: every bad record is named by its index; those are rejects, the rest goes again.
            bad: dict[int, list[str]] = {}
            for error in response.json().get("detail", []):
                loc = error.get("loc", [])
                if len(loc) >= 2 and isinstance(loc[1], int) and 0 <= loc[1] < len(records):
                    where = ".".join(str(part) for part in loc[2:]) or "record"
                    bad.setdefault(loc[1], []).append(f"{where}: {error.get('msg')}")
            if not bad:
                raise LoadError(f"the service refused the batch from line {lines[0]}: {response.text[:300]}", 4)
            batch.rejected.extend((lines[index], "; ".join(why)) for index, why in sorted(bad.items()))
            keep = [index for index in range(len(records)) if index not in bad]
            records, lines = [records[i] for i in keep], [lines[i] for i in keep]
        batch.rejected.sort()
        batch.lines = lines
        batch.records = []  # sent: free the memory before the batch waits for its turn
        return batch

    async def _post(self, records: list[dict[str, Any]], first_line: int) -> httpx.Response:
        body = orjson.dumps(records)
        failures = 0
        while True:
            wait = None
            try:
                response = await self._http.post(BATCH_PATH, content=body)
            except (httpx.TransportError, httpx.TimeoutException) as exc:
                reason = f"{type(exc).__name__}: {exc}"
            else:
                if response.status_code in (200, 422):
                    return response
                if response.status_code not in RETRY_STATUSES:
                    raise LoadError(
                        f"the service answered {response.status_code} for the batch from line {first_line}: "
                        f"{response.text[:300]}",
                        4,
                    )
                reason = f"HTTP {response.status_code}"
                retry_after = response.headers.get("retry-after", "")
                wait = float(retry_after) if retry_after.isdigit() else None
            failures += 1
            if failures > self._args.retries:
                raise LoadError(f"gave up on the batch from line {first_line} after {failures} attempts: {reason}", 3)
            self.retries += 1
            backoff = min(MAX_BACKOFF_SECONDS, self._args.backoff * 2 ** (failures - 1))
            delay = min(MAX_BACKOFF_SECONDS, wait) if wait is not None else backoff * random.uniform(0.5, 1.0)  # noqa: S311 - jitter, not a secret
            print(
                f"retry {failures}/{self._args.retries} of the batch from line {first_line} in {delay:.1f} s: {reason}",
                file=sys.stderr,
                flush=True,
            )
            await asyncio.sleep(delay)


def summary(totals: Totals, resumed_from: int, rows_this_run: int, seconds: float, retries: int) -> str:
    lines = [
        f"read {totals.read:,} records, inserted {totals.inserted:,}, duplicates {totals.duplicates:,}, "
        f"rejected {len(totals.rejected):,}",
        f"this run: {rows_this_run:,} records in {seconds:.1f} s ({rows_this_run / max(seconds, 1e-9):,.0f} rows/s), "
        f"{retries} retries" + (f", resumed after line {resumed_from}" if resumed_from else ""),
    ]
    lines += [f"rejected line {line}: {why}" for line, why in totals.rejected]
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m dw_ingest.load", description=__doc__.splitlines()[0])
    parser.add_argument("file", type=Path, help="CSV (with a header naming the fields) or JSON lines")
    parser.add_argument("--url", required=True, help="the API's base URL, e.g. https://api1:8444")
    parser.add_argument("--api-key-file", type=Path, required=True, help="a file holding the API key")
    parser.add_argument("--format", choices=("csv", "jsonl"), help="default: from the file name (.csv, else jsonl)")
    parser.add_argument("--batch-size", type=int, default=1000, help="records per request (default 1000)")
    parser.add_argument("--in-flight", type=int, default=4, help="batches on the wire at once (default 4)")
    parser.add_argument("--resume-file", type=Path, help="default: FILE.resume")
    parser.add_argument("--retries", type=int, default=8, help="attempts after the first, per batch (default 8)")
    parser.add_argument("--backoff", type=float, default=0.5, help="first retry delay in seconds, doubling")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per request")
    parser.add_argument("--progress-seconds", type=float, default=10.0, help="plain progress line interval")
    parser.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    args = parser.parse_args(argv)
    for name in ("batch_size", "in_flight"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.retries < 0:
        parser.error("--retries must not be negative")
    return args


async def load(args: argparse.Namespace) -> int:
    try:
        key = args.api_key_file.read_text().strip()
    except OSError as exc:
        raise LoadError(f"cannot read --api-key-file: {exc}", 2) from None
    kind = args.format or ("csv" if args.file.suffix.lower() == ".csv" else "jsonl")
    resume = ResumePoint(args.resume_file or args.file.with_name(args.file.name + ".resume"), args.file)
    totals = resume.load()
    resumed_from = totals.line
    try:
        source = Source(args.file, kind, skip_through=totals.line)
    except OSError as exc:
        raise LoadError(f"cannot read {args.file}: {exc}", 2) from None
    loader = Loader(args, key, resume, totals)
    progress = Progress(sys.stderr, args.progress_seconds, totals.read - len(totals.rejected), totals.end)
    started = time.monotonic()
    status = 0
    try:
        await loader.run(source, progress)
        resume.save(loader.totals, finished=True)
        status = 1 if loader.totals.rejected else 0
    except LoadError as exc:
        print(f"\ndw_ingest.load: {exc}", file=sys.stderr)
        status = exc.status
    finally:
        progress.done()
        source.close()
        await loader.close()
        seconds = time.monotonic() - started
        if args.json:
            print(
                json.dumps(
                    {
                        **loader.totals.__dict__,
                        "rows_this_run": loader.rows_this_run,
                        "seconds": round(seconds, 2),
                        "retries": loader.retries,
                        "resumed_after_line": resumed_from,
                        "status": status,
                    }
                )
            )
        else:
            print(summary(loader.totals, resumed_from, loader.rows_this_run, seconds, loader.retries))
    return status


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return asyncio.run(load(args))
    except LoadError as exc:
        print(f"dw_ingest.load: {exc}", file=sys.stderr)
        return exc.status
    except KeyboardInterrupt:
        print("dw_ingest.load: interrupted; the resume point holds what was acknowledged", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
