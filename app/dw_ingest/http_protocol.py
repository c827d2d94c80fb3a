"""uvicorn's httptools protocol, writing a response's head and first body part in one write(2).

uvicorn writes the status line and headers when the app sends http.response.start, and the body
when it sends http.response.body: two send(2) calls for every response of this service, whose
answers are one small body each. On loopback every send also runs the receiver's TCP path (py-spy
put about a third of the service's wall-time samples in that send; perf, counting CPU time, puts the
whole kernel at 15-23% of it: bench/profile.py --perf). Here the head is held until the first body
part and both leave together: half the sends, and the client reads one segment instead of two.
What is written is byte for byte the same.

It serves the single-record endpoint's common request without ASGI (DirectIngest, direct.py): the
headers and body go to the app's DirectIngest, which answers with the whole response as bytes, or
declines before anything happened, and then the request is handed to uvicorn's ASGI machinery as if
its headers had only just been read.

It also answers the first request of a connection accepted just before a graceful shutdown.
uvicorn's shutdown closes every connection without a request in progress, including one it has
just accepted whose request is already in the socket's buffer, unread: the client gets a reset
for a request it sent before the shutdown began (seen during a password rotation's restart under
load). Such a connection now gets FIRST_REQUEST_GRACE seconds to deliver its request, which is
answered with `Connection: close`; a connection that has already been served is closed at once,
as before.

It enforces what uvicorn's httptools protocol does not: a cap on the request line and headers
(MAX_HEADER_BYTES, else 431) and a time limit on a request's arrival (BODY_TIMEOUT_SECONDS from its
first byte, else 408), both answered in JSON and followed by a lingering close; and it never writes
to a connection that is gone, nor starts a pipelined request once the connection is closing.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from .config import HttpLimits
from .core import log_request, new_request_id
from .direct import problem_answer
from .errors import BodyTimeout, body_timeout_detail

if TYPE_CHECKING:
    from .direct import DirectIngest
    from .fast_decode import Record


class _Held:
    """Stands in for the transport while uvicorn's send formats a message."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.parts.append(data)

    def close(self) -> None:
        self.closed = True


def _nothing() -> None:
    pass


class CoalescingCycle(RequestResponseCycle):
    """RequestResponseCycle whose response head waits for the first body part."""

    _head: bytes | None = None
    # Set by the protocol when the body did not arrive in time: the app's next receive raises.
    body_timed_out = False

    async def receive(self) -> Any:
        if not self.body_timed_out:
            message = await super().receive()
            if not self.body_timed_out:
                return message
        raise BodyTimeout

    async def _format(self, message: Any) -> _Held:
        """uvicorn's own send (checks, head formatting, flow control, completion), its writes held."""
        held, transport = _Held(), self.transport
        self.transport = held  # type: ignore[assignment]
        try:
            await super().send(message)
        finally:
            self.transport = transport
        return held

    async def send(self, message: Any) -> None:
        if message["type"] == "http.response.start" and not self.response_started:
            self._head = b"".join((await self._format(message)).parts)
            return
        head = self._head
        if head is None:
            await super().send(message)
            return
        self._head = None
        # uvicorn's send ends a response with on_response, which starts the next pipelined request:
        # held back until the answer is written and the connection closed if it must be, so that
        # no request is processed once its answer can no longer be sent.
        on_response, self.on_response = self.on_response, _nothing
        held = _Held()
        try:
            held = await self._format(message)
        finally:
            self.on_response = on_response
            # A client gone away gets nothing: uvicorn's send drops it, and a write to a closed
            # transport raises (uvloop's "unable to perform operation on <...Transport closed=True>").
            if not (self.disconnected or self.transport.is_closing()):
                self.transport.write(b"".join((head, *held.parts)))
            if held.closed:
                self.transport.close()
        if self.response_complete:
            on_response()


# How long a connection accepted before a shutdown, with no request read yet, may take to deliver
# one: the request is normally in its buffer already and only waits for the event loop.
FIRST_REQUEST_GRACE = 1.0
# How long a connection refused by the protocol (431, 408) stays open after its answer, its input
# read and dropped: closed at once with unread input, it would be reset, and a reset can discard
# the answer before the client reads it (nginx's lingering_close, for the same reason).
LINGER_SECONDS = 2.0


class _HeadTooLarge(Exception):
    """Raised in a parser callback to stop parsing a head over the cap."""


class _DirectCycle:
    """Stands in for uvicorn's RequestResponseCycle while the direct path has the request: what
    the protocol's own methods read of a cycle (shutdown, connection_lost, pipelining)."""

    __slots__ = ("body", "disconnected", "keep_alive", "response_complete", "timed_out")

    def __init__(self, keep_alive: bool) -> None:
        self.body = b""
        self.keep_alive = keep_alive
        self.response_complete = False
        self.disconnected = False
        self.timed_out = False

    @property
    def message_event(self) -> _DirectCycle:
        return self

    def set(self) -> None:
        """connection_lost sets the cycle's message_event: nobody waits on it here."""


def _find(app: Any, name: str) -> Any:
    """The app's attribute (its DirectIngest, its HttpLimits), under whatever middleware uvicorn
    wrapped around it; None if no app has it."""
    for _ in range(8):
        found = getattr(app, name, None)
        if found is not None:
            return found
        app = getattr(app, "app", None)
    return None


class CoalescingHttpToolsProtocol(HttpToolsProtocol):
    """HttpToolsProtocol serving each request with a CoalescingCycle, the common single record by
    the direct path, and draining fresh connections on shutdown."""

    _requests = 0
    _draining = False
    # The message being parsed: whether it has begun and not ended, when it began, and its timer.
    _in_message = False
    _started = 0.0
    _timer: asyncio.TimerHandle | None = None
    # Its head (request line and headers): whether it is still arriving, the bytes the parser's
    # callbacks have seen of it, and the bytes of data_received calls that began and ended in it
    # (httptools holds a header until it ends: one endless header reaches no callback).
    _in_head = True
    _head_bytes = 0
    _head_received = 0
    _head_too_large = False
    # Refused: the answer is written, the input is dropped until the close.
    _lingering = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._direct: DirectIngest | None = _find(self.app, "direct_ingest")
        self._limits: HttpLimits = _find(self.app, "http_limits") or HttpLimits()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._lingering:
            return
        began_in_head = self._in_head
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        except httptools.HttpParserError:
            if self._head_too_large:
                self._refuse_head_too_large()
                return
            msg = "Invalid HTTP request received."  # uvicorn's answer to what httptools cannot parse
            self.logger.warning(msg)
            self.send_400_response(msg)
            return
        if began_in_head and self._in_head:
            self._head_received += len(data)
            if self._head_received > self._limits.max_header_bytes:
                self._refuse_head_too_large()
                return
        if self._in_message and self._timer is None and not self.transport.is_closing():
            remaining = self._started + self._limits.body_timeout - time.perf_counter()
            self._timer = self.loop.call_later(remaining, self._timed_out)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_message = True
        self._started = time.perf_counter()
        self._head_bytes = 0

    def on_url(self, url: bytes) -> None:
        self._count_head(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count_head(len(name) + len(value) + 4)  # ": " and CRLF
        super().on_header(name, value)

    def _count_head(self, size: int) -> None:
        self._head_bytes += size
        if self._head_bytes > self._limits.max_header_bytes:
            self._head_too_large = True
            raise _HeadTooLarge

    def _refuse_head_too_large(self) -> None:
        self._refuse(431, f"request line and headers larger than {self._limits.max_header_bytes} bytes")

    def _refuse(self, status: int, detail: str) -> None:
        """Answers a request no path has yet (its head incomplete) and closes, lingering. With an
        earlier answer still to come on this connection, that answer is the last."""
        self._cancel_timer()
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            # The earlier answer is written whole, then the connection closes; this one is dropped.
            self._lingering = True
            cycle.keep_alive = False
            return
        request_id = new_request_id()
        self.transport.write(problem_answer(status, detail, self.server_state.default_headers, request_id))
        log_request(request_id, "-", "-", "unmatched", status, self._started, None, "direct")
        self._linger()

    def _linger(self) -> None:
        """Closes after the answer: the write side at once, the rest after LINGER_SECONDS or when
        the client closes, reading and dropping what it still sends."""
        self._lingering = True
        self.flow.resume_reading()
        if self.transport.can_write_eof():
            self.transport.write_eof()
            self.loop.call_later(LINGER_SECONDS, self.transport.close)
        else:
            self.transport.close()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _timed_out(self) -> None:
        """BODY_TIMEOUT_SECONDS after the message's first byte, it has not all arrived."""
        self._timer = None
        if self.transport.is_closing() or self._lingering or not self._in_message:
            return
        cycle = self.cycle
        if self.flow.read_paused or (self._in_head and cycle is not None and not cycle.response_complete):
            # The server is not reading (a pipelined request waits for the answer before it, or the
            # app for its body): the time is the server's. Looked at again after another period.
            self._timer = self.loop.call_later(self._limits.body_timeout, self._timed_out)
            return
        if self._in_head:
            self._refuse(408, body_timeout_detail(self._limits.body_timeout))
        elif type(cycle) is _DirectCycle:
            cycle.timed_out = True
            task = self.loop.create_task(self._answer_timed_out(cycle, self.headers))
            task.add_done_callback(self.tasks.discard)
            self.tasks.add(task)
        elif cycle is None or cycle.response_complete:
            # Answered without its body (a refusal from the headers): nobody waits for the rest.
            self.transport.close()
        elif cycle.response_started:
            cycle.keep_alive = False
        else:
            # The app answers: its receive raises BodyTimeout, whose handler's 408 closes.
            cycle.body_timed_out = True  # type: ignore[attr-defined]
            cycle.message_event.set()

    async def _answer_timed_out(self, cycle: _DirectCycle, headers: list[tuple[bytes, bytes]]) -> None:
        answer = await self._direct.timed_out(headers, self.server_state, self._started)  # type: ignore[union-attr]
        if cycle.disconnected or self.transport.is_closing():
            return
        cycle.response_complete = True
        self.transport.write(answer)
        self._linger()

    def shutdown(self) -> None:
        if self.cycle is None and self._requests == 0:
            # Not idle but new: its request may be in the buffer, unread. Close it only if none
            # arrives in time (uvicorn waits for open connections before it stops the app).
            self._draining = True
            self.loop.call_later(FIRST_REQUEST_GRACE, self._close_if_unused)
            return
        super().shutdown()

    def _close_if_unused(self) -> None:
        if self._requests == 0 and not self.transport.is_closing():
            self.transport.close()

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._head_received = 0
        self._requests += 1
        direct, cycle = self._direct, self.cycle
        # Held back from the direct path: a shutdown, a client waiting for 100-continue, and a
        # pipelined request behind one in progress (its answer must come after that one's).
        held = self._draining or self.expect_100_continue or not (cycle is None or cycle.response_complete)
        if direct is not None and direct.accepts(self.url, self.parser, self.headers, held=held):
            self.cycle = _DirectCycle(self.parser.should_keep_alive())  # type: ignore[assignment]
            return
        self._start_asgi()

    def _start_asgi(self) -> None:
        super().on_headers_complete()
        if self._draining and self.cycle is not None:
            self.cycle.keep_alive = False
        # uvicorn names its cycle class inside this method; the cycle's task has not started yet
        # (it looks up send when it runs), so its class can still be the subclass.
        if type(self.cycle) is RequestResponseCycle:
            self.cycle.__class__ = CoalescingCycle

    def on_body(self, body: bytes) -> None:
        cycle = self.cycle
        if type(cycle) is _DirectCycle:
            cycle.body += body
            return
        super().on_body(body)

    def on_message_complete(self) -> None:
        self._in_message = False
        self._in_head = True
        self._cancel_timer()
        cycle = self.cycle
        if type(cycle) is not _DirectCycle:
            super().on_message_complete()
            return
        if cycle.timed_out:
            return  # its 408 is on its way
        record = self._direct.take(cycle.body)  # type: ignore[union-attr]
        if record is None:
            # The ASGI path, as if the headers had only just been read: the parser still holds this
            # message's method, version and keep-alive, and nothing has been answered.
            self.cycle = None  # type: ignore[assignment]
            self._start_asgi()
            if cycle.body:
                super().on_body(cycle.body)
            super().on_message_complete()
            return
        # This message's headers: a pipelined request behind it gets a list of its own.
        task = self.loop.create_task(self._answer_directly(cycle, record, self.headers))
        task.add_done_callback(self.tasks.discard)
        self.tasks.add(task)

    async def _answer_directly(self, cycle: _DirectCycle, record: Record, headers: list[tuple[bytes, bytes]]) -> None:
        answer = await self._direct.answer(record, headers, self.server_state, cycle)  # type: ignore[union-attr]
        if cycle.disconnected or self.transport.is_closing():
            return
        # As uvicorn's cycle ends a response: complete, closed unless kept alive, then the next one.
        self.transport.write(answer)
        cycle.response_complete = True
        if not cycle.keep_alive:
            self.transport.close()
        self.on_response_complete()
