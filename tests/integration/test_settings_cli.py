"""``settings set|show`` (SPEC §8.1, §8.5) and ``sales show`` with the order facts, run as an
operator runs them: the real console command against the test's database."""

from __future__ import annotations

from pathlib import Path

from shared.contracts import Address, OrderCustomer, StorePayment
from shared.settings import Settings
from tests.harness import System
from tests.integration.mapper_helpers import Cli, make_order, publish, wait_until

STORE = 790_001


async def test_settings_set_and_show(settings: Settings, tmp_path: Path) -> None:
    cli = Cli(settings, tmp_path)
    shown = await cli.json("settings", "show", "--store-id", str(STORE))
    assert shown == {
        "store_id": STORE,
        "stock_check": False,
        "product_match": "description",
        "timezone": "America/Sao_Paulo",
        "timezone_is_default": True,
    }
    await cli.json("settings", "set", "--store-id", str(STORE), "product-match", "sku")
    changed = await cli.json(
        "settings", "set", "--store-id", str(STORE), "timezone", "America/Manaus"
    )
    assert (changed["product_match"], changed["timezone"], changed["timezone_is_default"]) == (
        "sku",
        "America/Manaus",
        False,
    )
    text = await cli.run("settings", "show", "--store-id", str(STORE))
    assert text.returncode == 0, text.describe()
    assert text.stdout.strip() == (
        f"store {STORE}: stock-check off, product-match sku, timezone America/Manaus"
    )

    bad = await cli.run(
        "settings", "set", "--store-id", str(STORE), "timezone", "America/Sao Paulo"
    )
    assert bad.returncode == 2, bad.describe()
    assert bad.stdout == ""
    assert len(bad.stderr.strip().splitlines()) == 1
    assert "not an IANA time zone" in bad.stderr
    bad = await cli.run("settings", "set", "--store-id", str(STORE), "product-match", "ean")
    assert bad.returncode == 2, bad.describe()
    assert "description, sku" in bad.stderr
    assert (await cli.json("settings", "show", "--store-id", str(STORE)))[
        "timezone"
    ] == "America/Manaus"


async def test_sales_show_prints_the_order_facts(system: System, tmp_path: Path) -> None:
    address = Address(street="Rua Augusta", number="1500", city="São Paulo", state="SP")
    order = make_order(STORE + 1, 1)
    order = order.model_copy(
        update={
            "customer": OrderCustomer.model_validate(
                order.customer.model_dump() | {"address": address.model_dump()}
            ),
            "shipping_address": address.model_copy(update={"street": "Avenida Paulista"}),
            "store_payment": StorePayment(
                method="credit_card", gateway="Mercado Pago", card_company="visa", installments=3
            ),
        }
    )
    await publish(system, order)
    ledger_pool = system.services["ledger"].ctx.pool

    async def kept() -> bool:
        found = await ledger_pool.fetchval(
            "SELECT 1 FROM ledger.sales WHERE store_id = $1", STORE + 1
        )
        return found is not None

    assert await wait_until(kept, True)
    cli = Cli(system.settings, tmp_path)
    shown = await cli.run("sales", "show", "--store-id", str(STORE + 1), "--order-id", "1")
    assert shown.returncode == 0, shown.describe()
    assert "paid at the store: credit_card visa in 3x via Mercado Pago" in shown.stdout
    assert "billing address: Rua Augusta, 1500, São Paulo, SP" in shown.stdout
    assert "shipping address: Avenida Paulista, 1500, São Paulo, SP" in shown.stdout
    as_json = await cli.json("sales", "show", "--store-id", str(STORE + 1), "--order-id", "1")
    assert as_json["store_payment"]["installments"] == 3
    assert as_json["customer"]["address"]["street"] == "Rua Augusta"
    assert as_json["partially_refunded_at"] is None
