"""Screenshots of the RabbitMQ management UI during a demo run, for docs/operations.md.

    .venv/bin/python -m tools.screenshots [--out docs/img] [--orders 600]

Starts a private RabbitMQ node with its management plugin (``tests/faults/broker.RabbitNode``,
beside the machine's shared broker, which it never touches) and a database of its own, runs
``nuvem-ledger demo`` against them, turns the stock check on for one demo store so that some of
its orders are rejected and parked, and, while the demo runs, drives headless Chromium (Debian's
``chromium`` package) over the DevTools protocol: it logs in with the form (guest/guest), and
captures the queue list and a parked message with its headers. Needs root (the private node runs
as the ``rabbitmq`` user); not part of ``make test``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import itertools
import json
import os
import secrets
import shutil
import sys
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from services.ingest.tokens import generate_key
from tests.faults.broker import RabbitNode

ROOT = Path(__file__).resolve().parents[1]
PG = "postgresql://postgres@127.0.0.1:5432"


class Page:
    """One Chromium tab over the DevTools protocol (only what the screenshots need)."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.ids = itertools.count(1)

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        number = next(self.ids)
        await self.ws.send_json({"id": number, "method": method, "params": params})
        while True:
            message = json.loads((await self.ws.receive()).data)
            if message.get("id") == number:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                result: dict[str, Any] = message.get("result", {})
                return result

    async def js(self, expression: str) -> Any:
        done = await self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return done.get("result", {}).get("value")

    async def until(self, expression: str, within: float = 20.0) -> None:
        for _ in range(int(within * 10)):
            if await self.js(expression):
                return
            await asyncio.sleep(0.1)
        raise TimeoutError(f"waited {within}s for {expression}")

    async def shot(self, path: Path, clip: tuple[float, float] | None = None) -> None:
        """The viewport, or the page between two heights (``clip``: top, bottom)."""
        options: dict[str, Any] = {"format": "png"}
        if clip is not None:
            width = await self.js("document.documentElement.scrollWidth")
            options |= {
                "clip": {
                    "x": 0,
                    "y": clip[0],
                    "width": width,
                    "height": clip[1] - clip[0],
                    "scale": 1,
                },
            }
        data = await self.call("Page.captureScreenshot", **options)
        await asyncio.to_thread(path.write_bytes, base64.b64decode(data["data"]))
        print(f"saved {path}", file=sys.stderr)


@contextlib.asynccontextmanager
async def chromium(width: int = 1440, height: int = 1000) -> AsyncIterator[Page]:
    profile = tempfile.mkdtemp(prefix="nl-chromium-")
    process = await asyncio.create_subprocess_exec(
        shutil.which("chromium") or "chromium",
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--remote-debugging-port=0",
        f"--user-data-dir={profile}",
        f"--window-size={width},{height}",
        "about:blank",
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stderr is not None
        endpoint = ""
        while not endpoint:
            line = (await asyncio.wait_for(process.stderr.readline(), 30)).decode()
            if line.startswith("DevTools listening on "):
                endpoint = line.split(" on ", 1)[1].strip()
        port = endpoint.split(":")[2].split("/")[0]
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{port}/json/list") as reply:
                tab = next(t for t in await reply.json() if t["type"] == "page")
            async with http.ws_connect(tab["webSocketDebuggerUrl"], max_msg_size=0) as ws:
                page = Page(ws)
                await page.call("Page.enable")
                await page.call(
                    "Emulation.setDeviceMetricsOverride",
                    width=width,
                    height=height,
                    deviceScaleFactor=1,
                    mobile=False,
                )
                yield page
    finally:
        process.terminate()
        await process.wait()
        shutil.rmtree(profile, ignore_errors=True)


async def login(page: Page, base: str) -> None:
    await page.call("Page.navigate", url=f"{base}/")
    await page.until("!!document.querySelector('input[name=username]')")
    await page.js(
        "document.querySelector('input[name=username]').value = 'guest';"
        "document.querySelector('input[name=password]').value = 'guest';"
        "document.querySelector('input[type=submit]').click(); true"
    )
    await page.until("!!document.querySelector('#logout')")


async def queues(page: Page, base: str, out: Path) -> None:
    await page.call("Page.navigate", url=f"{base}/#/queues")
    await page.until("document.querySelectorAll('table.list tbody tr').length >= 8")
    await asyncio.sleep(6)  # the rates are computed from two samples, 5 s apart
    await page.shot(out / "queues.png")


async def parked(page: Page, base: str, out: Path) -> None:
    # Tall enough that the message is inside the viewport: capturing beyond it resizes the
    # window, and the page redraws without the message.
    await page.call(
        "Emulation.setDeviceMetricsOverride",
        width=1440,
        height=2600,
        deviceScaleFactor=1,
        mobile=False,
    )
    await page.call("Page.navigate", url=f"{base}/#/queues/%2F/mapper.orders.parked")
    await page.until("document.body.innerText.includes('Get messages')")
    # The page redraws itself every few seconds, which would wipe the message shown: its
    # timers are cleared first (the "Get messages" button works without them).
    await page.js(
        "const last = setTimeout(() => {}, 0);"
        "for (let id = 0; id <= last; id++) { clearTimeout(id); clearInterval(id); } true"
    )
    await page.js(
        "const section = [...document.querySelectorAll('h2')]"
        ".find(h => h.innerText.includes('Get messages'));"
        "section.click(); true"
    )
    await page.until("!!document.querySelector('input[value=\"Get Message(s)\"]')")
    await page.js("document.querySelector('input[value=\"Get Message(s)\"]').click(); true")
    await page.until("document.body.innerText.includes('x-error-reason')")
    # From the "Get messages" section down to the end of the message, headers included.
    top = await page.js(
        "[...document.querySelectorAll('h2')].find(h => h.innerText.includes('Get messages'))"
        ".getBoundingClientRect().top + window.scrollY"
    )
    bottom = await page.js(
        "[...document.querySelectorAll('td, th')].filter(e => e.innerText.includes("
        "'x-error-reason')).pop().closest('table').parentElement.closest('table')"
        ".getBoundingClientRect().bottom + window.scrollY"
    )
    await asyncio.sleep(1.0)  # let the page paint what it just drew
    await page.shot(out / "parked-message.png", clip=(float(top) - 10, float(bottom) + 10))


async def _stock_check_on(database_url: str) -> int:
    """Turn the stock check on for the first demo store: its orders are rejected and parked."""
    for _ in range(600):
        with contextlib.suppress(asyncpg.PostgresError, OSError):
            conn = await asyncpg.connect(database_url)
            try:
                store = await conn.fetchval("SELECT min(store_id) FROM ingest.stores")
                if store is not None:
                    await conn.execute(
                        "INSERT INTO mapper.store_settings (store_id, stock_check)"
                        " VALUES ($1, true)"
                        " ON CONFLICT (store_id) DO UPDATE SET stock_check = true",
                        store,
                    )
                    return int(store)
            finally:
                await conn.close()
        await asyncio.sleep(0.1)
    raise TimeoutError("no demo store connected")


async def _parked_count(base: str) -> int:
    async with (
        aiohttp.ClientSession(auth=aiohttp.BasicAuth("guest", "guest")) as http,
        http.get(f"{base}/api/queues/%2F/mapper.orders.parked") as reply,
    ):
        if reply.status != 200:
            return 0
        return int((await reply.json()).get("messages", 0))


async def run(out: Path, orders: int) -> None:
    database = f"nuvem_ledger_shots_{secrets.token_hex(4)}"
    with RabbitNode(management=True, prefix="shots") as node:
        base = f"http://127.0.0.1:{node.management_port}"
        database_url = f"{PG}/{database}"
        env = os.environ | {
            "AMQP_URL": f"amqp://guest:guest@127.0.0.1:{node.amqp_port}/",
            "DATABASE_URL": database_url,
            "TOKEN_ENCRYPTION_KEY": generate_key(),
            "CONNECT_LINK_SECRET": secrets.token_urlsafe(32),
            "LOG_LEVEL": "WARNING",
        }
        demo = await asyncio.create_subprocess_exec(
            str(Path(sys.executable).parent / "nuvem-ledger"),
            "demo",
            "--orders",
            str(orders),
            env=env,
            cwd=ROOT,
        )
        try:
            store = await _stock_check_on(database_url)
            print(f"stock check on for store {store}", file=sys.stderr)
            for _ in range(600):
                if await _parked_count(base) >= 3:
                    break
                await asyncio.sleep(0.1)
            async with chromium() as page:
                await login(page, base)
                await queues(page, base, out)
                await parked(page, base, out)
        finally:
            if demo.returncode is None:
                demo.terminate()
            await demo.wait()
            admin = await asyncpg.connect(f"{PG}/postgres")
            try:
                await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
            finally:
                await admin.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "img")
    parser.add_argument("--orders", type=int, default=600)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    asyncio.run(run(args.out, args.orders))


if __name__ == "__main__":
    main()
