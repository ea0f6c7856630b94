"""The Supabase project being backed up: its database (over SQL) and its Storage API."""

from __future__ import annotations

from urllib.parse import urlparse

import dagster as dg
from pydantic import Field

from supabackup_pipeline.settings import parse_schemas
from supabackup_pipeline.core.errors import ConfigError
from supabackup_pipeline.core.storage_api import StorageApi


NOT_SET = "not set: see the README's configuration section"


def require(value: str | None, variable: str) -> str:
    if value is None or not str(value).strip():
        raise ConfigError(f"{variable} is {NOT_SET}")
    return str(value).strip()


def check_db_url(value: str | None) -> str:
    url = require(value, "SUPABASE_DB_URL")
    parsed = urlparse(url)
    if parsed.scheme not in ("postgres", "postgresql") or not parsed.hostname:
        raise ConfigError(
            "SUPABASE_DB_URL is malformed: expected postgresql://USER:PASSWORD@HOST:PORT/DATABASE "
            "(the project's connection string)"
        )
    return url


def check_supabase_url(value: str | None) -> str:
    url = require(value, "SUPABASE_URL")
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ConfigError("SUPABASE_URL is malformed: expected https://<project-ref>.supabase.co")
    if parsed.path.rstrip("/").endswith("/storage/v1"):
        raise ConfigError("SUPABASE_URL is the project's URL, https://<project-ref>.supabase.co, without /storage/v1")
    return url.rstrip("/")


class SupabaseDatabase(dg.ConfigurableResource):
    """The project's PostgreSQL database, read and restored over SQL (SUPABASE_DB_URL).

    SQL, not the Auth Admin API: that API never returns password hashes.
    """

    db_url: str | None = Field(default=None, description="SUPABASE_DB_URL: PostgreSQL connection string (secret)")
    schemas: str = Field(default="public", description="comma-separated schemas whose tables are backed up")

    def database_url(self) -> str:
        return check_db_url(self.db_url)

    def schema_list(self) -> list[str]:
        return parse_schemas(self.schemas)


class SupabaseStorage(dg.ConfigurableResource):
    """The project's Storage API (SUPABASE_URL + SUPABASE_SERVICE_ROLE_KEY), over HTTP (core/storage_api.py)."""

    url: str | None = Field(default=None, description="SUPABASE_URL: the project's API URL")
    service_role_key: str | None = Field(default=None, description="SUPABASE_SERVICE_ROLE_KEY (secret)")

    def api(self) -> StorageApi:
        """The Storage API, authenticated with the service role key (close it, or use it in a `with`)."""
        url = check_supabase_url(self.url)
        key = require(self.service_role_key, "SUPABASE_SERVICE_ROLE_KEY")
        return StorageApi(url, key)
