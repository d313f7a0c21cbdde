"""`nuvem-ledger demo` (what `make demo` runs) ends by itself with every paid order confirmed."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.e2e


@pytest.mark.timeout(300)
def test_demo_confirms_every_order_it_pays(vhost_url: str, database_url: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NUVEMSHOP_")}
    env |= {"AMQP_URL": vhost_url, "DATABASE_URL": database_url}
    env.pop("TOKEN_ENCRYPTION_KEY", None)  # the demo makes its own
    done = subprocess.run(
        [sys.executable, "-m", "services.cli", "demo", "--orders", "20", "--json"],
        capture_output=True,
        text=True,
        timeout=280,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout)
    assert summary["complete"] is True
    assert summary["orders_paid"] == summary["pending_sales"] == summary["confirmed_sales"] == 20
    assert summary["receivables"] >= 20
    assert summary["stock_moved"] > 0
    assert "paid 20/20" in done.stderr  # progress is shown while it runs
    # SPEC §8 shown: a card payment in installments, the addresses, a SKU-matched product.
    showcase = summary["showcase"]
    assert showcase["store_payment"]["method"] == "credit_card"
    assert showcase["store_payment"]["installments"] == 3
    assert showcase["billing_address"]["street"] == "Rua Augusta"
    assert showcase["shipping_address"]["street"] == "Avenida Paulista"
    assert showcase["line"] == "Camiseta Nuvem (P, Azul)"
    assert showcase["product"]["created"] is False
    assert showcase["product"]["description"].startswith("Camiseta Nuvem P azul")
    assert showcase["payment"]["method"] == "cash"
