"""``python -m services.mapper``: run the mapper service alone."""

from services.cli import main

raise SystemExit(main(["run", "mapper"]))
