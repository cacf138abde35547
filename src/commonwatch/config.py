"""Typed settings, read once at start-up from the environment and passed in.

Nothing in CommonWatch reads the environment after :func:`load_settings`; services,
storage and the web app receive a :class:`Settings` instance.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields

from commonwatch.errors import ConfigError

ENV_PREFIX = "COMMONWATCH_"
#: Log levels, as uvicorn names them.
LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")


@dataclass(frozen=True, slots=True)
class Settings:
    """Every setting, with its default; see README "Configuration"."""

    database_url: str = "sqlite:///./data/commonwatch.db"
    host: str = "127.0.0.1"
    port: int = 6100
    title: str = "CommonWatch"
    #: Largest request body accepted, in bytes (TAXII api-root ``max_content_length``).
    max_body_bytes: int = 64 * 1024 * 1024
    #: Most objects accepted in one envelope.
    max_objects_per_request: int = 200_000
    #: TAXII envelopes of at most this many objects are answered once stored (status
    #: "complete"); larger ones once queued (status "pending", see services.ingest_queue).
    ingest_wait_objects: int = 1000
    #: Objects of queued envelopes that may wait in memory; posters beyond it wait.
    ingest_queue_objects: int = 50_000
    #: Where envelopes answered "pending" are kept until stored (empty: next to the
    #: SQLite file, or ./data/ingest-queue/<database> for PostgreSQL).
    ingest_queue_dir: str = ""
    #: Page size used when a request names no ``limit``, and the largest one allowed.
    default_page_size: int = 1000
    max_page_size: int = 10_000
    #: Most values in one ``match[...]`` comma list.
    max_match_values: int = 1000
    log_level: str = "info"
    #: Directories of operator warninglists added to the built-in ones (os.pathsep-separated).
    warninglist_dirs: str = ""

    def __post_init__(self) -> None:
        if not self.database_url.startswith(("sqlite://", "postgresql")):
            raise ConfigError(
                f"COMMONWATCH_DATABASE_URL must be a sqlite:// or postgresql:// URL, "
                f"got {self.database_url.split('://')[0]!r}"
            )
        for name in ("port", "max_body_bytes", "max_objects_per_request", "ingest_queue_objects",
                     "default_page_size", "max_page_size", "max_match_values"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"COMMONWATCH_{name.upper()} must be a positive integer")
        if self.ingest_wait_objects < 0:
            raise ConfigError("COMMONWATCH_INGEST_WAIT_OBJECTS must be 0 or a positive integer")
        if self.default_page_size > self.max_page_size:
            raise ConfigError("COMMONWATCH_DEFAULT_PAGE_SIZE must not exceed MAX_PAGE_SIZE")
        if self.port > 65_535:
            raise ConfigError(f"COMMONWATCH_PORT must be 1-65535, got {self.port}")
        if self.log_level not in LOG_LEVELS:
            raise ConfigError(f"COMMONWATCH_LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}, "
                              f"got {self.log_level!r}")


def load_settings(environ: Mapping[str, str] | None = None, **overrides: object) -> Settings:
    """Build settings from ``COMMONWATCH_*`` variables, then explicit overrides."""
    env = os.environ if environ is None else environ
    values: dict[str, object] = {}
    for f in fields(Settings):
        raw = env.get(ENV_PREFIX + f.name.upper())
        if raw is None:
            continue
        if f.type in ("int", int):
            try:
                values[f.name] = int(raw)
            except ValueError:
                raise ConfigError(
                    f"{ENV_PREFIX}{f.name.upper()} must be an integer, got {raw!r}"
                ) from None
        else:
            values[f.name] = raw.lower() if f.name == "log_level" else raw
    values.update({k: v for k, v in overrides.items() if v is not None})
    return Settings(**values)  # type: ignore[arg-type]
