"""``python -m services.cli``: the ``nuvem-ledger`` command."""

from services.cli.parser import main

raise SystemExit(main())
