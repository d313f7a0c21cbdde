"""The ledger schema's migration files, as ledger registers them with the runner (``shared.db``)."""

from pathlib import Path

from shared.db import SchemaMigrations

MIGRATIONS = SchemaMigrations("ledger", Path(__file__).resolve().parent)
