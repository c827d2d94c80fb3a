"""Logging: plain lines on stdout for journald, one line per asyncpg reconnect failure."""

from __future__ import annotations

import logging
import sys

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


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


def configure_logging(level: str) -> None:
    """Plain lines on stdout for journald; also in worker processes, which start afresh."""
    if not logging.getLogger().handlers:
        logging.basicConfig(level=level.upper(), format=LOG_FORMAT, stream=sys.stdout)
    # On the handlers: a logger's own filters do not see records of its children (asyncpg.pool).
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, OneLineErrors) for f in handler.filters):
            handler.addFilter(OneLineErrors())
