"""The names this module held before it was split, for imports that still use them:
create_app in app.py, LeanRoute and IngestAPI in routing.py, AccessLog in middleware.py, the
refusals and their handlers in errors.py, request reading in intake.py, logging in logs.py."""

from .app import BATCH_PATH, INGEST_PATH, create_app
from .errors import BodyTooLarge, Unauthorized, UnsupportedMediaType
from .intake import decode_json
from .logs import configure_logging
from .middleware import AccessLog
from .responses import JSONBody
from .routing import IngestAPI, LeanRoute

__all__ = [
    "BATCH_PATH",
    "INGEST_PATH",
    "AccessLog",
    "BodyTooLarge",
    "IngestAPI",
    "JSONBody",
    "LeanRoute",
    "Unauthorized",
    "UnsupportedMediaType",
    "configure_logging",
    "create_app",
    "decode_json",
]
