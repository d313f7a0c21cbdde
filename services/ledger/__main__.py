"""``python -m services.ledger``: the ledger service alone, as ``nuvem-ledger run ledger`` runs it.

It loads the ledger's code and ``shared``, never another service's (nor the CLI's).
"""

from services.ledger.app import LedgerService
from shared.launch import service_main


def main() -> int:
    return service_main("ledger", LedgerService)


if __name__ == "__main__":
    raise SystemExit(main())
