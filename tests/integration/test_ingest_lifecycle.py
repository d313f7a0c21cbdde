"""A store's connection to ingest over its life, against the simulator, broker and database.

The OAuth install (and what the callback refuses), reconnecting, the token revoked (seen by a
webhook or by the poll), the app uninstalled, and the integration switched off and on, each
with the catch-up of what was paid meanwhile.
"""

from __future__ import annotations

import datetime as dt
import time
from collections import Counter
from pathlib import Path

from yarl import URL

from services.ingest.adapters.oauth import sign_state, verify_state
from services.ingest.connections import WEBHOOK_EVENTS
from tests.harness import System
from tests.integration.ingest_helpers import (
    approve,
    first_poll_done,
    get_page,
    ingest_pool,
    make_due,
    oauth_install,
    per_order,
    prepare_oauth,
    run_cli,
    start_install,
    store_row,
)

STORE = 730_001


def _registered(system: System, store_id: int) -> Counter[tuple[str, str]]:
    hooks = system.simulator.state.stores[store_id].webhooks.values()
    return Counter((h.event, h.url) for h in hooks)


def _expected_hooks(system: System) -> Counter[tuple[str, str]]:
    url = f"{system.ingest_url}/webhooks/nuvemshop"
    return Counter((event, url) for event in WEBHOOK_EVENTS)


async def test_oauth_install_stores_the_store_enabled_with_its_webhooks(system: System) -> None:
    prepare_oauth(system, STORE)
    before = dt.datetime.now(dt.UTC)

    authorize = await start_install(system, "erp-user-42")
    assert str(authorize).startswith(
        f"{system.simulator.auth_url}/apps/{system.simulator.state.app_id}/authorize?state="
    )
    state = authorize.query["state"]
    secret = system.simulator.state.client_secret
    assert verify_state(state, secret) == "erp-user-42"

    callback = await approve(system, authorize)
    assert str(callback).startswith(f"{system.ingest_url}/oauth/nuvemshop/callback?")
    assert callback.query["state"] == state
    assert callback.query["code"]

    page = await get_page(system, callback)
    assert page.status == 200, page.text
    assert page.content_type == "text/html"
    assert str(STORE) in page.text

    row = await store_row(system, STORE)
    assert row is not None
    assert row["enabled"] is True
    assert row["disabled_reason"] is None
    assert row["activated_by"] == "erp-user-42"
    # The activation is kept to the whole second, as the API's own timestamps are.
    assert before.replace(microsecond=0) <= row["activated_at"] <= dt.datetime.now(dt.UTC)
    token = system.simulator.state.stores[STORE].token
    assert token is not None
    assert token.encode() not in bytes(row["access_token"])  # stored encrypted
    assert _registered(system, STORE) == _expected_hooks(system)


async def test_callback_refuses_forged_or_expired_state_and_stores_nothing(
    system: System,
) -> None:
    prepare_oauth(system, STORE)
    secret = system.simulator.state.client_secret
    code, _ = system.simulator.state.issue_code(STORE)
    callback = URL(f"{system.ingest_url}/oauth/nuvemshop/callback")
    genuine = sign_state("erp-user-1", secret)
    payload, mac = genuine.split(".", 1)
    other_payload = sign_state("intruder", secret).split(".", 1)[0]
    refused = {
        "signed with another key": sign_state("erp-user-1", "not-the-secret"),
        "payload swapped": f"{other_payload}.{mac}",
        "signature cut": payload,
        "expired": sign_state("erp-user-1", secret, now=time.time() - 3600),
        "garbage": "not-a-state",
        "empty": "",
    }
    for why, state in refused.items():
        page = await get_page(system, callback.with_query(code=code, state=state))
        assert page.status == 400, f"{why}: {page.status} {page.text}"
        assert page.content_type == "text/html", why
    missing_code = await get_page(system, callback.with_query(state=genuine))
    assert missing_code.status == 400

    assert await store_row(system, STORE) is None
    assert STORE not in system.simulator.state.stores  # the code was never exchanged
    assert await ingest_pool(system).fetchval("SELECT count(*) FROM ingest.stores") == 0

    # The code is still good: none of the refusals spent it.
    page = await get_page(system, callback.with_query(code=code, state=genuine))
    assert page.status == 200, page.text


async def test_callback_with_a_refused_code_exchange_stores_nothing(system: System) -> None:
    prepare_oauth(system, STORE)
    secret = system.simulator.state.client_secret
    callback = URL(f"{system.ingest_url}/oauth/nuvemshop/callback")
    page = await get_page(
        system, callback.with_query(code="not-a-code", state=sign_state("erp-user-1", secret))
    )
    assert page.status == 400, page.text
    assert page.content_type == "text/html"
    assert secret not in page.text
    assert await store_row(system, STORE) is None
    assert STORE not in system.simulator.state.stores


async def test_reconnecting_keeps_activation_date_and_reenables(
    system: System, tmp_path: Path
) -> None:
    first = await oauth_install(system, STORE, "erp-user-1")
    assert first.status == 200, first.text
    row = await store_row(system, STORE)
    assert row is not None
    activated_at = row["activated_at"]
    disabled = await run_cli(system, tmp_path, "integration", "disable", str(STORE), "--json")
    assert disabled.json()["enabled"] is False

    again = await oauth_install(system, STORE, "erp-user-2")
    assert again.status == 200, again.text
    assert "reconnected" in again.text
    row = await store_row(system, STORE)
    assert row is not None
    assert row["enabled"] is True
    assert row["disabled_reason"] is None
    assert row["activated_at"] == activated_at
    assert _registered(system, STORE) == _expected_hooks(system)  # none registered twice
    shown = (await run_cli(system, tmp_path, "integration", "show", str(STORE), "--json")).json()
    assert shown["enabled"] is True
    assert dt.datetime.fromisoformat(shown["activated_at"]) == activated_at


async def test_token_revoked_seen_by_a_webhook_disables_then_reconnect_catches_up(
    system: System,
) -> None:
    await system.connect_store(STORE)
    await first_poll_done(system, STORE)
    sim = system.simulator.state
    row = await store_row(system, STORE)
    assert row is not None
    activated_at = row["activated_at"]
    sim.revoke_token(STORE)

    refused = int(sim.add_order(STORE, paid=True)["id"])  # webhook → fetch → 401
    disabled = await system.observer.wait_for("integration.disabled", store_id=STORE)
    assert disabled[0].body["reason"] == "credentials_revoked"
    row = await store_row(system, STORE)
    assert row is not None
    assert (row["enabled"], row["disabled_reason"]) == (False, "credentials_revoked")

    while_off = int(sim.add_order(STORE, paid=True)["id"])  # acknowledged, not fetched
    await system.simulator.dispatcher.wait_idle(10)
    await system.settled(STORE)
    assert system.observer.of("order.paid", store_id=STORE) == []

    page = await oauth_install(system, STORE, "erp-user-1")  # a new install: a new token
    assert page.status == 200, page.text
    await system.observer.wait_for("order.paid", count=2, store_id=STORE, within=10)
    await system.settled(STORE)
    assert per_order(system, "order.paid", STORE) == Counter({refused: 1, while_off: 1})
    assert len(system.observer.of("integration.disabled", store_id=STORE)) == 1
    row = await store_row(system, STORE)
    assert row is not None
    assert (row["enabled"], row["activated_at"]) == (True, activated_at)


async def test_token_revoked_seen_by_the_poll_disables_the_store(system: System) -> None:
    await system.connect_store(STORE)
    await first_poll_done(system, STORE)
    system.simulator.state.revoke_token(STORE)
    await make_due(system, STORE)

    disabled = await system.observer.wait_for("integration.disabled", store_id=STORE)
    assert disabled[0].body == {"store_id": STORE, "reason": "credentials_revoked"}
    assert disabled[0].type == "integration.disabled.v1"
    row = await store_row(system, STORE)
    assert row is not None
    assert (row["enabled"], row["disabled_reason"]) == (False, "credentials_revoked")
    await system.settled(STORE)
    assert len(system.observer.of("integration.disabled", store_id=STORE)) == 1


async def test_app_uninstalled_disables_then_reinstall_registers_and_catches_up(
    system: System,
) -> None:
    await system.connect_store(STORE)
    await first_poll_done(system, STORE)
    sim = system.simulator.state
    sim.uninstall(STORE)  # app/uninstalled to ingest; the store's webhooks are removed

    disabled = await system.observer.wait_for("integration.disabled", store_id=STORE)
    assert disabled[0].body["reason"] == "app_uninstalled"
    row = await store_row(system, STORE)
    assert row is not None
    assert (row["enabled"], row["disabled_reason"]) == (False, "app_uninstalled")
    uninstalled = [d for d in system.simulator.dispatcher.log if d.event == "app/uninstalled"]
    assert [d.outcome for d in uninstalled] == ["delivered"]

    paid_meanwhile = int(sim.add_order(STORE, paid=True)["id"])  # no webhook: none registered
    page = await oauth_install(system, STORE, "erp-user-1")
    assert page.status == 200, page.text
    assert _registered(system, STORE) == _expected_hooks(system)
    await system.observer.wait_for("order.paid", order_id=paid_meanwhile, within=10)
    row = await store_row(system, STORE)
    assert row is not None
    assert row["enabled"] is True


async def test_switched_off_then_on_catches_up_what_was_paid_meanwhile(
    system: System, tmp_path: Path
) -> None:
    await system.connect_store(STORE)
    await first_poll_done(system, STORE)
    sim = system.simulator.state
    before = int(sim.add_order(STORE, paid=True)["id"])
    await system.observer.wait_for("order.paid", order_id=before)

    off = await run_cli(system, tmp_path, "integration", "disable", str(STORE), "--json")
    assert off.json()["enabled"] is False
    assert off.json()["disabled_reason"] == "switched_off"
    disabled = await system.observer.wait_for("integration.disabled", store_id=STORE)
    assert disabled[0].body["reason"] == "switched_off"

    meanwhile = int(sim.add_order(STORE, paid=True)["id"])  # webhook acknowledged, ignored
    await make_due(system, STORE)  # and the poller leaves a store that is off alone
    await system.simulator.dispatcher.wait_idle(10)
    await system.settled(STORE)
    assert system.observer.of("order.paid", order_id=meanwhile) == []

    on = await run_cli(system, tmp_path, "integration", "enable", str(STORE), "--json")
    assert on.json()["enabled"] is True
    await system.observer.wait_for("order.paid", order_id=meanwhile, within=10)
    await system.settled(STORE)
    assert per_order(system, "order.paid", STORE) == Counter({before: 1, meanwhile: 1})
