"""AccessLog, the one middleware: the ASGI path's adapter to core.py, giving every answer its
request id, one log line and the metrics, and a JSON 500 to whatever nothing else handled."""

from __future__ import annotations

import logging

from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from . import core

app_log = logging.getLogger("dw_ingest")


class AccessLog:
    """One line per request: id, method, path, status, latency, record counts and `via=asgi`; plus
    the metrics. The request id is in scope["state"]["request_id"] for the app's own error answers.

    Pure ASGI (not BaseHTTPMiddleware) so it adds no task or body copy to the hot path. Anything
    the app did not handle becomes a JSON 500 with the request id, never a traceback to the client.
    """

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = core.begin()
        request_id = core.request_id_of(scope.get("headers") or ())
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        status = 500
        response_started = False
        logged = False

        def finish() -> None:
            """The metrics and the log line. Called before the last body part is sent, so the line
            is in the log by the time the client has its answer."""
            nonlocal logged
            logged = True
            route = getattr(scope.get("route"), "path", "unmatched")
            core.log_request(
                request_id, scope["method"], scope["path"], route, status, started, state.get("records"), "asgi"
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
            status = core.CLIENT_GONE
            app_log.info("client went away before its request was read, request_id=%s", request_id)
        except Exception:
            app_log.exception("unhandled error, request_id=%s", request_id)
            if not response_started:
                await core.internal_error(request_id)(scope, receive, send_with_id)
        finally:
            if not logged:
                finish()
            core.end()
