"""The app factory: the ingest endpoints, health, readiness and metrics, wired to the database."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import orjson
from fastapi import Depends, FastAPI, Request
from fastapi.params import Depends as Dependency
from fastapi.responses import Response
from fastapi.security import APIKeyHeader, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel

from .config import HttpLimits, Settings
from .db import Database, DatabaseUnavailable, WriteResult
from .direct import DirectIngest
from .errors import add_error_handlers
from .fast_decode import fast_batch, fast_record
from .intake import Intake, decode_json
from .logs import configure_logging
from .metrics import POOL_IN_USE, RECORDS
from .middleware import AccessLog
from .models import MarketRecord, validate_batch, validate_record
from .responses import (
    INGEST_ERRORS,
    NOT_READY,
    SERVER_ERROR,
    Accepted,
    BatchAccepted,
    Health,
    JSONBody,
    Ready,
)
from .routing import IngestAPI, LeanRoute

app_log = logging.getLogger("dw_ingest")

INGEST_PATH = "/ingest/market-data/"
BATCH_PATH = "/ingest/market-data/batch"

# The single-record answer, the same bytes every time: one Response serves them all (a starlette
# Response keeps no per-request state; sending it only reads its status, headers and body), so no
# request builds its headers again.
SUCCESS = orjson.dumps({"status": "success"})
_SUCCESS_RESPONSE = Response(SUCCESS, media_type=JSONBody.media_type)

# How a client may present its key. Declared as dependencies only for the OpenAPI description
# (security schemes, either one): LeanRoute never solves dependencies, Intake.check checks.
API_KEY_SCHEMES: list[Dependency] = [
    Depends(APIKeyHeader(name="X-API-Key", auto_error=False)),
    Depends(HTTPBearer(auto_error=False)),
]


def _request_body(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "requestBody": {
            "required": True,
            "description": description,
            "content": {"application/json": {"schema": schema}},
        }
    }


_INSERTED = RECORDS.labels(outcome="inserted")
_DUPLICATES = RECORDS.labels(outcome="duplicate")


def _count(result: WriteResult) -> None:
    _INSERTED.inc(result.inserted)
    if result.duplicates:
        _DUPLICATES.inc(result.duplicates)


def create_app(settings: Settings | None = None) -> IngestAPI:
    settings = settings or Settings.from_env()
    configure_logging(settings.log_level)
    database = Database(settings)
    intake = Intake(settings)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        app_log.info(
            "dw_ingest starting: environment=%s database=%s conflict_policy=%s keys=%s",
            settings.environment,
            settings.database.masked,
            settings.conflict_policy,
            "required" if settings.api_keys else "off",
        )
        try:
            await database.ping(settings.ready_timeout)
        except DatabaseUnavailable as exc:
            # Not fatal: /ready says so and the pool is created when the database answers.
            app_log.warning("database not reachable at start-up: %s", exc)
        yield
        await database.close()

    app = IngestAPI(
        title="dw-platform ingestion API",
        version="1.0.0",
        lifespan=lifespan,
        default_response_class=JSONBody,
        redirect_slashes=False,
    )
    app.state.settings = settings
    app.http_limits = HttpLimits(settings.max_header_bytes, settings.body_timeout)
    app.state.database = database
    POOL_IN_USE.set_function(database.pool_in_use)

    def add_ingest_route(
        path: str,
        alias: str,
        endpoint: Callable[[Request], Awaitable[Response]],
        summary: str,
        body: dict[str, Any],
        answer: type[BaseModel],
    ) -> None:
        """The documented path, and its slash twin answered directly (clients use both; no redirect)."""
        for route_path, documented in ((path, True), (alias, False)):
            app.router.add_api_route(
                route_path,
                endpoint,
                methods=["POST"],
                include_in_schema=documented,
                summary=summary,
                openapi_extra=body,
                response_model=answer,  # documents the 200 body; LeanRoute does not serialise through it
                responses=INGEST_ERRORS,
                dependencies=API_KEY_SCHEMES if settings.api_keys else None,
                operation_id=None if documented else f"{endpoint.__name__}_alias",
                route_class_override=LeanRoute,
            )

    limit = f"At most {settings.max_body_bytes} bytes."
    record_schema = MarketRecord.model_json_schema()

    async def ingest_one(request: Request) -> Response:
        intake.check(request)
        body = await intake.read_body(request)
        record = fast_record(body) or validate_record(decode_json(body))
        result = await database.write_one(record)
        _count(result)
        request.state.records = result
        return _SUCCESS_RESPONSE

    add_ingest_route(
        INGEST_PATH,
        INGEST_PATH.rstrip("/"),
        ingest_one,
        "Ingest one market-data record",
        _request_body(record_schema, f"One record. {limit}"),
        Accepted,
    )

    async def ingest_batch(request: Request) -> Response:
        intake.check(request)
        body = await intake.read_body(request)
        records = fast_batch(body, settings.max_batch_records) or validate_batch(
            decode_json(body), settings.max_batch_records
        )
        result = await database.write_many(records)
        _count(result)
        request.state.records = result
        return JSONBody(
            {
                "status": "success",
                "received": result.received,
                "inserted": result.inserted,
                "duplicates": result.duplicates,
            }
        )

    batch_schema = {"type": "array", "items": record_schema, "minItems": 1, "maxItems": settings.max_batch_records}
    add_ingest_route(
        BATCH_PATH,
        BATCH_PATH + "/",
        ingest_batch,
        "Ingest a batch of records in one transaction",
        _request_body(batch_schema, f"All records are stored or none (422 lists every bad one). {limit}"),
        BatchAccepted,
    )

    @app.get(
        "/health",
        summary="The process is alive (does not touch the database)",
        response_model=Health,
        responses={500: SERVER_ERROR},
    )
    async def health() -> Response:
        return JSONBody({"status": "ok", "environment": settings.environment})

    @app.get(
        "/ready",
        summary="The database answers within the configured bound",
        response_model=Ready,
        responses={500: SERVER_ERROR, 503: NOT_READY},
    )
    async def ready() -> Response:
        try:
            await database.ping(settings.ready_timeout)
        except DatabaseUnavailable as exc:
            # The exception names hosts, users and server messages: the log has it, the client not.
            app_log.warning("not ready: %s", exc)
            return JSONBody(
                {"status": "unavailable", "detail": "database not reachable"},
                status_code=503,
                headers={"Retry-After": str(settings.retry_after_seconds)},
            )
        return JSONBody({"status": "ready", "environment": settings.environment, "database": database.name})

    @app.get("/metrics", summary="Prometheus metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    add_error_handlers(app, settings)
    app.add_middleware(AccessLog)
    # The same endpoint for the requests that need nothing but the fast path (direct.py).
    app.direct_ingest = DirectIngest(app, INGEST_PATH, intake, database.write_one, _count, _SUCCESS_RESPONSE)
    return app
