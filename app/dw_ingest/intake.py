"""Reading an ingest request before its records are validated: the API key, the media type and
encoding, the body size limit and JSON decoding in which every fraction is an exact Decimal."""

from __future__ import annotations

import hmac
import json
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from fastapi import Request

from .config import Settings
from .core import first_values
from .errors import BodyTooLarge, Unauthorized, UnsupportedEncoding, UnsupportedMediaType
from .models import RecordErrors

# The headers Intake.refusal reads.
HEADERS = frozenset((b"x-api-key", b"authorization", b"content-type", b"content-encoding", b"content-length"))


class Intake:
    """The checks every ingest request passes, with the settings they need read once."""

    def __init__(self, settings: Settings):
        self._keys = tuple(k.encode() for k in settings.api_keys)
        self._max_body_bytes = settings.max_body_bytes

    def check(self, request: Request) -> None:
        """Raises the refusal the request's headers earn, before a byte of its body is read."""
        refusal = self.refusal(first_values(request.headers.raw, HEADERS))
        if refusal is not None:
            raise refusal

    def refusal(self, headers: Mapping[bytes, bytes]) -> Exception | None:
        """What the headers alone refuse (HEADERS, each by its first value: core.first_values), in
        this order: the key (401), the media type and the encoding (415), the declared length
        (413). None if they allow reading the body. Both paths decide with it: the direct path
        declines to the ASGI path, which raises it."""
        if not self.key_presented(
            headers.get(b"x-api-key", b"").decode("latin-1"), headers.get(b"authorization", b"").decode("latin-1")
        ):
            return Unauthorized()
        if not json_media_type(headers.get(b"content-type", b"").decode("latin-1")):
            return UnsupportedMediaType()
        if headers.get(b"content-encoding", b"").decode("latin-1").strip().lower() not in ("", "identity"):
            return UnsupportedEncoding()
        length = headers.get(b"content-length", b"")
        if length.isdigit() and int(length) > self._max_body_bytes:
            return BodyTooLarge()
        return None

    def key_presented(self, x_api_key: str, authorization: str) -> bool:
        """Whether the request's X-API-Key (or else its Bearer token) is one of the keys."""
        if not self._keys:
            return True
        presented = x_api_key
        if not presented and authorization[:7].lower() == "bearer ":
            presented = authorization[7:].strip()
        given = presented.encode()
        # compare_digest against every key, so timing tells nothing about which or how much matched.
        return any([hmac.compare_digest(given, key) for key in self._keys])

    async def read_body(self, request: Request) -> bytes:
        """The body of a request that passed check(); a chunked one is cut off at the limit."""
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > self._max_body_bytes:
                raise BodyTooLarge
            chunks.append(chunk)
        return b"".join(chunks)


def json_media_type(content_type: str) -> bool:
    """A body declared as JSON, or not declared at all."""
    return content_type.split(";")[0].strip().lower() in ("application/json", "")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a valid JSON number")


def _json_invalid(loc: list[Any], msg: str) -> RecordErrors:
    return RecordErrors([{"type": "json_invalid", "loc": loc, "msg": msg, "input": None}])


def decode_json(body: bytes) -> Any:
    """JSON with every fraction parsed as an exact Decimal; NaN and Infinity refused."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _json_invalid(["body", exc.start], "Body is not valid UTF-8") from None
    try:
        return json.loads(text, parse_float=Decimal, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise _json_invalid(["body", exc.pos], f"JSON decode error: {exc.msg}") from None
    except (ValueError, RecursionError) as exc:
        raise _json_invalid(["body"], f"JSON decode error: {exc}") from None
