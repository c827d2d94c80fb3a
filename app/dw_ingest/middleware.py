"""AccessLog, the one middleware: a request id on every answer, one log line and the metrics per
request, and a JSON 500 for whatever nothing else handled."""

from __future__ import annotations

import json
import logging
import time
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .metrics import REQUESTS

log = logging.getLogger("dw_ingest.access")
app_log = logging.getLogger("dw_ingest")


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
