"""The ingest core: one record or a batch, checked, read, decoded, written and counted, and the
documented routes that serve it. The ASGI endpoints (one, batch) and the direct path (direct.py,
through write_one) are adapters around the same steps."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from fastapi import Depends, FastAPI, Request
from fastapi.params import Depends as Dependency
from fastapi.responses import Response
from fastapi.security import APIKeyHeader, HTTPBearer
from pydantic import BaseModel

from .config import Settings
from .db import Database, WriteResult
from .direct import DirectIngest
from .fast_decode import Record, fast_batch, fast_record
from .intake import Intake, decode_json
from .metrics import RECORDS
from .models import MarketRecord, validate_batch, validate_record
from .responses import INGEST_ERRORS, Accepted, BatchAccepted, JSONBody
from .routing import LeanRoute

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

_INSERTED = RECORDS.labels(outcome="inserted")
_DUPLICATES = RECORDS.labels(outcome="duplicate")


class Ingest:
    """The ingest endpoints' work, with what they need read once."""

    def __init__(self, settings: Settings, intake: Intake, database: Database):
        self._intake = intake
        self._database = database
        self._max_batch = settings.max_batch_records

    async def write_one(self, record: Record) -> WriteResult:
        """One decoded record stored and counted: the last step of both paths."""
        result = await self._database.write_one(record)
        _count(result)
        return result

    async def one(self, request: Request) -> Response:
        self._intake.check(request)
        body = await self._intake.read_body(request)
        record = fast_record(body) or validate_record(decode_json(body))
        request.state.records = await self.write_one(record)
        return _SUCCESS_RESPONSE

    async def batch(self, request: Request) -> Response:
        self._intake.check(request)
        body = await self._intake.read_body(request)
        records = fast_batch(body, self._max_batch) or validate_batch(decode_json(body), self._max_batch)
        result = await self._database.write_many(records)
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


def _count(result: WriteResult) -> None:
    _INSERTED.inc(result.inserted)
    if result.duplicates:
        _DUPLICATES.inc(result.duplicates)


def add_ingest_routes(app: FastAPI, settings: Settings, intake: Intake, database: Database) -> DirectIngest:
    """The two ingest routes, documented, each with its slash twin; returns the single-record
    route's direct path (direct.py) for the HTTP protocol."""
    ingest = Ingest(settings, intake, database)
    limit = f"At most {settings.max_body_bytes} bytes."
    record_schema = MarketRecord.model_json_schema()
    batch_schema = {"type": "array", "items": record_schema, "minItems": 1, "maxItems": settings.max_batch_records}
    documented = (
        (INGEST_PATH, INGEST_PATH.rstrip("/"), ingest.one, "ingest_one", "Ingest one market-data record",
         _request_body(record_schema, f"One record. {limit}"), Accepted),
        (BATCH_PATH, BATCH_PATH + "/", ingest.batch, "ingest_batch", "Ingest a batch of records in one transaction",
         _request_body(batch_schema, f"All records are stored or none (422 lists every bad one). {limit}"),
         BatchAccepted),
    )  # fmt: skip
    for path, alias, endpoint, name, summary, body, answer in documented:
        _add_ingest_route(app, settings, path, alias, endpoint, name, summary, body, answer)
    return DirectIngest(app, INGEST_PATH, intake, ingest.write_one, _SUCCESS_RESPONSE)


def _request_body(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "requestBody": {
            "required": True,
            "description": description,
            "content": {"application/json": {"schema": schema}},
        }
    }


def _add_ingest_route(
    app: FastAPI,
    settings: Settings,
    path: str,
    alias: str,
    endpoint: Callable[[Request], Awaitable[Response]],
    name: str,
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
            name=name,
            operation_id=None if documented else f"{name}_alias",
            route_class_override=LeanRoute,
        )
