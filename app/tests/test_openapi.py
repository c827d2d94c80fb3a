"""The ingest endpoints answer through LeanRoute (routing.py), which bypasses FastAPI's response
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


def test_every_answer_is_documented_with_its_body(server):
    schema = httpx.get(f"{server.base_url}/openapi.json").json()
    paths, components = schema["paths"], schema["components"]["schemas"]

    def body_of(operation: dict, status: str) -> dict:
        ref = operation["responses"][status]["content"]["application/json"]["schema"]["$ref"]
        return components[ref.rsplit("/", 1)[1]]

    assert set(body_of(paths["/health"]["get"], "200")["properties"]) == {"status", "environment"}
    ready = paths["/ready"]["get"]
    assert set(body_of(ready, "200")["properties"]) == {"status", "environment", "database"}
    assert ready["responses"]["503"]["headers"]["Retry-After"]["required"] is True
    single = paths["/ingest/market-data/"]["post"]
    assert body_of(single, "422")["properties"]["detail"]["type"] == "array"
    assert single["responses"]["503"]["headers"]["Retry-After"]["required"] is True
    assert set(body_of(paths["/ingest/market-data/batch"]["post"], "200")["required"]) == {
        "status",
        "received",
        "inserted",
        "duplicates",
    }
    record = single["requestBody"]["content"]["application/json"]["schema"]
    number, text = record["properties"]["open"]["anyOf"]
    assert number["exclusiveMinimum"] == 0 and number["exclusiveMaximum"] == 10**12
    assert text["type"] == "string" and text["pattern"]  # "" is no price, and the schema says so now
    assert "pattern" in record["properties"]["ts"] and record["properties"]["volume"]["exclusiveMaximum"] == 2**63
