"""The ``nuvem-ledger`` command: run services, migrate, operate, demo.

The one module allowed to import several services (services never import each other). Results
go to stdout (``--json`` for machines, text for people); logs go to stderr, except under
``run``, where the services' structured logs are the output and go to stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from pydantic import ValidationError

from services import ops, system
from services.cliutil import CommandError, Parser, database, emit, money, parse_when
from shared.logging import configure_logging
from shared.settings import Settings

SERVICES = ("ingest", "mapper", "ledger")


def _factories() -> dict[str, Any]:
    return system.factories()


def _json_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


def build_parser() -> argparse.ArgumentParser:  # noqa: PLR0915 - one statement per option
    parser = Parser(
        prog="nuvem-ledger", description="Nuvemshop paid orders into the ERP, exactly once."
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

    run = sub.add_parser("run", help="run one service, or all three in one process")
    run.add_argument("service", choices=[*SERVICES, "all"])
    _json_flag(
        sub.add_parser("migrate", help="create the database if missing and apply the schema")
    )

    integ = sub.add_parser("integration", help="store connections").add_subparsers(
        dest="action", required=True, parser_class=Parser
    )
    connect = integ.add_parser("connect", help="connect a store without the OAuth screen")
    connect.add_argument("--store-id", type=int, required=True)
    connect.add_argument("--access-token", required=True)
    connect.add_argument(
        "--user", required=True, help="the activating ERP user (the sales' seller)"
    )
    connect.add_argument("--activated-at", type=parse_when, help="ISO 8601 (default: now)")
    for name in ("show", "enable", "disable"):
        cmd = integ.add_parser(name)
        cmd.add_argument("store_id", type=int)
        _json_flag(cmd)
    _json_flag(connect)
    _json_flag(integ.add_parser("list"))

    catalog = sub.add_parser("catalog", help="the ERP's products and customers").add_subparsers(
        dest="action", required=True, parser_class=Parser
    )
    product = catalog.add_parser("add-product")
    product.add_argument("--store-id", type=int, required=True)
    product.add_argument("--description", required=True)
    product.add_argument("--price", type=money, required=True)
    product.add_argument("--sku")
    product.add_argument("--stock", type=int, default=0)
    _json_flag(product)
    customer = catalog.add_parser("add-customer")
    customer.add_argument("--store-id", type=int, required=True)
    customer.add_argument("--name", required=True)
    customer.add_argument("--document")
    customer.add_argument("--mobile-phone")
    customer.add_argument("--business-phone")
    _json_flag(customer)

    settings = sub.add_parser("settings", help="store settings").add_subparsers(
        dest="action", required=True, parser_class=Parser
    )
    setter = settings.add_parser("set")
    setter.add_argument("--store-id", type=int, required=True)
    setter.add_argument("name", choices=["stock-check"])
    setter.add_argument("value", choices=["on", "off"])
    _json_flag(setter)

    orders = sub.add_parser("orders", help="orders that could not be imported").add_subparsers(
        dest="action", required=True, parser_class=Parser
    )
    rejected = orders.add_parser("rejected")
    rejected.add_argument("--store-id", type=int)
    _json_flag(rejected)
    retry = orders.add_parser("retry")
    retry.add_argument("--store-id", type=int, required=True)
    which = retry.add_mutually_exclusive_group(required=True)
    which.add_argument("--order-id", type=int)
    which.add_argument("--all", action="store_true")
    _json_flag(retry)

    dead = sub.add_parser("dead", help="dead-lettered and parked messages").add_subparsers(
        dest="action", required=True, parser_class=Parser
    )
    dead_list = dead.add_parser("list")
    dead_list.add_argument("queue", help="e.g. mapper.orders.dead or mapper.orders.parked")
    _json_flag(dead_list)
    dead_replay = dead.add_parser("replay")
    dead_replay.add_argument("queue")
    pick = dead_replay.add_mutually_exclusive_group(required=True)
    pick.add_argument("--all", action="store_true")
    pick.add_argument("--message-id")
    _json_flag(dead_replay)

    sales = sub.add_parser("sales", help="sales as the ledger holds them").add_subparsers(
        dest="action", required=True, parser_class=Parser
    )
    sale_show = sales.add_parser("show")
    sale_show.add_argument("--store-id", type=int, required=True)
    sale_show.add_argument("--order-id", type=int, required=True)
    _json_flag(sale_show)
    recv = sub.add_parser("receivables", help="accounts receivable").add_subparsers(
        dest="action", required=True, parser_class=Parser
    )
    recv_list = recv.add_parser("list")
    recv_list.add_argument("--store-id", type=int, required=True)
    recv_list.add_argument("--status", choices=["open", "cancelled", "paid"])
    _json_flag(recv_list)

    back = sub.add_parser("backfill", help="import paid orders of an explicit (older) date range")
    back.add_argument("--store-id", type=int, required=True)
    back.add_argument("--since", type=parse_when, required=True, help="ISO 8601 date or datetime")
    back.add_argument("--until", type=parse_when, help="ISO 8601 (default: now)")
    _json_flag(back)

    demo = sub.add_parser("demo", help="run the whole system against the simulator and show it")
    demo.add_argument("--orders", type=int, default=60, help="paid orders to send (default 60)")
    demo.add_argument("--stores", type=int, default=2, help="simulated stores (default 2)")
    _json_flag(demo)
    bench = sub.add_parser(
        "bench", help="measure every path on this machine (see docs/performance.md)"
    )
    bench.add_argument("--quick", action="store_true", help="small sizes: a smoke test")
    _json_flag(bench)
    sim = sub.add_parser("simulate", help="run the Nuvemshop simulator", add_help=False)
    sim.add_argument("sim_args", nargs=argparse.REMAINDER)
    return parser


def _integration_text(row: dict[str, Any]) -> str:
    state = "enabled" if row["enabled"] else f"disabled ({row['disabled_reason']})"
    return (
        f"store {row['store_id']}: {state}; activated {row['activated_at']} by {row['activated_by']}; "
        f"last sync {row['last_synced_at'] or 'never'}; imported {row['imported']}, "
        f"rejected {row['rejected']}, pending {row['pending']}"
    )


def _rows_text(
    rows: list[dict[str, Any]], render: Callable[[dict[str, Any]], str], empty: str
) -> str:
    return "\n".join(render(r) for r in rows) if rows else empty


async def _with_broker(settings: Settings, work: Callable[[Any], Awaitable[Any]]) -> Any:
    from shared.messaging import Broker

    broker = Broker(settings.amqp_url, app_id="nuvem-ledger-cli")
    try:
        await broker.connect(deadline=10)
    except (OSError, TimeoutError, ConnectionError) as exc:
        raise CommandError(f"broker unreachable at AMQP_URL: {exc}") from exc
    try:
        return await work(broker)
    finally:
        await broker.close()


async def _connect(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    import aiohttp

    from services.ingest.adapters.nuvemshop import NuvemshopClient
    from services.ingest.connections import connect
    from services.ingest.tokens import TokenKeyError, cipher_from_settings

    try:
        cipher = cipher_from_settings(settings)
    except TokenKeyError as exc:
        raise CommandError(str(exc)) from exc
    async with database(settings) as pool, aiohttp.ClientSession() as session:
        client = NuvemshopClient(
            session,
            api_url=settings.nuvemshop_api_url,
            token_header=settings.nuvemshop_token_header,
            user_agent=settings.nuvemshop_user_agent,
            max_retries=1,
        )
        done = await connect(
            pool,
            cipher,
            client,
            store_id=args.store_id,
            access_token=args.access_token,
            activated_by=args.user,
            public_url=settings.public_url(),
            activated_at=args.activated_at,
        )
        shown = await ops.integration_show(pool, args.store_id)
    if done.webhook_error:
        sys.stderr.write(
            f"warning: webhooks not registered ({done.webhook_error}); polling still imports\n"
        )
    return shown | {
        "created": done.created,
        "webhooks_registered": done.webhooks_registered,
        "webhook_error": done.webhook_error,
    }


def _progress_bar(done: int, total: int, width: int = 30) -> None:
    filled = width if total == 0 else min(width, width * done // max(total, 1))
    sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} orders")
    sys.stderr.flush()


async def _backfill(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    import datetime as dt

    import aiohttp

    from services.ingest.adapters import postgres as ingest_db
    from services.ingest.adapters.nuvemshop import NuvemshopClient
    from services.ingest.sync import backfill
    from services.ingest.tokens import TokenKeyError, cipher_from_settings

    until = args.until or dt.datetime.now(dt.UTC)
    if until <= args.since:
        raise CommandError("--until must be after --since")
    try:
        cipher = cipher_from_settings(settings)
    except TokenKeyError as exc:
        raise CommandError(str(exc)) from exc
    async with database(settings) as pool, aiohttp.ClientSession() as session:
        store = (await ingest_db.load_stores(pool, [args.store_id])).get(args.store_id)
        if store is None:
            raise CommandError(f"store {args.store_id} is not connected")
        if not store.enabled:
            raise CommandError(f"store {args.store_id} is disabled ({store.disabled_reason})")
        client = NuvemshopClient(
            session,
            api_url=settings.nuvemshop_api_url,
            token_header=settings.nuvemshop_token_header,
            user_agent=settings.nuvemshop_user_agent,
        )

        async def work(broker: Any) -> dict[str, Any]:
            result, total = await backfill(
                pool,
                broker,
                client,
                cipher,
                store,
                since=args.since,
                until=until,
                progress=lambda r, t: _progress_bar(r.orders_seen, t),
            )
            sys.stderr.write("\n")
            if result.outcome != "ok":
                raise CommandError(f"backfill stopped: the store answered {result.outcome}")
            return {
                "store_id": args.store_id,
                "since": args.since,
                "until": until,
                "matched": total,
                "seen": result.orders_seen,
                "imported": result.paid,
                "cancelled": result.cancelled,
                "invalid": result.invalid,
                "pages": result.pages,
            }

        return await _with_broker(settings, work)  # type: ignore[no-any-return]


async def _dispatch(args: argparse.Namespace, settings: Settings) -> None:
    cmd, action = args.command, getattr(args, "action", None)
    if cmd == "backfill":
        emit(
            args,
            await _backfill(args, settings),
            lambda r: (
                f"backfill of store {r['store_id']}: {r['imported']} order(s) imported "
                f"of {r['matched']} paid in range ({r['seen']} read, {r['pages']} page(s))"
            ),
        )
        return
    if cmd == "migrate":
        from shared.db import migrate

        applied = await migrate(settings.database_url, system.migrations())
        emit(args, {"applied": applied}, lambda r: f"migrations applied: {r['applied']}")
        return
    if cmd == "integration" and action == "connect":
        emit(args, await _connect(args, settings), _integration_text)
        return
    if cmd == "dead":
        from services import deadletters

        if action == "list":
            rows = await deadletters.list_messages(settings.amqp_url, args.queue)
            emit(
                args,
                rows,
                lambda rs: _rows_text(
                    rs,
                    lambda r: f"{r['message_id']}  {r['reason']}: {r['detail']}",
                    f"{args.queue}: empty",
                ),
            )
        else:
            rows = await deadletters.replay(
                settings.amqp_url, args.queue, message_id=args.message_id, replay_all=args.all
            )
            emit(args, rows, lambda rs: f"replayed {len(rs)} message(s) from {args.queue}")
        return
    async with database(settings) as pool:
        if cmd == "integration":
            if action == "show":
                emit(args, await ops.integration_show(pool, args.store_id), _integration_text)
            elif action == "list":
                rows = await ops.integration_rows(pool)
                emit(args, rows, lambda rs: _rows_text(rs, _integration_text, "no store connected"))
            else:
                enabled = action == "enable"
                row = await _with_broker(
                    settings,
                    lambda b: ops.integration_toggle(pool, b, args.store_id, enabled=enabled),
                )
                emit(args, row, _integration_text)
        elif cmd == "catalog" and action == "add-product":
            row = await ops.add_product(
                pool,
                store_id=args.store_id,
                description=args.description,
                price=args.price,
                sku=args.sku,
                stock=args.stock,
            )
            emit(args, row, lambda r: f"product {r['id']}: {r['description']} (stock {r['stock']})")
        elif cmd == "catalog":
            row = await ops.add_customer(
                pool,
                store_id=args.store_id,
                name=args.name,
                document=args.document,
                mobile_phone=args.mobile_phone,
                business_phone=args.business_phone,
            )
            emit(
                args,
                row,
                lambda r: (
                    f"customer {r['id']}: {r['name']}" + ("" if r["created"] else " (existing)")
                ),
            )
        elif cmd == "settings":
            row = await ops.set_stock_check(pool, args.store_id, on=args.value == "on")
            emit(
                args,
                row,
                lambda r: (
                    f"store {r['store_id']}: stock-check {'on' if r['stock_check'] else 'off'}"
                ),
            )
        elif cmd == "orders" and action == "rejected":
            rows = await ops.rejected_orders(pool, args.store_id)
            emit(
                args,
                rows,
                lambda rs: _rows_text(
                    rs,
                    lambda r: (
                        f"store {r['store_id']} order {r['order_id']}: {r['reason']}: {r['detail']}"
                    ),
                    "no rejected orders",
                ),
            )
        elif cmd == "orders":
            order_id = None if args.all else args.order_id
            rows = await _with_broker(
                settings,
                lambda b: ops.retry_orders(pool, b, store_id=args.store_id, order_id=order_id),
            )
            emit(args, rows, lambda rs: f"retried {len(rs)} order(s)")
        elif cmd == "sales":
            row = await ops.sale_show(pool, args.store_id, args.order_id)
            emit(
                args,
                row,
                lambda r: (
                    f"sale {r['sale_id']} ({r['status']}) order {r['order_id']} total {r['total']}: "
                    f"{len(r['receivables'])} receivable(s), {len(r['stock_movements'])} stock movement(s)"
                ),
            )
        elif cmd == "receivables":
            rows = await ops.receivables(pool, args.store_id, args.status)
            emit(
                args,
                rows,
                lambda rs: _rows_text(
                    rs,
                    lambda r: (
                        f"#{r['number']} order {r['order_id']} {r['amount']} due {r['due_date']} "
                        f"{r['method']} {r['status']}"
                    ),
                    "no receivables",
                ),
            )


def _run_services(names: list[str], settings: Settings) -> int:
    from services.ingest.tokens import TokenKeyError, cipher_from_settings
    from shared.runtime import run_until_signalled

    configure_logging(settings.log_level, settings.log_format)
    if "ingest" in names:
        try:
            cipher_from_settings(settings)
        except TokenKeyError as exc:
            sys.stderr.write(f"nuvem-ledger: error: {exc}\n")
            return 1
    factories = _factories()
    if settings.event_loop == "uvloop":
        # Measured with `nuvem-ledger bench` (docs/performance.md): the services spend much of
        # their time in the event loop and in socket writes, which uvloop does in C.
        import uvloop

        return uvloop.run(run_until_signalled(names, factories, settings))
    return asyncio.run(run_until_signalled(names, factories, settings))


def _run(coro: Coroutine[Any, Any, None]) -> None:
    asyncio.run(coro)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["simulate"]:
        # The simulator has its own options; argparse would try to read them here.
        from services.simulator.__main__ import main as simulate

        return simulate(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        settings = Settings()
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']).upper()}: {e['msg']}" for e in exc.errors()
        )
        sys.stderr.write(f"nuvem-ledger: error: bad configuration: {problems}\n")
        return 2
    if args.command == "run":
        return _run_services(list(SERVICES) if args.service == "all" else [args.service], settings)
    if args.command == "bench":
        import uvloop

        from services.bench.run import run_bench

        configure_logging("WARNING", "console", sys.stderr)
        # The load generator gets the same event loop as the services it measures.
        return uvloop.run(run_bench(settings, quick=args.quick, as_json=args.json))
    if args.command == "demo":
        from services.demo import run_demo

        return asyncio.run(
            run_demo(settings, orders=args.orders, stores=args.stores, as_json=args.json)
        )
    configure_logging(
        settings.log_level, "console" if settings.log_format == "console" else "json", sys.stderr
    )
    try:
        _run(_dispatch(args, settings))
    except CommandError as exc:
        sys.stderr.write(f"nuvem-ledger: error: {exc}\n")
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
