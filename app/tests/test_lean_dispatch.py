"""IngestAPI serves the ingest routes without FastAPI's middleware stack (routing.py); what that stack
did for them still happens: errors nobody handled become a JSON 500 with the request id, and
other methods on those paths get the router's answer."""

from __future__ import annotations

import asyncio

import httpx
from dw_ingest.app import create_app
from dw_ingest.config import Settings

from tests.conftest import record


def call(method: str, path: str, **kw) -> httpx.Response:
    settings = Settings.from_env({"DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none"})
    app = create_app(settings)

    async def broken_write(_record):
        raise RuntimeError("a bug, not a database outage")

    app.state.database.write_one = broken_write

    async def go() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://app") as client:
            return await client.request(method, path, **kw)

    return asyncio.run(go())


def test_unhandled_error_on_the_lean_path_is_a_json_500_with_the_request_id():
    response = call("POST", "/ingest/market-data/", json=record(), headers={"X-Request-ID": "lean-500"})
    assert response.status_code == 500
    assert response.json() == {"detail": "internal error", "request_id": "lean-500"}
    assert response.headers["x-request-id"] == "lean-500"


def test_the_lean_path_keeps_the_handlers_and_other_methods_keep_the_router():
    assert (
        call("POST", "/ingest/market-data", content=b"{", headers={"Content-Type": "application/json"}).status_code
        == 422
    )
    assert (
        call("POST", "/ingest/market-data/batch", content=b"x", headers={"Content-Type": "text/plain"}).status_code
        == 415
    )
    assert call("GET", "/ingest/market-data/").status_code == 405
