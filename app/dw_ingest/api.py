"""The HTTP API: ingest one record or a batch, health, readiness and metrics."""

from __future__ import annotations

import hmac
import json
import logging
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response
from fastapi.routing import APIRoute
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .config import Settings
from .db import Database, DatabaseUnavailable, WriteResult
from .metrics import POOL_IN_USE, RECORDS, REQUESTS
from .models import MarketRecord, RecordErrors, validate_batch, validate_record

log = logging.getLogger("dw_ingest.access")
app_log = logging.getLogger("dw_ingest")

INGEST_PATH = "/ingest/market-data/"
BATCH_PATH = "/ingest/market-data/batch"


class JSONBody(Response):
    """JSON responses serialised by orjson (fast, and exact for the str-encoded decimals we echo)."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


class LeanRoute(APIRoute):
    """A route documented like any other (OpenAPI from its arguments), whose endpoint takes the
    Request and returns the Response itself. The ingest endpoints parse and validate their body
    themselves anyway, so FastAPI's per-request dependency solving and response serialisation
    (jsonable_encoder) would be pure overhead on the hottest path. IngestAPI serves these routes
    directly; through the router (a mounted root_path, say) they behave the same, only slower."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        return self.endpoint


class IngestAPI(FastAPI):
    """FastAPI, except that a request for a LeanRoute goes straight to its endpoint, in AccessLog,
    with the app's own exception handlers: none of the six middleware layers and the router that
    FastAPI wraps around every request and every message it sends. That served 12-24% more
    single-record requests at C=8 (three alternating wrk runs). Everything else, and any other
    method on these paths, takes the normal stack, which has its own AccessLog."""

    def build_middleware_stack(self) -> ASGIApp:
        routes = {
            (route.path, method): route
            for route in self.router.routes
            if isinstance(route, LeanRoute)
            for method in route.methods
        }
        stack = super().build_middleware_stack()
        lean = AccessLog(self._serve_lean)

        async def dispatch(scope: Scope, receive: Receive, send: Send) -> None:
            route = routes.get((scope.get("path"), scope.get("method"))) if scope["type"] == "http" else None
            if route is None:
                await stack(scope, receive, send)
                return
            scope["route"] = route
            await lean(scope, receive, send)

        return dispatch

    async def _serve_lean(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive, send)
        try:
            response = await scope["route"].endpoint(request)
        except Exception as exc:
            handler = next(
                (self.exception_handlers[c] for c in type(exc).__mro__ if c in self.exception_handlers), None
            )
            if handler is None:
                raise  # AccessLog answers a JSON 500 with the request id
            response = await handler(request, exc)
        await response(scope, receive, send)


# The single-record answer, the same bytes every time.
SUCCESS = orjson.dumps({"status": "success"})


class BodyTooLarge(Exception):
    pass


class Unauthorized(Exception):
    pass


class UnsupportedMediaType(Exception):
    pass


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a valid JSON number")


def decode_json(body: bytes) -> Any:
    """JSON with every fraction parsed as an exact Decimal; NaN and Infinity refused."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RecordErrors(
            [{"type": "json_invalid", "loc": ["body", exc.start], "msg": "Body is not valid UTF-8", "input": None}]
        ) from None
    try:
        return json.loads(text, parse_float=Decimal, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise RecordErrors(
            [{"type": "json_invalid", "loc": ["body", exc.pos], "msg": f"JSON decode error: {exc.msg}", "input": None}]
        ) from None
    except (ValueError, RecursionError) as exc:
        raise RecordErrors(
            [{"type": "json_invalid", "loc": ["body"], "msg": f"JSON decode error: {exc}", "input": None}]
        ) from None


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


def create_app(settings: Settings | None = None) -> IngestAPI:
    settings = settings or Settings.from_env()
    configure_logging(settings.log_level)
    database = Database(settings)
    keys = tuple(k.encode() for k in settings.api_keys)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        app_log.info(
            "dw_ingest starting: environment=%s database=%s conflict_policy=%s keys=%s",
            settings.environment,
            settings.database.masked,
            settings.conflict_policy,
            "required" if keys else "off",
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
    app.state.database = database
    POOL_IN_USE.set_function(database.pool_in_use)

    def authorize(request: Request) -> None:
        if not keys:
            return
        presented = request.headers.get("x-api-key", "")
        auth = request.headers.get("authorization", "")
        if not presented and auth[:7].lower() == "bearer ":
            presented = auth[7:].strip()
        given = presented.encode()
        # compare_digest against every key, so timing tells nothing about which or how much matched.
        if not any([hmac.compare_digest(given, key) for key in keys]):
            raise Unauthorized

    async def read_body(request: Request) -> bytes:
        content_type = request.headers.get("content-type", "")
        if content_type.split(";")[0].strip().lower() not in ("application/json", ""):
            raise UnsupportedMediaType
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > settings.max_body_bytes:
            raise BodyTooLarge
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > settings.max_body_bytes:
                raise BodyTooLarge
            chunks.append(chunk)
        return b"".join(chunks)

    record_schema = MarketRecord.model_json_schema()
    single_body = {"requestBody": {"required": True, "content": {"application/json": {"schema": record_schema}}}}
    batch_body = {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "type": "array",
                        "items": record_schema,
                        "minItems": 1,
                        "maxItems": settings.max_batch_records,
                    }
                }
            },
        }
    }
    error_responses: dict[int | str, dict[str, Any]] = {
        401: {"description": "Missing or wrong API key"},
        413: {"description": "Body too large"},
        415: {"description": "Body is not JSON"},
        422: {"description": "Invalid record: detail lists each field and why"},
        503: {"description": "Database unavailable; retry after Retry-After seconds"},
    }

    async def ingest_one(request: Request) -> Response:
        authorize(request)
        record = validate_record(decode_json(await read_body(request)))
        result = await database.write_one(record)
        _count(result)
        request.state.records = result
        return Response(SUCCESS, media_type=JSONBody.media_type)

    def add_ingest_route(
        path: str, alias: str, endpoint: Any, summary: str, body: dict[str, Any], answer: type[Any]
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
                responses=error_responses,
                operation_id=None if documented else f"{endpoint.__name__}_alias",
                route_class_override=LeanRoute,
            )

    add_ingest_route(
        INGEST_PATH, INGEST_PATH.rstrip("/"), ingest_one, "Ingest one market-data record", single_body, dict[str, str]
    )

    async def ingest_batch(request: Request) -> Response:
        authorize(request)
        records = validate_batch(decode_json(await read_body(request)), settings.max_batch_records)
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

    add_ingest_route(
        BATCH_PATH,
        BATCH_PATH + "/",
        ingest_batch,
        "Ingest a batch of records in one transaction",
        batch_body,
        dict[str, Any],
    )

    @app.get("/health", summary="The process is alive (does not touch the database)")
    async def health() -> dict[str, str]:
        return {"status": "ok", "environment": settings.environment}

    @app.get(
        "/ready",
        summary="The database answers within the configured bound",
        responses={503: {"description": "Not ready"}},
    )
    async def ready() -> Response:
        body = {"environment": settings.environment, "database": database.name}
        try:
            await database.ping(settings.ready_timeout)
        except DatabaseUnavailable as exc:
            return JSONBody(
                {"status": "unavailable", **body, "reason": str(exc)[:200]},
                status_code=503,
                headers={"Retry-After": str(settings.retry_after_seconds)},
            )
        return JSONBody({"status": "ready", **body})

    @app.get("/metrics", summary="Prometheus metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    @app.exception_handler(RecordErrors)
    async def on_record_errors(request: Request, exc: RecordErrors) -> Response:
        RECORDS.labels(outcome="rejected").inc()
        return JSONBody({"detail": exc.errors}, status_code=422)

    @app.exception_handler(DatabaseUnavailable)
    async def on_database_unavailable(request: Request, exc: DatabaseUnavailable) -> Response:
        app_log.warning("database unavailable: %s", exc)
        return JSONBody(
            {"detail": "database unavailable, retry later"},
            status_code=503,
            headers={"Retry-After": str(settings.retry_after_seconds)},
        )

    @app.exception_handler(Unauthorized)
    async def on_unauthorized(request: Request, exc: Unauthorized) -> Response:
        return JSONBody(
            {"detail": "missing or invalid API key (Authorization: Bearer <key> or X-API-Key)"},
            status_code=401,
            headers={"WWW-Authenticate": "Bearer"},
        )

    @app.exception_handler(BodyTooLarge)
    async def on_too_large(request: Request, exc: BodyTooLarge) -> Response:
        return JSONBody({"detail": f"body larger than {settings.max_body_bytes} bytes"}, status_code=413)

    @app.exception_handler(UnsupportedMediaType)
    async def on_media_type(request: Request, exc: UnsupportedMediaType) -> Response:
        return JSONBody({"detail": "Content-Type must be application/json"}, status_code=415)

    app.add_middleware(AccessLog)
    return app


def _count(result: WriteResult) -> None:
    RECORDS.labels(outcome="inserted").inc(result.inserted)
    if result.duplicates:
        RECORDS.labels(outcome="duplicate").inc(result.duplicates)


class AccessLog:
    """One line per request: id, method, path, status, latency and record counts; plus the metrics.

    Pure ASGI (not BaseHTTPMiddleware) so it adds no task or body copy to the hot path. Anything
    the app did not handle becomes a JSON 500 with the request id, never a traceback to the client.
    """

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        headers = dict(scope.get("headers") or [])
        incoming = headers.get(b"x-request-id", b"").decode("latin-1")[:64]
        request_id = incoming if incoming and incoming.isprintable() else uuid.uuid4().hex
        scope.setdefault("state", {})
        status = 500
        response_started = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                status = message["status"]
                response_started = True
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            app_log.exception("unhandled error, request_id=%s", request_id)
            if not response_started:
                body = json.dumps({"detail": "internal error", "request_id": request_id}).encode()
                await send_with_id(
                    {
                        "type": "http.response.start",
                        "status": 500,
                        "headers": [
                            (b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": body})
        finally:
            elapsed_ms = (time.perf_counter() - started) * 1000
            route = scope.get("route")
            route_path = getattr(route, "path", "unmatched")
            REQUESTS.labels(route=route_path, method=scope["method"], status=str(status)).inc()
            records = scope["state"].get("records")
            counts = (
                f" received={records.received} inserted={records.inserted} duplicates={records.duplicates}"
                if records
                else ""
            )
            log.info(
                "request_id=%s method=%s path=%s status=%d latency_ms=%.2f%s",
                request_id,
                scope["method"],
                scope["path"],
                status,
                elapsed_ms,
                counts,
            )
