"""Logging: plain lines on stdout for journald, one line per asyncpg reconnect failure."""

from __future__ import annotations

import asyncio
import logging
import sys

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
# A record attribute (logging's `extra`): True lets LoopFlushedHandler flush the line a moment later.
FLUSH_LATER = "flush_later"


class OneLineErrors(logging.Filter):
    """asyncpg logs a full traceback on every reconnect attempt while the database is down;
    one line with the exception is what an operator reading the journal needs."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.startswith("asyncpg") and record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            record.msg = f"{record.getMessage()}: {type(exc).__name__}: {exc}"
            record.args = None
            record.exc_info = None
            record.exc_text = None
        return True


class LoopFlushedHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A stream handler that can leave a line's flush to the event loop's next iteration.

    StreamHandler flushes after every record: under load one write(2) to journald per access line,
    and journald's CPU for each. A record marked `flush_later` (core.log_request marks the access line so while
    other requests are in flight) is flushed by a callback at the loop's next iteration, so the
    lines of the requests answered together leave in one write. Any other record, and a line
    logged outside a running loop, is flushed at once with whatever waits before it: an idle
    service writes each line as it happens."""

    def __init__(self, stream: object) -> None:
        super().__init__(stream)  # type: ignore[arg-type]
        self._flush_later = False
        self._flush_pending = False

    def emit(self, record: logging.LogRecord) -> None:
        self._flush_later = getattr(record, FLUSH_LATER, False)
        super().emit(record)  # calls flush()

    def flush(self) -> None:
        if self._flush_later:
            self._flush_later = False
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                pass
            else:
                if not self._flush_pending:
                    self._flush_pending = True
                    loop.call_soon(self._flush_now)
                return
        self._flush_now()

    def _flush_now(self) -> None:
        self._flush_pending = False
        super().flush()


def configure_logging(level: str) -> None:
    """Plain lines on stdout for journald; also in worker processes, which start afresh."""
    if not logging.getLogger().handlers:
        handler = LoopFlushedHandler(sys.stdout)
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        logging.basicConfig(level=level.upper(), handlers=[handler])
    # No record field the format uses needs the caller's frame, thread or process: skip finding them.
    logging._srcfile = None  # type: ignore[attr-defined]
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    # On the handlers: a logger's own filters do not see records of its children (asyncpg.pool).
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, OneLineErrors) for f in handler.filters):
            handler.addFilter(OneLineErrors())
