"""The lean path of the ingest endpoints: LeanRoute documents them like any route, IngestAPI serves
them without FastAPI's middleware stack and router (docs/development.md, "A lean path for the ingest endpoints")."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.responses import Response
from fastapi.routing import APIRoute
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Receive, Scope, Send

from .config import HttpLimits
from .core import error_response
from .middleware import AccessLog

if TYPE_CHECKING:
    from .direct import DirectIngest


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
    with the app's own exception handlers (core.error_response, as on the direct path): none of the
    six middleware layers and the router that FastAPI wraps around every request and every message
    it sends. That served 12-24% more single-record requests at C=8 (three alternating wrk runs).
    Everything else, and any other method on these paths, takes the normal stack, which has its own
    AccessLog."""

    # Served by the HTTP protocol itself where it can (http_protocol.py, direct.py); set by create_app.
    direct_ingest: DirectIngest | None = None
    # What the HTTP protocol enforces for this app; set by create_app from the settings.
    http_limits = HttpLimits()

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
        except ClientDisconnect:
            raise  # nobody to answer: AccessLog logs it as such
        except Exception as exc:
            response = await error_response(self.exception_handlers, exc, request, scope["state"]["request_id"])
        await response(scope, receive, send)
