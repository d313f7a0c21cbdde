"""``python -m services.mapper``: the mapper service alone, as ``nuvem-ledger run mapper`` runs it.

It loads the mapper's code and ``shared``, never another service's (nor the CLI's).
"""

from services.mapper.app import MapperService
from shared.launch import service_main


def main() -> int:
    return service_main("mapper", MapperService)


if __name__ == "__main__":
    raise SystemExit(main())
