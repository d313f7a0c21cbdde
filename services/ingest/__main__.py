"""``python -m services.ingest``: run the ingest service alone."""

from services.cli import main

raise SystemExit(main(["run", "ingest"]))
