"""Run the service: python -m dw_ingest (settings from the environment, see config.py)."""

from __future__ import annotations

import os
import sys

import uvicorn

from .config import ConfigError, Settings
from .http_protocol import CoalescingHttpToolsProtocol
from .logs import configure_logging


def inherited_socket_fd() -> int | None:
    """The listening socket systemd passes by socket activation (sd_listen_fds), if any."""
    if os.environ.get("LISTEN_FDS", "0") == "0":
        return None
    pid = os.environ.get("LISTEN_PID")
    if pid and pid != str(os.getpid()):
        return None
    return 3


def main() -> int:
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        print(f"dw_ingest: configuration error: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level)
    fd = inherited_socket_fd()
    bind = {"fd": fd} if fd is not None else {"host": settings.host, "port": settings.port}
    uvicorn.run(
        "dw_ingest.app:create_app",
        factory=True,
        workers=settings.workers,
        loop="uvloop",
        http=CoalescingHttpToolsProtocol,  # httptools, one write per small response
        access_log=False,  # dw_ingest.access logs one line per request, with its id and counts
        log_config=None,
        log_level=settings.log_level,
        server_header=False,
        timeout_graceful_shutdown=15,
        **bind,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
