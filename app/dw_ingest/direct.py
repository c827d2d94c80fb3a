"""The direct path of the single-record endpoint: served from the HTTP protocol, not through ASGI.

perf(1) on the service under wrk at C=8 put 70% of its CPU in the Python interpreter and 15% in
the kernel: what a request costs is the Python it runs. uvicorn's ASGI machinery (a scope dict, a
RequestResponseCycle with its Event, a task, ProxyHeadersMiddleware, FastAPI's telemetry check,
the Request object, the body's async generator, two formatted sends) runs for every request before
and after the endpoint's own work. For the common request (POST of one record that the fast
decoder takes, with a key that matches), CoalescingHttpToolsProtocol (http_protocol.py) hands the
headers and the body to DirectIngest instead, which checks the key, decodes, writes the record
through the ingest core (ingest.py) and returns the whole answer as bytes: the same status, headers
and body the ASGI path sends, the same access log line and metrics (core.py), with via=direct.

Anything else takes the ASGI path as before, decided before anything is written: what the headers
alone refuse (a missing or wrong key, a media type or encoding other than JSON's, a declared length
over the limit: decided before a byte of the body is read, so nothing is buffered for a client that
will be refused), a chunked body, a body that is not JSON or that the fast decoder leaves to the
model (every 422 keeps its wording), Expect: 100-continue, HTTP/1.0, a pipelined request behind
one in progress, a server shutting down. Errors of the write itself (503 when the database is
unavailable, a JSON 500 for a bug) get core.error_response's answer, as on the lean route.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Protocol

import orjson
from starlette.requests import Request
from starlette.responses import Response
from uvicorn.protocols.http.httptools_impl import STATUS_LINE

from . import core
from .errors import BodyTimeout
from .fast_decode import Record, fast_record
from .intake import HEADERS, Intake

if TYPE_CHECKING:
    from fastapi import FastAPI

    from .db import WriteResult

Headers = Sequence[tuple[bytes, bytes]]
_CLOSE = b"connection: close\r\n"
_READ = HEADERS | {b"transfer-encoding"}


class _Server(Protocol):
    default_headers: list[tuple[bytes, bytes]]


class _Parser(Protocol):
    """What the decision reads of httptools' request parser."""

    def get_method(self) -> bytes: ...
    def get_http_version(self) -> str: ...
    def should_upgrade(self) -> bool: ...


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

    def accepts(self, url: bytes, parser: _Parser, headers: Headers, *, held: bool) -> bool:
        """The one decision of which path serves a request, made when its headers are read (take()
        may still hand it to the ASGI path once its body is read; the ASGI path itself is the lean
        route or FastAPI's stack, routing.py): the direct path if this is its endpoint's POST over
        HTTP/1.1, no upgrade, nothing holding it (held: a shutdown, Expect: 100-continue, or an
        answer before it still to come), a declared length, no chunked body, and nothing the
        headers alone refuse (that refusal is the ASGI path's, which gives it before the body)."""
        if (
            held
            or url != self.raw_path
            or parser.get_method() != b"POST"
            or parser.get_http_version() != "1.1"
            or parser.should_upgrade()
        ):
            return False
        found = core.first_values(headers, _READ)
        length = found.get(b"content-length")
        if length is None or not length.isdigit() or b"transfer-encoding" in found:
            return False
        return self._intake.refusal(found) is None

    def take(self, body: bytes) -> Record | None:
        """The accepted request's record if the fast decoder takes its body, else None (the ASGI
        path will decode it, and give the model's 422 if it must)."""
        return fast_record(body)

    async def timed_out(self, headers: Headers, server: _Server, started: float) -> bytes:
        """The ASGI path's answer when the body does not arrive in time: its 408, which closes."""
        request_id = core.request_id_of(headers)
        response = await self._error(BodyTimeout(), headers, request_id)
        status = response.status_code
        core.log_request(request_id, "POST", self._path, self._path, status, started, None, "direct")
        return http_answer(
            status, server.default_headers, _header_lines(response.raw_headers), request_id, bytes(response.body), False
        )

    async def answer(self, record: Record, headers: Headers, server: _Server, cycle: _Cycle) -> bytes:
        """Writes the record and returns the whole HTTP answer (head and body). Never raises. The
        server's default headers (its date) and the cycle's keep-alive (a shutdown clears it) are
        read once the write is done, as uvicorn reads them when the response starts."""
        started = core.begin()
        request_id = core.request_id_of(headers)
        records = None
        try:
            try:
                records = await self._write(record)
            except Exception as exc:
                response = await self._error(exc, headers, request_id)
                status, lines, body = response.status_code, _header_lines(response.raw_headers), bytes(response.body)
            else:
                status, lines, body = 200, self._success_headers, self._success
            core.log_request(request_id, "POST", self._path, self._path, status, started, records, "direct")
        finally:
            core.end()
        return http_answer(status, server.default_headers, lines, request_id, body, cycle.keep_alive)

    async def _error(self, exc: Exception, headers: Headers, request_id: str) -> Response:
        """The answer the ASGI path gives for an exception out of the endpoint (core.error_response)."""
        scope = {"type": "http", "method": "POST", "path": self._path, "headers": list(headers)}
        return await core.error_response(self._app.exception_handlers, exc, Request(scope), request_id)
