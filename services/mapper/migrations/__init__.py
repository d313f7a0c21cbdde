"""The mapper schema's migration files, as the mapper registers them with the runner (``shared.db``).

The mapper's migrations run after the ledger's when both are migrated together: 0002 takes over
the store settings the ledger's schema used to hold (and holds whether or not they are there).
"""

from pathlib import Path

from shared.db import SchemaMigrations

MIGRATIONS = SchemaMigrations("mapper", Path(__file__).resolve().parent, after=("ledger",))
