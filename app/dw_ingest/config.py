"""Settings from the environment (the env file systemd passes), validated once at start-up."""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar
from urllib.parse import parse_qsl, quote, unquote, urlsplit, urlunsplit


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names it."""


_ENVIRONMENTS = ("production", "development", "testing", "staging")
# MAX_HEADER_BYTES: the edge (nginx, large_client_header_buffers 4 8k) passes at most about 32 KiB of
# request line and headers, so nothing it forwards is refused; a direct client gets 431 beyond it.
DEFAULT_MAX_HEADER_BYTES = 32 * 1024
# BODY_TIMEOUT_SECONDS: a request's headers and body must all arrive within this time of its first
# byte, else 408 and the connection closes. The edge gives a client 60 s per read and buffers the
# body, so what reaches the service arrives at once; only a slow direct client is cut off.
DEFAULT_BODY_TIMEOUT = 10.0
N = TypeVar("N", int, float)


@dataclass(frozen=True)
class HttpLimits:
    """What the HTTP protocol (http_protocol.py) enforces before a request reaches either path."""

    max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES
    body_timeout: float = DEFAULT_BODY_TIMEOUT


@dataclass(frozen=True)
class DatabaseHost:
    """One host of DATABASE_URL's host part, by name (TLS verify-full checks the certificate against it)."""

    name: str
    port: int

    def __str__(self) -> str:
        return f"[{self.name}]:{self.port}" if ":" in self.name else f"{self.name}:{self.port}"


# The URL's query parameters that choose among several hosts: the service itself looks for the
# writable one (see leader.py), so these are only checked and never passed on.
_TARGET_SESSION_ATTRS = "target_session_attrs"
_WRITABLE_TARGETS = ("read-write", "primary")


@dataclass(frozen=True)
class DatabaseURL:
    """A PostgreSQL URL, accepted as postgresql:// or SQLAlchemy's postgresql+asyncpg://.

    Several hosts are written libpq style, each with its port: user:pw@db1:5432,db2:5432/database.
    """

    dsn: str = field(repr=False)
    database: str
    # The hosts of the URL's host part, in order: one, several, or none when the URL names its
    # host in the query (?host=/run/postgresql, a Unix socket directory).
    hosts: tuple[DatabaseHost, ...] = ()
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    # The query parameters (sslmode, sslrootcert, ...), decoded, in order.
    params: tuple[tuple[str, str], ...] = ()

    @classmethod
    def parse(cls, raw: str) -> DatabaseURL:
        try:
            parts = urlsplit(raw.strip())
        except ValueError as exc:
            raise ConfigError(f"DATABASE_URL is malformed: {exc}") from None
        if parts.scheme not in ("postgresql", "postgres", "postgresql+asyncpg"):
            raise ConfigError("DATABASE_URL must start with postgresql:// or postgresql+asyncpg://")
        database = unquote(parts.path.lstrip("/"))
        if not database:
            raise ConfigError("DATABASE_URL names no database (expected .../<database>)")
        params = tuple(parse_qsl(parts.query, keep_blank_values=True))
        query = dict(params)
        host_list = parts.netloc.rpartition("@")[2]
        if "," in host_list:
            hosts = tuple(_parse_host(entry) for entry in host_list.split(","))
            if "host" in query or "port" in query:
                raise ConfigError("DATABASE_URL names several hosts: give each its port there, not in ?host= or ?port=")
            target = query.get(_TARGET_SESSION_ATTRS, "read-write")
            if target not in _WRITABLE_TARGETS:
                raise ConfigError(
                    f"DATABASE_URL names several hosts and the service writes: target_session_attrs must be "
                    f"read-write (the default) or primary, not {target!r}"
                )
        else:
            if not parts.hostname and "host" not in query:
                raise ConfigError("DATABASE_URL names no host")
            try:
                port = parts.port  # urlsplit validates the port lazily
            except ValueError as exc:
                raise ConfigError(f"DATABASE_URL has a malformed port: {exc}") from None
            if "," in query.get("host", ""):
                raise ConfigError("DATABASE_URL: list several hosts in the host part (user@db1:5432,db2:5432/...)")
            hosts = (DatabaseHost(parts.hostname, port or 5432),) if parts.hostname else ()
        dsn = urlunsplit(("postgresql", parts.netloc, parts.path, parts.query, ""))
        user = unquote(parts.username) if parts.username is not None else None
        password = unquote(parts.password) if parts.password is not None else None
        return cls(dsn=dsn, database=database, hosts=hosts, user=user, password=password, params=params)

    @property
    def multi_host(self) -> bool:
        return len(self.hosts) > 1

    def host_dsn(self, host: DatabaseHost) -> str:
        """The URL for one of its hosts: the same user, password, database and parameters, without
        target_session_attrs (the caller checks the host's role itself)."""
        parts = urlsplit(self.dsn)
        user_info, at, _ = parts.netloc.rpartition("@")
        name = f"[{host.name}]" if ":" in host.name else quote(host.name, safe="")
        query = "&".join(p for p in parts.query.split("&") if p and p.split("=", 1)[0] != _TARGET_SESSION_ATTRS)
        return urlunsplit(("postgresql", f"{user_info}{at}{name}:{host.port}", parts.path, query, ""))

    @property
    def masked(self) -> str:
        return mask_url(self.dsn)


def _parse_host(entry: str) -> DatabaseHost:
    """host, host:port, [v6] or [v6]:port; the port defaults to 5432, as in libpq."""
    if entry.startswith("["):
        name, closed, rest = entry[1:].partition("]")
        if not closed or (rest and not rest.startswith(":")):
            raise ConfigError(f"DATABASE_URL has a malformed host {entry!r}")
        port_text = rest[1:]
    else:
        name, _, port_text = entry.partition(":")
    name = unquote(name)
    if not name:
        raise ConfigError("DATABASE_URL has an empty host in its host list")
    if not port_text:
        return DatabaseHost(name, 5432)
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ConfigError(f"DATABASE_URL has a malformed port: {port_text!r} (host {name})")
    return DatabaseHost(name, int(port_text))


def mask_url(url: str) -> str:
    """The URL with its password replaced (in the user part or a password= parameter), safe for logs."""
    parts = urlsplit(url)
    user_info, _, host_list = parts.netloc.rpartition("@")
    user, colon, _ = user_info.partition(":")
    netloc = f"{user}:***@{host_list}" if colon else parts.netloc
    query = "&".join("password=***" if p.startswith("password=") else p for p in parts.query.split("&"))
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


@dataclass(frozen=True)
class Settings:
    environment: str
    database: DatabaseURL
    api_keys: tuple[str, ...]
    host: str
    port: int
    workers: int
    log_level: str
    pool_min: int
    pool_max: int
    max_body_bytes: int
    max_batch_records: int
    conflict_policy: str
    ready_timeout: float
    db_command_timeout: float
    retry_after_seconds: int
    # DB_CONNECT_TIMEOUT (seconds, default 3): when DATABASE_URL names several hosts, the bound on
    # opening a connection to each one (TCP, TLS, authentication and the read-write check). The
    # hosts are tried all at once, so a dead host costs at most this, and only when no other host is
    # writable. With one host asyncpg connects as before, bounded by twice READY_TIMEOUT.
    db_connect_timeout: float
    # DB_WRITE_RETRY_SECONDS (seconds, default 8; 0 disables): how long a write that failed with a
    # "not now" error (connection lost, server shutting down, read-only, no writable host) is tried
    # again, on a new pool that looks for the writable host again, before the client gets 503. It
    # covers a switchover (the leader stops, a replica is promoted within seconds). A retry starts
    # only within this time; an attempt under way is bounded by DB_COMMAND_TIMEOUT and
    # DB_CONNECT_TIMEOUT, so a request may take up to about their sum longer.
    db_write_retry_seconds: float
    # MAX_HEADER_BYTES (bytes, default 32 KiB): the request line and header block; beyond it 431.
    max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES
    # BODY_TIMEOUT_SECONDS (seconds, default 10): from a request's first byte to its body's last.
    body_timeout: float = DEFAULT_BODY_TIMEOUT

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ if env is None else env)
        raw_url = env.get("DATABASE_URL", "").strip()
        if not raw_url:
            raise ConfigError("DATABASE_URL is not set")
        environment = env.get("ENVIRONMENT", "development").strip().lower()
        if environment not in _ENVIRONMENTS:
            raise ConfigError(f"ENVIRONMENT must be one of {', '.join(_ENVIRONMENTS)}, not {environment!r}")
        policy = env.get("CONFLICT_POLICY", "ignore").strip().lower()
        if policy not in ("ignore", "update"):
            raise ConfigError(f"CONFLICT_POLICY must be ignore or update, not {policy!r}")
        pool_min = _int(env, "DB_POOL_MIN", 1, minimum=0)
        pool_max = _int(env, "DB_POOL_MAX", 10, minimum=1)
        if pool_min > pool_max:
            raise ConfigError("DB_POOL_MIN must not exceed DB_POOL_MAX")
        keys = tuple(k.strip() for k in env.get("API_KEYS", "").split(",") if k.strip())
        return cls(
            environment=environment,
            database=DatabaseURL.parse(raw_url),
            api_keys=keys,
            host=env.get("API_HOST", "127.0.0.1"),
            port=_int(env, "API_PORT", 8000, minimum=1),
            workers=_int(env, "WORKERS", 1, minimum=1),
            log_level=env.get("LOG_LEVEL", "info").strip().lower(),
            pool_min=pool_min,
            pool_max=pool_max,
            max_body_bytes=_int(env, "MAX_BODY_BYTES", 4 * 1024 * 1024, minimum=1024),
            max_batch_records=_int(env, "MAX_BATCH_RECORDS", 10_000, minimum=1),
            conflict_policy=policy,
            ready_timeout=_float(env, "READY_TIMEOUT", 2.0),
            db_command_timeout=_float(env, "DB_COMMAND_TIMEOUT", 10.0),
            retry_after_seconds=_int(env, "RETRY_AFTER_SECONDS", 5, minimum=1),
            db_connect_timeout=_float(env, "DB_CONNECT_TIMEOUT", 3.0),
            db_write_retry_seconds=_float(env, "DB_WRITE_RETRY_SECONDS", 8.0, zero=True),
            max_header_bytes=_int(env, "MAX_HEADER_BYTES", DEFAULT_MAX_HEADER_BYTES, minimum=1024),
            body_timeout=_float(env, "BODY_TIMEOUT_SECONDS", DEFAULT_BODY_TIMEOUT),
        )


def _int(env: dict[str, str], name: str, default: int, minimum: int) -> int:
    value = _number(env, name, default, int, "an integer")
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}")
    return value


def _float(env: dict[str, str], name: str, default: float, *, zero: bool = False) -> float:
    value = _number(env, name, default, float, "a number")
    if zero and value == 0:
        return value
    if not 0 < value < math.inf:
        raise ConfigError(f"{name} must be {'zero or ' if zero else ''}a positive finite number, not {value}")
    return value


def _number(env: dict[str, str], name: str, default: N, parse: Callable[[str], N], kind: str) -> N:
    """The variable parsed, or the default when it is unset or blank."""
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        return parse(raw)
    except ValueError:
        raise ConfigError(f"{name} must be {kind}, not {raw!r}") from None
