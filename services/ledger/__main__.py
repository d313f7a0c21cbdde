"""``python -m services.ledger``: run the ledger service alone."""

from services.cli import main

raise SystemExit(main(["run", "ledger"]))
