"""Why a request is refused, and the answer each refusal gets: one handler per exception, used by
the router and by the lean path alike (IngestAPI looks them up in app.exception_handlers)."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.responses import Response

from .config import Settings
from .db import DatabaseUnavailable
from .metrics import RECORDS
from .models import RecordErrors
from .responses import JSONBody

app_log = logging.getLogger("dw_ingest")


class BodyTooLarge(Exception):
    pass


class Unauthorized(Exception):
    pass


class UnsupportedMediaType(Exception):
    pass


class UnsupportedEncoding(Exception):
    """A Content-Encoding other than identity: the body would be compressed bytes, not JSON."""


class BodyTimeout(Exception):
    """The request's body did not arrive within BODY_TIMEOUT_SECONDS (raised by the HTTP protocol)."""


def body_timeout_detail(seconds: float) -> str:
    """The 408's detail, whoever answers it: the app's handler or the HTTP protocol."""
    return f"the request did not arrive in full within {seconds:g} s"


def add_error_handlers(app: FastAPI, settings: Settings) -> None:
    """The 401, 408, 413, 415, 422 and 503 answers, as documented by responses.INGEST_ERRORS."""
    retry_after = {"Retry-After": str(settings.retry_after_seconds)}

    async def on_record_errors(request: Request, exc: RecordErrors) -> Response:
        RECORDS.labels(outcome="rejected").inc()
        return JSONBody({"detail": exc.errors}, status_code=422)

    async def on_database_unavailable(request: Request, exc: DatabaseUnavailable) -> Response:
        app_log.warning("database unavailable: %s", exc)
        return JSONBody({"detail": "database unavailable, retry later"}, status_code=503, headers=retry_after)

    async def on_unauthorized(request: Request, exc: Unauthorized) -> Response:
        return JSONBody(
            {"detail": "missing or invalid API key (Authorization: Bearer <key> or X-API-Key)"},
            status_code=401,
            headers={"WWW-Authenticate": "Bearer"},
        )

    async def on_too_large(request: Request, exc: BodyTooLarge) -> Response:
        return JSONBody({"detail": f"body larger than {settings.max_body_bytes} bytes"}, status_code=413)

    async def on_media_type(request: Request, exc: UnsupportedMediaType) -> Response:
        return JSONBody({"detail": "Content-Type must be application/json"}, status_code=415)

    async def on_encoding(request: Request, exc: UnsupportedEncoding) -> Response:
        return JSONBody(
            {"detail": "Content-Encoding is not supported: only identity (an uncompressed body) is accepted"},
            status_code=415,
        )

    async def on_body_timeout(request: Request, exc: BodyTimeout) -> Response:
        # The rest of the body may still be on its way: the connection cannot carry another request.
        return JSONBody(
            {"detail": body_timeout_detail(settings.body_timeout)},
            status_code=408,
            headers={"Connection": "close"},
        )

    app.add_exception_handler(RecordErrors, on_record_errors)
    app.add_exception_handler(DatabaseUnavailable, on_database_unavailable)
    app.add_exception_handler(Unauthorized, on_unauthorized)
    app.add_exception_handler(BodyTooLarge, on_too_large)
    app.add_exception_handler(UnsupportedMediaType, on_media_type)
    app.add_exception_handler(UnsupportedEncoding, on_encoding)
    app.add_exception_handler(BodyTimeout, on_body_timeout)
