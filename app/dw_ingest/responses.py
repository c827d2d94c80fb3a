"""What the service answers: the JSON response class and a pydantic model for every body it sends,
so the OpenAPI description of each status is generated from the same models the tests check."""

from __future__ import annotations

from typing import Any, Literal

import orjson
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field


class JSONBody(JSONResponse):
    """JSON responses serialised by orjson (fast, and exact for the str-encoded decimals we echo).
    A JSONResponse, not a bare Response: FastAPI documents a route's response_model only for those
    (anything else it describes as a string, which the service's answers were not)."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


class _Body(BaseModel):
    # The service writes these bodies itself; declaring them closed lets a client rely on the keys.
    model_config = ConfigDict(extra="forbid")


class Accepted(_Body):
    """The record is committed (or was already stored: a re-send is a success too)."""

    status: Literal["success"]


class BatchAccepted(_Body):
    """Every record of the batch is committed, in one transaction."""

    status: Literal["success"]
    received: int = Field(ge=1, description="Records in the request")
    inserted: int = Field(ge=0, description="Records stored as new rows")
    duplicates: int = Field(ge=0, description="Records whose (symbol, ts) was already stored")


class Health(_Body):
    status: Literal["ok"]
    environment: str


class Ready(_Body):
    status: Literal["ready"]
    environment: str
    database: str


class NotReady(_Body):
    """Always these words: why the database did not answer is in the service's log, not for clients."""

    status: Literal["unavailable"]
    detail: Literal["database not reachable"]


class FieldError(_Body):
    """One broken rule, in FastAPI's 422 shape: loc starts with "body", then the batch index and field."""

    type: str
    loc: list[str | int]
    msg: str
    input: Any = Field(description="The value refused, shortened; exact decimals and large integers as text")


class ValidationFailed(_Body):
    detail: list[FieldError] = Field(min_length=1)


class Problem(_Body):
    """Any other refusal: what went wrong, in one sentence."""

    detail: str


class InternalError(_Body):
    detail: Literal["internal error"]
    request_id: str = Field(description="Also in the X-Request-ID header and the service's log line")


def _documented(model: type[BaseModel], description: str, **headers: str) -> dict[str, Any]:
    response: dict[str, Any] = {"model": model, "description": description}
    if headers:
        header = {"required": True, "schema": {"type": "string"}}
        response["headers"] = {name: {"description": text, **header} for name, text in headers.items()}
    return response


RETRY_AFTER = "Seconds to wait before retrying"
SERVER_ERROR = _documented(InternalError, "A bug: the log line with this request id has the traceback")
NOT_READY = _documented(NotReady, "The database does not answer", **{"Retry-After": RETRY_AFTER})
# Every answer of the ingest endpoints besides their 200.
INGEST_ERRORS: dict[int | str, dict[str, Any]] = {
    401: _documented(Problem, "Missing or wrong API key", **{"WWW-Authenticate": "Bearer"}),
    413: _documented(Problem, "Body larger than the configured limit (MAX_BODY_BYTES)"),
    408: _documented(Problem, "The body did not arrive in time (BODY_TIMEOUT_SECONDS); the connection is closed"),
    415: _documented(
        Problem,
        "Content-Type is not application/json, or Content-Encoding is not identity: only uncompressed "
        "bodies are accepted (no gzip, deflate or br)",
    ),
    422: _documented(ValidationFailed, "Invalid JSON or records: detail lists each field and why"),
    500: SERVER_ERROR,
    503: _documented(Problem, "Database unavailable; nothing was stored", **{"Retry-After": RETRY_AFTER}),
}
