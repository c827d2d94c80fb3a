"""What the headers alone refuse (the key, the media type, the encoding, the declared length) is
answered before a byte of the body is read, the same on both paths; Content-Encoding other than
identity is a documented 415."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import API_KEY, record
from tests.support.pgcluster import PgCluster
from tests.support.rawhttp import (
    BATCH,
    BATCH_ALIAS,
    BIG,
    connect,
    strict_server,
)
from tests.test_direct_path import ASGI, DIRECT, InProcess, post, read_responses, same_answer


@pytest.fixture(scope="module")
def strict(cluster: PgCluster) -> Iterator[InProcess]:
    yield from strict_server(cluster, "header_refusals")


# Nothing is buffered before the key, the media type, the encoding and the length are checked.


def head(path: str, content_length: int, **headers: str) -> bytes:
    """A POST's head only, the API key right and the body JSON unless headers say otherwise."""
    fields = {"Host": "t", "Content-Type": "application/json", "X-API-Key": API_KEY, "X-Request-ID": "early"}
    fields |= {name.replace("_", "-"): value for name, value in headers.items()}
    fields["Content-Length"] = str(content_length)
    lines = "".join(f"{name}: {value}\r\n" for name, value in fields.items())
    return f"POST {path} HTTP/1.1\r\n{lines}\r\n".encode()


@pytest.mark.parametrize(
    ("headers", "length", "status"),
    [
        pytest.param({"X_API_Key": "wrong"}, BIG, b"401", id="wrong key"),
        pytest.param({"Content_Type": "text/plain"}, BIG, b"415", id="not JSON"),
        pytest.param({"Content_Encoding": "gzip"}, BIG, b"415", id="compressed"),
        pytest.param({}, BIG + 2, b"413", id="over the limit"),
    ],
)
def test_a_refusal_from_the_headers_comes_before_the_body_on_both_paths(strict, headers, length, status):
    """A client declaring a body of nearly MAX_BODY_BYTES and sending 1 KiB of it gets its answer at
    once, not a 408 once BODY_TIMEOUT_SECONDS has passed: the server neither waits for nor buffers
    the rest (the direct path used to read the whole body before it looked at the key)."""
    answers = []
    for path in (DIRECT, ASGI):
        with connect(strict) as sock:
            sock.sendall(head(path, length, **headers) + b"[" * 1024)
            answers.append(read_responses(sock, 1)[0])
    assert [a[9:12] for a in answers] == [status, status]
    assert same_answer(answers[0]) == same_answer(answers[1])


# Content-Encoding: identity only, refused from the headers, and documented.


@pytest.mark.parametrize("paths", [(DIRECT, ASGI), (BATCH, BATCH_ALIAS)], ids=["single", "batch"])
@pytest.mark.parametrize("encoding", ["gzip", "deflate, gzip", "br"])
def test_a_compressed_body_gets_415_naming_the_accepted_encoding(strict, paths, encoding):
    rec = record()
    payload = gzip.compress(json.dumps(rec if paths[0] == DIRECT else [rec]).encode())
    answers = [
        strict.exchange(post(path, payload, extra=f"Content-Encoding: {encoding}\r\nX-Request-ID: zip\r\n"))[0]
        for path in paths
    ]
    assert same_answer(answers[0]) == same_answer(answers[1])
    head, _, body = answers[0].partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 415 ")
    assert json.loads(body) == {
        "detail": "Content-Encoding is not supported: only identity (an uncompressed body) is accepted"
    }
    assert rec["symbol"] not in strict.served_directly


def test_identity_encoding_is_accepted(strict):
    for path in (DIRECT, ASGI):
        raw = post(path, json.dumps(record()).encode(), extra="Content-Encoding: identity\r\n")
        assert strict.exchange(raw)[0].startswith(b"HTTP/1.1 200")


def test_the_openapi_document_says_which_encodings_are_accepted(strict):
    paths = httpx.get(f"http://127.0.0.1:{strict.port}/openapi.json", timeout=10).json()["paths"]
    for operation in (paths[DIRECT]["post"], paths[BATCH]["post"]):
        refused = operation["responses"]["415"]["description"]
        assert "Content-Encoding" in refused and "identity" in refused
        assert "408" in operation["responses"]
