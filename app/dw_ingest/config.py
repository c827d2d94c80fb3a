"""Settings from the environment (the env file systemd passes), validated once at start-up."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar
from urllib.parse import quote, unquote, urlsplit, urlunsplit


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names it."""


_ENVIRONMENTS = ("production", "development", "testing", "staging")
N = TypeVar("N", int, float)


@dataclass(frozen=True)
class DatabaseURL:
    """A PostgreSQL URL, accepted as postgresql:// or SQLAlchemy's postgresql+asyncpg://."""

    dsn: str
    database: str

    @classmethod
    def parse(cls, raw: str) -> DatabaseURL:
        parts = urlsplit(raw.strip())
        if parts.scheme not in ("postgresql", "postgres", "postgresql+asyncpg"):
            raise ConfigError("DATABASE_URL must start with postgresql:// or postgresql+asyncpg://")
        database = unquote(parts.path.lstrip("/"))
        if not database:
            raise ConfigError("DATABASE_URL names no database (expected .../<database>)")
        if not parts.hostname and "host=" not in parts.query:
            raise ConfigError("DATABASE_URL names no host")
        try:
            parts.port  # noqa: B018 - urlsplit validates the port lazily
        except ValueError as exc:
            raise ConfigError(f"DATABASE_URL has a malformed port: {exc}") from None
        dsn = urlunsplit(("postgresql", parts.netloc, parts.path, parts.query, ""))
        return cls(dsn=dsn, database=database)

    @property
    def masked(self) -> str:
        return mask_url(self.dsn)


def mask_url(url: str) -> str:
    """The URL with its password replaced, safe for logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = quote(unquote(parts.username or ""), safe="")
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{user}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


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
        )


def _int(env: dict[str, str], name: str, default: int, minimum: int) -> int:
    value = _number(env, name, default, int, "an integer")
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}")
    return value


def _float(env: dict[str, str], name: str, default: float) -> float:
    value = _number(env, name, default, float, "a number")
    if not value > 0:
        raise ConfigError(f"{name} must be positive")
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
