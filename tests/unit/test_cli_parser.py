"""The ``nuvem-ledger`` parser: every command of CONTRACT.md, each with its own handler.

In process, and for the database check a subprocess with nothing to connect to: no broker, no
database. The commands' effects are tested against the real ones in tests/integration.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from services.cli import build_parser
from tests.integration.helpers import child_env, closed_port, run_cli

# Each command and flag of CONTRACT.md's CLI section (``--json`` goes at the end).
CONTRACT: list[list[str]] = [
    ["integration", "connect", "--store-id", "1", "--access-token", "T", "--user", "U"],
    ["integration", "connect", "--store-id", "1", "--access-token", "T", "--user", "U",
     "--activated-at", "2026-01-01T00:00:00Z"],
    ["integration", "show", "1"],
    ["integration", "enable", "1"],
    ["integration", "disable", "1"],
    ["integration", "list"],
    ["integration", "connect-link", "--user", "U"],
    ["integration", "connect-link", "--user", "U", "--ttl", "60"],
    ["integration", "rotate-tokens"],
    ["catalog", "add-product", "--store-id", "1", "--description", "D", "--price", "9.90"],
    ["catalog", "add-product", "--store-id", "1", "--description", "D", "--price", "9.90",
     "--sku", "K", "--stock", "3"],
    ["catalog", "add-customer", "--store-id", "1", "--name", "N"],
    ["catalog", "add-customer", "--store-id", "1", "--name", "N", "--document", "D",
     "--mobile-phone", "1", "--business-phone", "2"],
    ["settings", "set", "--store-id", "1", "stock-check", "on"],
    ["settings", "set", "--store-id", "1", "stock-check", "off"],
    ["settings", "set", "--store-id", "1", "product-match", "sku"],
    ["settings", "set", "--store-id", "1", "product-match", "description"],
    ["settings", "set", "--store-id", "1", "timezone", "America/Manaus"],
    ["settings", "show", "--store-id", "1"],
    ["orders", "rejected"],
    ["orders", "rejected", "--store-id", "1"],
    ["orders", "retry", "--store-id", "1", "--order-id", "2"],
    ["orders", "retry", "--store-id", "1", "--all"],
    ["orders", "trace", "--store-id", "1", "--order-id", "2"],
    ["dead", "list", "mapper.orders.dead"],
    ["dead", "replay", "mapper.orders.dead", "--all"],
    ["dead", "replay", "mapper.orders.dead", "--message-id", "M"],
    ["sales", "show", "--store-id", "1", "--order-id", "2"],
    ["receivables", "list", "--store-id", "1"],
    ["receivables", "list", "--store-id", "1", "--status", "open"],
    ["backfill", "--store-id", "1", "--since", "2026-01-01"],
    ["backfill", "--store-id", "1", "--since", "2026-01-01", "--until", "2026-02-01"],
    ["privacy", "requests"],
    ["privacy", "requests", "--store-id", "1"],
    ["privacy", "export", "--request-id", "R"],
    ["migrate"],
    ["demo"],
    ["demo", "--orders", "5", "--stores", "1"],
    ["bench"],
    ["bench", "--quick"],
]  # fmt: skip


@pytest.mark.parametrize("argv", CONTRACT, ids=lambda a: " ".join(a[:3]))
def test_every_contract_command_parses_with_json_at_the_end(argv: list[str]) -> None:
    args = build_parser().parse_args([*argv, "--json"])
    assert args.json is True
    assert callable(args.handler)


@pytest.mark.parametrize("service", ["ingest", "mapper", "ledger", "all"])
def test_run_has_its_handler(service: str) -> None:
    assert callable(build_parser().parse_args(["run", service]).handler)


def test_commands_of_one_area_have_handlers_of_their_own() -> None:
    parser = build_parser()
    handlers = {
        " ".join(argv[:2]): parser.parse_args(argv).handler
        for argv in (["integration", "show", "1"], ["integration", "list"], ["orders", "rejected"])
    }
    assert len({id(h) for h in handlers.values()}) == len(handlers)


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["frobnicate"],
        ["catalog", "add-product", "--description", "X", "--price", "1.00"],
        ["catalog", "add-product", "--store-id", "1", "--description", "X", "--price", "abc"],
        ["settings", "set", "--store-id", "1", "stock-check", "maybe"],
        ["settings", "set", "--store-id", "1", "product-match", "ean"],
        ["settings", "set", "--store-id", "1", "timezone", "Mars/Olympus"],
        ["settings", "show"],
        ["orders", "retry", "--store-id", "1"],
        ["orders", "trace", "--store-id", "1"],
        ["integration", "connect", "--store-id", "1", "--access-token", "t", "--user", "u",
         "--activated-at", "yesterday"],
    ],
)  # fmt: skip
def test_bad_usage_is_one_line_and_exit_code_2(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(argv)
    assert exited.value.code == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert len(err.strip().splitlines()) == 1
    assert err.startswith("nuvem-ledger")


def test_unreachable_database_fails_with_one_line(tmp_path: Path) -> None:
    env = child_env(DATABASE_URL=f"postgresql://postgres@127.0.0.1:{closed_port()}/nuvem_ledger")
    result = asyncio.run(run_cli("integration", "list", "--json", env=env, cwd=tmp_path))
    assert result.returncode == 1, result.describe()
    assert result.stdout == ""
    assert len(result.lines()) == 1, result.describe()
    assert "DATABASE_URL" in result.lines()[0]
