"""AccessLog, the one middleware: a request id on every answer, one log line and the metrics per
request, and a JSON 500 for whatever nothing else handled."""

from __future__ import annotations

import itertools
import json
import logging
import os
import re
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

from prometheus_client import Counter
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .logs import FLUSH_LATER
from .metrics import REQUESTS

if TYPE_CHECKING:
    from .db import WriteResult

log = logging.getLogger("dw_ingest.access")
app_log = logging.getLogger("dw_ingest")

# Request ids: 32 hex digits like a UUID, a random half per process and a counter, so an id costs
# no getrandom(2) call (uuid4 makes one per request) and stays unique across processes and restarts.
_ID_PREFIX = os.urandom(8).hex()
_id_counter = itertools.count()


def new_request_id() -> str:
    return f"{_ID_PREFIX}{next(_id_counter) & 0xFFFFFFFFFFFFFFFF:016x}"


# One counter child per (route, method, status), looked up without labels()' lock and checks.
_request_counters: dict[tuple[str, str, int], Counter] = {}


def _count_request(route: str, method: str, status: int) -> None:
    child = _request_counters.get((route, method, status))
    if child is None:
        child = _request_counters.setdefault(
            (route, method, status), REQUESTS.labels(route=route, method=method, status=str(status))
        )
    child.inc()


# A client's X-Request-ID is kept only if it is what the edge keeps (dw-edge.conf.j2: "^[!-~]{1,64}$"):
# printable ASCII without spaces, so it cannot forge the access line's other key=value fields.
_USABLE_ID = re.compile(rb"[!-~]{1,64}")


def request_id_of(headers: Iterable[tuple[bytes, bytes]]) -> str:
    """The client's X-Request-ID if it is usable, else a new id. One header looked for: a scan,
    not a dict of every header (the last one wins, as in a dict)."""
    incoming = b""
    for name, value in headers:
        if name == b"x-request-id":
            incoming = value
    return incoming.decode("ascii") if _USABLE_ID.fullmatch(incoming) else new_request_id()


# The access line's status of a request whose client went away before its answer (nginx's 499).
CLIENT_GONE = 499


def log_request(
    request_id: str,
    method: str,
    path: str,
    route_path: str,
    status: int,
    started: float,
    records: WriteResult | None,
    flush_later: bool,
) -> None:
    """The access log line and the request counter of one answered request."""
    elapsed_ms = (time.perf_counter() - started) * 1000
    _count_request(route_path, method, status)
    counts = (
        f" received={records.received} inserted={records.inserted} duplicates={records.duplicates}" if records else ""
    )
    log.info(
        "request_id=%s method=%s path=%s status=%d latency_ms=%.2f%s",
        request_id,
        method,
        path,
        status,
        elapsed_ms,
        counts,
        # While other requests are in flight, their lines can leave in one write with this one.
        extra={FLUSH_LATER: flush_later},
    )


def internal_error_body(request_id: str) -> bytes:
    """The JSON 500 of whatever nothing else handled: the request id, never a traceback."""
    return json.dumps({"detail": "internal error", "request_id": request_id}).encode()


class AccessLog:
    """One line per request: id, method, path, status, latency and record counts; plus the metrics.

    Pure ASGI (not BaseHTTPMiddleware) so it adds no task or body copy to the hot path. Anything
    the app did not handle becomes a JSON 500 with the request id, never a traceback to the client.
    """

    def __init__(self, app: ASGIApp):
        self.app = app
        self._in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        self._in_flight += 1
        request_id = request_id_of(scope.get("headers") or ())
        scope.setdefault("state", {})
        status = 500
        response_started = False
        logged = False

        def finish() -> None:
            """The metrics and the log line. Called before the last body part is sent, so the line
            is in the log by the time the client has its answer."""
            nonlocal logged
            logged = True
            route = scope.get("route")
            log_request(
                request_id,
                scope["method"],
                scope["path"],
                getattr(route, "path", "unmatched"),
                status,
                started,
                scope["state"].get("records"),
                self._in_flight > 1,
            )

        async def send_with_id(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                status = message["status"]
                response_started = True
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
            elif message["type"] == "http.response.body" and not message.get("more_body") and not logged:
                finish()
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except ClientDisconnect:
            # The client closed its connection while its body was read: nothing to answer, no error.
            status = CLIENT_GONE
            app_log.info("client went away before its request was read, request_id=%s", request_id)
        except Exception:
            app_log.exception("unhandled error, request_id=%s", request_id)
            if not response_started:
                body = internal_error_body(request_id)
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
            if not logged:
                finish()
            self._in_flight -= 1
