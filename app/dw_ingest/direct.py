"""The direct path of the single-record endpoint: served from the HTTP protocol, not through ASGI.

perf(1) on the service under wrk at C=8 put 70% of its CPU in the Python interpreter and 15% in
the kernel: what a request costs is the Python it runs. uvicorn's ASGI machinery (a scope dict, a
RequestResponseCycle with its Event, a task, ProxyHeadersMiddleware, FastAPI's telemetry check,
the Request object, the body's async generator, two formatted sends) runs for every request before
and after the endpoint's own work. For the common request (POST of one record that the fast
decoder takes, with a key that matches), CoalescingHttpToolsProtocol (http_protocol.py) hands the
headers and the body to DirectIngest instead, which checks the key, decodes, writes the record
through the same group commit and returns the whole answer as bytes: the same status, headers and
body the ASGI path sends, the same access log line and metrics.

Anything else takes the ASGI path as before, decided before anything is written: what the headers
alone refuse (a missing or wrong key, a media type or encoding other than JSON's, a declared length
over the limit: decided before a byte of the body is read, so nothing is buffered for a client that
will be refused), a chunked body, a body that is not JSON or that the fast decoder leaves to the
model (every 422 keeps its wording), Expect: 100-continue, HTTP/1.0, a pipelined request behind
one in progress, a server shutting down. Errors of the write itself (503 when the database is
unavailable, a JSON 500 for a bug) get the app's own exception handlers' answers.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import orjson
from starlette.requests import Request
from starlette.responses import Response
from uvicorn.protocols.http.httptools_impl import STATUS_LINE

from .errors import BodyTimeout
from .fast_decode import Record, fast_record
from .intake import Intake
from .middleware import internal_error_body, log_request, request_id_of

if TYPE_CHECKING:
    from fastapi import FastAPI

    from .db import WriteResult

app_log = logging.getLogger("dw_ingest")

Headers = Sequence[tuple[bytes, bytes]]
_CLOSE = b"connection: close\r\n"
_READ = frozenset(
    (b"x-api-key", b"authorization", b"content-type", b"content-encoding", b"content-length", b"transfer-encoding")
)


class _Server(Protocol):
    default_headers: list[tuple[bytes, bytes]]


class _Cycle(Protocol):
    keep_alive: bool


def _header_lines(headers: Sequence[tuple[bytes, bytes]]) -> bytes:
    """Header lines as uvicorn writes them: lower-case names, in order."""
    return b"".join([b"%s: %s\r\n" % (name.lower(), value) for name, value in headers])


def http_answer(
    status: int, server_headers: Headers, header_lines: bytes, request_id: str, body: bytes, keep_alive: bool
) -> bytes:
    """A whole response as uvicorn writes the app's: the status line, the server's default headers
    (its date), the response's own, AccessLog's request id, `connection: close` unless kept alive
    (or the response says so itself), the body."""
    head = [STATUS_LINE[status], _header_lines(server_headers), header_lines, b"x-request-id: ", request_id.encode()]
    head.append(b"\r\n" if keep_alive or _CLOSE in header_lines else b"\r\n" + _CLOSE)
    head += [b"\r\n", body]
    return b"".join(head)


def problem_answer(status: int, detail: str, server_headers: Headers, request_id: str) -> bytes:
    """A JSON refusal (the shape of responses.Problem) that closes the connection: for what the
    HTTP protocol refuses before the request reaches either path."""
    body = orjson.dumps({"detail": detail})
    lines = b"content-length: %d\r\ncontent-type: application/json\r\n" % len(body)
    return http_answer(status, server_headers, lines, request_id, body, keep_alive=False)


class DirectIngest:
    """The single-record endpoint for requests that need nothing but the fast path."""

    def __init__(
        self,
        app: FastAPI,
        path: str,
        intake: Intake,
        write: Callable[[Record], Awaitable[WriteResult]],
        success: Response,
    ):
        self.raw_path = path.encode()
        self._path = path
        self._app = app
        self._intake = intake
        # The ingest core's write of one record (ingest.py), which counts it as the ASGI path does.
        self._write = write
        # The success answer's own headers, before the request id that AccessLog adds.
        self._success_headers = _header_lines(success.raw_headers)
        self._success = bytes(success.body)
        self._in_flight = 0

    def accepts(self, headers: Headers) -> bool:
        """Whether the direct path may read this request's body whole and serve it: a declared
        length, no chunked body, and nothing the headers alone refuse (that refusal is the ASGI
        path's, which gives it before reading the body)."""
        # The first of a repeated header counts, as in starlette's Headers.get on the ASGI path.
        found: dict[bytes, bytes] = {}
        for name, value in headers:
            if name in _READ and name not in found:
                found[name] = value
        length = found.get(b"content-length")
        if length is None or not length.isdigit() or b"transfer-encoding" in found:
            return False
        refusal = self._intake.refusal(
            found.get(b"x-api-key", b"").decode("latin-1"),
            found.get(b"authorization", b"").decode("latin-1"),
            found.get(b"content-type", b"").decode("latin-1"),
            found.get(b"content-encoding", b"").decode("latin-1"),
            length.decode("latin-1"),
        )
        return refusal is None

    def take(self, body: bytes) -> Record | None:
        """The accepted request's record if the fast decoder takes its body, else None (the ASGI
        path will decode it, and give the model's 422 if it must)."""
        return fast_record(body)

    async def timed_out(self, headers: Headers, server: _Server, started: float) -> bytes:
        """The ASGI path's answer when the body does not arrive in time: its 408, which closes."""
        request_id = request_id_of(headers)
        status, extra, body = await self._error(BodyTimeout(), headers, request_id)
        log_request(request_id, "POST", self._path, self._path, status, started, None, False)
        return http_answer(status, server.default_headers, _header_lines(extra), request_id, body, False)

    async def answer(self, record: Record, headers: Headers, server: _Server, cycle: _Cycle) -> bytes:
        """Writes the record and returns the whole HTTP answer (head and body). Never raises. The
        server's default headers (its date) and the cycle's keep-alive (a shutdown clears it) are
        read once the write is done, as uvicorn reads them when the response starts."""
        started = time.perf_counter()
        self._in_flight += 1
        request_id = request_id_of(headers)
        records = None
        try:
            try:
                records = await self._write(record)
            except Exception as exc:
                status, extra, body = await self._error(exc, headers, request_id)
            else:
                status, extra, body = 200, None, self._success
            log_request(request_id, "POST", self._path, self._path, status, started, records, self._in_flight > 1)
        finally:
            self._in_flight -= 1
        lines = self._success_headers if extra is None else _header_lines(extra)
        return http_answer(status, server.default_headers, lines, request_id, body, cycle.keep_alive)

    async def _error(
        self, exc: Exception, headers: Headers, request_id: str
    ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        """The answer the ASGI path gives for an exception out of the endpoint: its handler's, or
        AccessLog's JSON 500."""
        handlers: dict[Any, Any] = self._app.exception_handlers
        handler = next((handlers[c] for c in type(exc).__mro__ if c in handlers), None)
        if handler is not None:
            try:
                scope = {"type": "http", "method": "POST", "path": self._path, "headers": list(headers)}
                response = await handler(Request(scope), exc)
                return response.status_code, response.raw_headers, bytes(response.body)
            except Exception as handler_failed:
                exc = handler_failed
        app_log.error("unhandled error, request_id=%s", request_id, exc_info=exc)
        body = internal_error_body(request_id)
        return 500, [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())], body
