"""What every path that answers a request shares (the direct path, direct.py; the ASGI path, the
lean route and FastAPI's stack behind AccessLog): how a repeated header is read, the request id,
the answer an exception gets, and the timing, log line and metrics of each answered request.
Each path is an adapter around these; a rule changed here holds for all of them."""

from __future__ import annotations

import itertools
import json
import logging
import os
import re
import time
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Literal

from prometheus_client import Counter, Histogram
from starlette.requests import Request
from starlette.responses import Response

from .logs import FLUSH_LATER
from .metrics import REQUEST_SECONDS, REQUESTS

if TYPE_CHECKING:
    from .db import WriteResult

log = logging.getLogger("dw_ingest.access")
app_log = logging.getLogger("dw_ingest")

# Which path answered, in the access line (via=) and the request histogram's `via` label: "direct"
# from the HTTP protocol without ASGI (direct.py, and the protocol's own 431/408), "asgi" through
# the app (the lean route or FastAPI's stack).
Via = Literal["direct", "asgi"]

# The access line's status of a request whose client went away before its answer (nginx's 499).
CLIENT_GONE = 499


def first_values(headers: Iterable[tuple[bytes, bytes]], names: frozenset[bytes]) -> dict[bytes, bytes]:
    """The named headers' values. Of a repeated header the first counts, on every path and for
    every header, as starlette's Headers.get reads it for the app."""
    found: dict[bytes, bytes] = {}
    for name, value in headers:
        if name in names and name not in found:
            found[name] = value
    return found


# Request ids: 32 hex digits like a UUID, a random half per process and a counter, so an id costs
# no getrandom(2) call (uuid4 makes one per request) and stays unique across processes and restarts.
_ID_PREFIX = os.urandom(8).hex()
_id_counter = itertools.count()
_REQUEST_ID = frozenset((b"x-request-id",))
# A client's X-Request-ID is kept only if it is what the edge keeps (dw-edge.conf.j2: "^[!-~]{1,64}$"):
# printable ASCII without spaces, so it cannot forge the access line's other key=value fields.
_USABLE_ID = re.compile(rb"[!-~]{1,64}")


def new_request_id() -> str:
    return f"{_ID_PREFIX}{next(_id_counter) & 0xFFFFFFFFFFFFFFFF:016x}"


def request_id_of(headers: Iterable[tuple[bytes, bytes]]) -> str:
    """The client's X-Request-ID if it is usable, else a new id."""
    incoming = first_values(headers, _REQUEST_ID).get(b"x-request-id", b"")
    return incoming.decode("ascii") if _USABLE_ID.fullmatch(incoming) else new_request_id()


def internal_error(request_id: str) -> Response:
    """The JSON 500 of whatever nothing else handled: the request id, never a traceback."""
    body = json.dumps({"detail": "internal error", "request_id": request_id}).encode()
    response = Response(body, status_code=500)
    response.raw_headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    return response


Handler = Callable[[Request, Exception], Any]


async def error_response(
    handlers: Mapping[Any, Handler], exc: Exception, request: Request, request_id: str
) -> Response:
    """The answer to an exception out of an ingest endpoint: the app's handler for its class (or
    the nearest base class), else (no handler, or the handler failed) the logged JSON 500."""
    handler = next((handlers[c] for c in type(exc).__mro__ if c in handlers), None)
    if handler is not None:
        try:
            response: Response = await handler(request, exc)
            return response
        except Exception as handler_failed:
            exc = handler_failed
    app_log.error("unhandled error, request_id=%s", request_id, exc_info=exc)
    return internal_error(request_id)


# One metric child per label set, looked up without labels()' lock and checks.
_counters: dict[tuple[str, str, int], Counter] = {}
_histograms: dict[tuple[str, str, int, str], Histogram] = {}
# Requests begun and not yet logged, on every path: while others are in flight, a line's flush can
# wait for theirs (logs.LoopFlushedHandler).
_in_flight = 0


def begin() -> float:
    """A request is being served: when it started."""
    global _in_flight
    _in_flight += 1
    return time.perf_counter()


def end() -> None:
    """A request begun with begin() has been logged and answered."""
    global _in_flight
    _in_flight -= 1


def log_request(
    request_id: str,
    method: str,
    path: str,
    route: str,
    status: int,
    started: float,
    records: WriteResult | None,
    via: Via,
) -> None:
    """The access log line and the request metrics of one answered request."""
    seconds = time.perf_counter() - started
    counter = _counters.get((route, method, status))
    if counter is None:
        counter = _counters.setdefault(
            (route, method, status), REQUESTS.labels(route=route, method=method, status=str(status))
        )
    counter.inc()
    histogram = _histograms.get((route, method, status, via))
    if histogram is None:
        histogram = _histograms.setdefault(
            (route, method, status, via),
            REQUEST_SECONDS.labels(route=route, method=method, status=str(status), via=via),
        )
    histogram.observe(seconds)
    counts = (
        f" received={records.received} inserted={records.inserted} duplicates={records.duplicates}" if records else ""
    )
    log.info(
        "request_id=%s method=%s path=%s status=%d latency_ms=%.2f%s via=%s",
        request_id,
        method,
        path,
        status,
        seconds * 1000,
        counts,
        via,
        # While other requests are in flight, their lines can leave in one write with this one.
        extra={FLUSH_LATER: _in_flight > 1},
    )
