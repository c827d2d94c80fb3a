"""The app factory: the ingest endpoints, health, readiness and metrics, wired to the database."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from fastapi import FastAPI
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from .config import HttpLimits, Settings
from .db import Database, DatabaseUnavailable
from .errors import add_error_handlers
from .ingest import BATCH_PATH, INGEST_PATH, add_ingest_routes
from .intake import Intake
from .logs import configure_logging
from .metrics import POOL_IN_USE
from .middleware import AccessLog
from .responses import NOT_READY, SERVER_ERROR, Health, JSONBody, Ready
from .routing import IngestAPI

__all__ = ["BATCH_PATH", "INGEST_PATH", "create_app"]

app_log = logging.getLogger("dw_ingest")


def create_app(settings: Settings | None = None) -> IngestAPI:
    settings = settings or Settings.from_env()
    configure_logging(settings.log_level)
    database = Database(settings)
    app = IngestAPI(
        title="dw-platform ingestion API",
        version="1.0.0",
        lifespan=_lifespan(settings, database),
        default_response_class=JSONBody,
        redirect_slashes=False,
    )
    app.state.settings = settings
    app.http_limits = HttpLimits(settings.max_header_bytes, settings.body_timeout)
    app.state.database = database
    POOL_IN_USE.set_function(database.pool_in_use)
    # The same single-record core for the requests that need nothing but the fast path (direct.py).
    app.direct_ingest = add_ingest_routes(app, settings, Intake(settings), database)
    _add_status_routes(app, settings, database)
    add_error_handlers(app, settings)
    app.add_middleware(AccessLog)
    return app


def _lifespan(settings: Settings, database: Database) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
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

    return lifespan


def _add_status_routes(app: FastAPI, settings: Settings, database: Database) -> None:
    """/health, /ready and /metrics."""

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
