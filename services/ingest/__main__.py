"""``python -m services.ingest``: the ingest service alone, as ``nuvem-ledger run ingest`` runs it.

It loads the ingest's code and ``shared``, never another service's (nor the CLI's).
"""

from services.ingest.app import IngestService
from shared.launch import service_main


def main() -> int:
    return service_main("ingest", IngestService)


if __name__ == "__main__":
    raise SystemExit(main())
