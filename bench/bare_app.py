"""The HTTP floor, a benchmark baseline only: a bare ASGI app that reads the body and answers
{"status":"success"} with no validation, no database, no log and no metrics, on the same uvicorn
(uvloop, httptools) as the service. What a request costs it is what any ASGI service pays on this
machine before doing anything (bench/cpu.py measures it beside the service).

Run: uvicorn --app-dir bench bare_app:app --loop uvloop --http httptools --no-access-log
"""

from __future__ import annotations

from typing import Any

_BODY = b'{"status":"success"}'
_START = {
    "type": "http.response.start",
    "status": 200,
    "headers": [(b"content-length", str(len(_BODY)).encode()), (b"content-type", b"application/json")],
}
_ANSWER = {"type": "http.response.body", "body": _BODY}


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    more = True
    while more:
        more = (await receive()).get("more_body", False)
    await send(_START)
    await send(_ANSWER)
