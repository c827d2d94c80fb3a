"""The ingest endpoints answer through LeanRoute (api.py), which bypasses FastAPI's response
serialisation; their OpenAPI description must not change because of it."""

from __future__ import annotations

import httpx


def test_ingest_operations_keep_their_documented_bodies(server):
    paths = httpx.get(f"{server.base_url}/openapi.json").json()["paths"]
    assert "/ingest/market-data" not in paths and "/ingest/market-data/batch/" not in paths  # aliases
    single = paths["/ingest/market-data/"]["post"]
    batch = paths["/ingest/market-data/batch"]["post"]
    assert single["requestBody"]["content"]["application/json"]["schema"]["additionalProperties"] is False
    assert batch["requestBody"]["content"]["application/json"]["schema"]["type"] == "array"
    for operation in (single, batch):
        assert {"200", "401", "413", "415", "422", "503"} <= set(operation["responses"])
