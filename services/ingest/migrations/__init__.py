"""The ingest schema's migration files, as ingest registers them with the runner (``shared.db``)."""

from pathlib import Path

from shared.db import SchemaMigrations

MIGRATIONS = SchemaMigrations("ingest", Path(__file__).resolve().parent)
