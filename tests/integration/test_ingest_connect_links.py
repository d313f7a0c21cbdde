"""Only the ERP starts a connection, and an OAuth state connects once (SPEC §9), against the real
ingest, the simulator's OAuth, the broker and the database.

``/connect/nuvemshop`` answers 403 to any link the ERP did not sign (or that expired), the link
``integration connect-link`` prints starts the install, a callback replayed with a spent state
(alone, or with a fresh code for another store) answers 400 and changes nothing, spent states are
pruned once long expired, and ingest will not start without ``CONNECT_LINK_SECRET``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from pathlib import Path

from yarl import URL

from services.ingest.adapters import postgres as ingest_db
from services.ingest.connect_links import signature
from services.ingest.tokens import generate_key
from tests.harness import System
from tests.integration.helpers import CLI, child_env, free_port, spawn
from tests.integration.ingest_helpers import (
    Page,
    approve,
    connect_link,
    get_page,
    ingest_pool,
    prepare_oauth,
    run_cli,
    start_install,
    store_row,
)

STORE = 731_001
OTHER_STORE = 731_002


async def _install_from(system: System, link: URL) -> Page:
    """The install started from ``link``: the page the callback answers."""
    async with system.http.get(link, allow_redirects=False) as response:
        assert response.status == 302, await response.text()
        authorize = URL(response.headers["Location"])
    return await get_page(system, await approve(system, authorize))


async def test_links_the_erp_did_not_sign_are_refused_with_403(system: System) -> None:
    prepare_oauth(system, STORE)
    good = connect_link(system, "erp-user-1")
    query = dict(good.query)
    base = URL(f"{system.ingest_url}/connect/nuvemshop")
    secret = system.settings.connect_link_secret
    assert secret is not None
    past = int(time.time()) - 1
    refused = {
        "no parameters at all": base.with_query(user="erp-user-1"),
        "no signature": base.with_query(user="erp-user-1", expires=query["expires"]),
        "another user": base.with_query(query | {"user": "intruder"}),
        "a later expiry": base.with_query(query | {"expires": str(int(query["expires"]) + 60)}),
        "a signature of another key": base.with_query(
            query | {"signature": signature("erp-user-1", query["expires"], "x" * 32)}
        ),
        "expired, though signed": base.with_query(
            user="erp-user-1",
            expires=str(past),
            signature=signature("erp-user-1", past, secret.get_secret_value()),
        ),
    }
    for why, link in refused.items():
        page = await get_page(system, link)
        assert page.status == 403, f"{why}: {page.status} {page.text}"
        assert page.content_type == "text/html", why
    assert not system.simulator.state.stores  # nobody was sent to Nuvemshop

    authorize = await start_install(system, "erp-user-1")
    assert str(authorize).startswith(f"{system.simulator.auth_url}/apps/")


async def test_the_cli_link_starts_the_install_for_its_user(system: System, tmp_path: Path) -> None:
    prepare_oauth(system, STORE)
    made = await run_cli(
        system, tmp_path, "integration", "connect-link", "--user", "erp-user-9", "--ttl", "120",
        "--json",
    )  # fmt: skip
    shown = made.json()
    assert set(shown) >= {"url", "expires"}
    assert abs(shown["expires"] - (time.time() + 120)) < 30
    # The CLI signs for PUBLIC_BASE_URL; the test's ingest listens on a free port.
    link = URL(shown["url"])
    assert link.path == "/connect/nuvemshop"
    assert link.query["user"] == "erp-user-9"
    local = URL(system.ingest_url).with_path(link.path).with_query(link.query)
    page = await _install_from(system, local)
    assert page.status == 200, page.text
    row = await store_row(system, STORE)
    assert row is not None
    assert row["activated_by"] == "erp-user-9"

    text = await run_cli(system, tmp_path, "integration", "connect-link", "--user", "erp-user-9")
    assert text.returncode == 0, text.describe()
    assert text.stdout.strip().startswith("http")
    for bad in (["--user", ""], ["--user", "u", "--ttl", "0"], ["--user", "u", "--ttl", "x"]):
        failed = await run_cli(system, tmp_path, "integration", "connect-link", *bad)
        assert failed.returncode != 0, failed.describe()
        assert len(failed.lines()) == 1, failed.describe()


async def test_a_state_connects_once_replays_change_nothing(system: System) -> None:
    prepare_oauth(system, STORE)
    callback = await approve(system, await start_install(system, "erp-user-1"))
    assert (await get_page(system, callback)).status == 200
    after_first = await store_row(system, STORE)
    assert after_first is not None
    hooks_before = len(system.simulator.state.stores[STORE].webhooks)

    # The callback the merchant's browser made, replayed as it was...
    replay = await get_page(system, callback)
    assert replay.status == 400, replay.text
    assert "already used" in replay.text
    # ...and its state paired with a fresh code, for another store, by whoever copied it.
    fresh, _ = system.simulator.state.issue_code(OTHER_STORE)
    stolen = callback.with_query(code=fresh, state=callback.query["state"])
    page = await get_page(system, stolen)
    assert page.status == 400, page.text

    assert await store_row(system, STORE) == after_first
    assert await store_row(system, OTHER_STORE) is None
    assert OTHER_STORE not in system.simulator.state.stores  # the fresh code was never spent
    assert len(system.simulator.state.stores[STORE].webhooks) == hooks_before


async def test_two_callbacks_racing_with_one_state_connect_once(system: System) -> None:
    prepare_oauth(system, STORE)
    callback = await approve(system, await start_install(system, "erp-user-1"))
    first, second = await asyncio.gather(get_page(system, callback), get_page(system, callback))
    assert sorted([first.status, second.status]) == [200, 400], (first, second)
    assert await ingest_pool(system).fetchval("SELECT count(*) FROM ingest.stores") == 1


async def test_spent_states_are_pruned_a_day_after_they_expired(system: System) -> None:
    pool = ingest_pool(system)
    now = dt.datetime.now(dt.UTC)
    assert await ingest_db.claim_oauth_state(pool, "old", now - dt.timedelta(days=2))
    assert await ingest_db.claim_oauth_state(pool, "recent", now - dt.timedelta(hours=1))
    assert not await ingest_db.claim_oauth_state(pool, "recent", now - dt.timedelta(hours=1))
    assert await ingest_db.claim_oauth_state(pool, "new", now + dt.timedelta(minutes=10))
    kept = await pool.fetch("SELECT nonce FROM ingest.oauth_states ORDER BY nonce")
    assert [r["nonce"] for r in kept] == ["new", "recent"]


async def test_ingest_without_a_connect_link_secret_refuses_to_start_in_one_line(
    vhost_url: str, database_url: str, tmp_path: Path
) -> None:
    for value in (None, "too-short"):
        extra = {} if value is None else {"CONNECT_LINK_SECRET": value}
        env = child_env(
            AMQP_URL=vhost_url,
            DATABASE_URL=database_url,
            TOKEN_ENCRYPTION_KEY=generate_key(),
            INGEST_HTTP_PORT=str(free_port()),
            HTTP_HOST="127.0.0.1",
            **extra,
        )
        async with spawn([CLI, "run", "ingest"], env=env, cwd=tmp_path) as child:
            code = await asyncio.wait_for(child.proc.wait(), timeout=15)
            assert code != 0, child.output()
            lines = [line for line in child.stderr.splitlines() if line.strip()]
            assert len(lines) == 1, child.output()
            assert "CONNECT_LINK_SECRET" in lines[0]
            assert "Traceback" not in child.stdout + child.stderr, child.output()
