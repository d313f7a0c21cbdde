"""The ``nuvem-ledger`` command: run the services, migrate, operate, demo, bench, simulate.

One module per area (``integration``, ``catalog``, ``settings``, ``orders``, ``sales``, ``dead``,
``run``, ``demo``, ``bench``, ``simulate``) adds its commands to the parser (``parser``), each
with its own handler. Commands change a service's data only through that service's operations
(``services/<svc>/ops.py``); the CLI composes them when a request spans services. Results go to
stdout (``--json`` for machines, text for people); logs go to stderr, except under ``run``,
where the services' structured logs are the output and go to stdout.
"""

from services.cli.parser import build_parser, main

__all__ = ["build_parser", "main"]
