"""What the running services write is safe: no secret, no full document, no e-mail.

``nuvem-ledger run all`` runs as a real process with its real logging (JSON, DEBUG: the most it
ever writes) against the simulator, through the whole path: the OAuth install from an
ERP-signed connect link, webhooks, a poll, a confirmation, a rejection, an LGPD data request and
a redaction, and a 401 from the store. Everything it wrote (stdout and stderr) is then searched
for the access token, the client secret, ``CONNECT_LINK_SECRET``, each key of
``TOKEN_ENCRYPTION_KEY``, the OAuth code, every CPF and CNPJ used (in any punctuation) and every
e-mail address used.
"""

from __future__ import annotations

import json
import re
import secrets
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from yarl import URL

from services.ingest.connect_links import make_link
from services.ingest.lgpd import webhook_url
from services.ingest.tokens import generate_key
from services.simulator.listing import MISSING
from services.simulator.runner import start_simulator
from shared.contracts import SaleConfirm
from shared.documents import mask_document
from shared.messaging import Broker, envelope
from tests.harness import Observer, ledger_sentinel, mapper_sentinel
from tests.integration.helpers import CLI, child_env, free_port, spawn
from tests.integration.ingest_helpers import eventually

STORE = 737_001
USER = "erp-user-737"
CPF = "758.395.665-00"
CNPJ = "11.222.333/0001-81"
BAD_CPF = "758.395.665-01"  # not a CPF: the mapper warns about it
EMAILS = ("maria.segredo@example.org", "empresa.sigilo@example.com.br")
LGPD = ("customers/redact", "customers/data_request", "store/redact")


def _digits(value: str) -> re.Pattern[str]:
    return re.compile(r"[\W_]?".join(re.escape(d) for d in re.sub(r"\W", "", value)))


async def _get(session: aiohttp.ClientSession, url: str | URL) -> tuple[int, str, str]:
    async with session.get(url, allow_redirects=False) as response:
        return response.status, response.headers.get("Location", ""), await response.text()


async def test_the_whole_path_logs_no_secret_no_document_no_email(
    vhost_url: str, database_url: str, tmp_path: Path
) -> None:
    sim = await start_simulator(rate_limit=True, time_scale=0.001)
    state = sim.state
    port = free_port()
    ingest_url = f"http://127.0.0.1:{port}"
    keys = [generate_key(), generate_key()]
    link_secret = secrets.token_urlsafe(32)
    env = child_env(
        AMQP_URL=vhost_url,
        DATABASE_URL=database_url,
        TOKEN_ENCRYPTION_KEY=",".join(keys),
        CONNECT_LINK_SECRET=link_secret,
        NUVEMSHOP_API_URL=sim.api_url,
        NUVEMSHOP_AUTH_URL=sim.auth_url,
        NUVEMSHOP_APP_ID=state.app_id,
        NUVEMSHOP_CLIENT_SECRET=state.client_secret,
        INGEST_HTTP_PORT=str(port),
        MAPPER_HTTP_PORT=str(free_port()),
        LEDGER_HTTP_PORT=str(free_port()),
        PUBLIC_BASE_URL=ingest_url,
        HTTP_HOST="127.0.0.1",
        POLL_INTERVAL_SECONDS="1",
        LOG_LEVEL="DEBUG",
        LOG_FORMAT="json",
    )
    observer = await Observer.start(vhost_url)
    erp = Broker(vhost_url, app_id="test-erp")
    await erp.connect(deadline=10)
    tokens: list[str] = []
    codes: list[str] = []
    try:
        async with (
            spawn([CLI, "run", "all"], env=env, cwd=tmp_path, name="services") as child,
            aiohttp.ClientSession() as http,
        ):

            async def ready() -> bool:
                assert child.proc.returncode is None, child.output()
                try:
                    return (await _get(http, f"{ingest_url}/readyz"))[0] == 200
                except aiohttp.ClientError:
                    return False

            await eventually(ready, "ingest ready", within=30, every=0.2)
            # The OAuth install, from the ERP's signed link.
            state.redirect_url = f"{ingest_url}/oauth/nuvemshop/callback"
            state.install_store_id = STORE
            link = make_link(ingest_url, USER, link_secret).url
            status, authorize, _ = await _get(http, link)
            assert status == 302
            status, callback, _ = await _get(http, authorize)
            assert status == 302
            codes.append(URL(callback).query["code"])
            status, _, page = await _get(http, callback)
            assert status == 200, page
            tokens.append(str(state.stores[STORE].token))
            state.lgpd_urls = {event: webhook_url(ingest_url, event) for event in LGPD}
            await _run_the_path(state, observer, erp)
            # A 401 from the store: the token revoked, the next webhook's fetch is refused.
            state.revoke_token(STORE)
            state.add_order(STORE, paid=True)
            await observer.wait_for("integration.disabled", store_id=STORE, within=20)
            assert await child.terminate() == 0
            written = child.stdout + child.stderr
    finally:
        await erp.close()
        await observer.close()
        await sim.close()

    lines = written.splitlines()
    assert len(lines) > 30, written[:2000]
    assert any('"pending sale created"' in line for line in lines)
    forbidden: dict[str, re.Pattern[str]] = {
        "access token": re.compile(re.escape(tokens[0])),
        "oauth code": re.compile(re.escape(codes[0])),
        "client secret": re.compile(re.escape(state.client_secret)),
        "CONNECT_LINK_SECRET": re.compile(re.escape(link_secret)),
        "CPF": _digits(CPF),
        "CNPJ": _digits(CNPJ),
        "mistyped CPF": _digits(BAD_CPF),
        **{f"TOKEN_ENCRYPTION_KEY {i + 1}": re.compile(re.escape(k)) for i, k in enumerate(keys)},
        **{f"e-mail {e}": re.compile(re.escape(e), re.IGNORECASE) for e in EMAILS},
    }
    leaks = {
        what: [line[:300] for line in lines if pattern.search(line)][:3]
        for what, pattern in forbidden.items()
    }
    assert {k: v for k, v in leaks.items() if v} == {}


async def _run_the_path(state: Any, observer: Observer, erp: Broker) -> None:
    # Webhooks: a paid order of a person (CPF) and of a company (CNPJ).
    person = state.add_order(
        STORE,
        paid=True,
        customer={"name": "Maria Segredo", "identification": CPF, "email": EMAILS[0]},
    )
    company = state.add_order(
        STORE,
        paid=True,
        customer={"name": "Empresa Sigilo", "identification": CNPJ, "email": EMAILS[1]},
    )
    typo = state.add_order(
        STORE,
        paid=True,
        customer={"name": "Maria Segredo", "identification": BAD_CPF, "email": EMAILS[0]},
    )
    for order in (person, company, typo):
        await observer.wait_for("sale.pending_review", store_id=STORE, order_id=int(order["id"]))
    # Where a document must be shown (the ERP's warning about a mistyped one), it is masked.
    [warned] = observer.of("sale.pending_review", store_id=STORE, order_id=int(typo["id"]))
    warnings = json.dumps(warned.body["warnings"])
    assert mask_document(BAD_CPF) in warnings, warnings
    assert not _digits(BAD_CPF).search(warnings), warnings
    # A poll: an order no webhook announces.
    polled = state.add_order(
        STORE, paid=True, notify=False, customer={"identification": CPF, "email": EMAILS[0]}
    )
    await observer.wait_for("sale.pending_review", store_id=STORE, order_id=int(polled["id"]))
    # A confirmation by the ERP.
    [pending] = observer.of("sale.pending_review", store_id=STORE, order_id=int(person["id"]))
    confirm = SaleConfirm(sale_id=pending.body["sale_id"], confirmed_by=USER)
    await erp.publish(envelope(confirm, message_id="confirm-737", correlation_id=None))
    await observer.wait_for("sale.confirmed", sale_id=pending.body["sale_id"])
    # A rejection: an order without items, of the person.
    bad = state.add_order(STORE, notify=False, customer={"identification": CPF, "email": EMAILS[0]})
    state.stores[STORE].hostile[int(bad["id"])] = {"products": MISSING}
    state.mark_paid(STORE, int(bad["id"]))
    await observer.wait_for("sale.rejected", store_id=STORE, order_id=int(bad["id"]))
    # LGPD: the person's data request, then their redaction.
    customer_id = int(person["customer"]["id"])
    state.lgpd_request(STORE, "customers/data_request", customer_id=customer_id, data_request_id=5)
    state.lgpd_request(STORE, "customers/redact", customer_id=customer_id)
    await observer.wait_for("privacy.request", count=2, store_id=STORE, within=20)
    # Both services that act on them (and log it) have: their sentinels queued behind are answered.
    await mapper_sentinel(observer, erp)
    await ledger_sentinel(observer, erp)


pytestmark = pytest.mark.timeout(120)
