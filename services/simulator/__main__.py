"""Command line of the Nuvemshop simulator: `python -m services.simulator [--port 8090] ...`
serves the store API, the OAuth install and the `/_sim/` control API until SIGINT or SIGTERM,
printing one line with its base URL once it listens (port 0 picks a free port). `--seed-store
STORE_ID[:TOKEN]` (repeatable) installs stores at start, each with `--seed-orders` paid orders.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

from services.simulator.runner import Running, start_simulator
from services.simulator.state import SimState

__all__ = ["Running", "main", "start_simulator"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m services.simulator", description="Nuvemshop (Tiendanube) API simulator"
    )
    add = parser.add_argument
    add("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    add("--port", type=int, default=8090, help="port; 0 picks a free one (default 8090)")
    add("--app-id", default="1234", help="the app id, also the OAuth client_id")
    add("--client-secret", default="sim-client-secret", help="signs webhooks, checks OAuth")
    add(
        "--redirect-url",
        default="http://127.0.0.1:8080/oauth/nuvemshop/callback",
        help="where the simulated approval redirects with ?code=&state=",
    )
    add("--token-header", default="Authentication", help="header carrying 'bearer <token>'")
    add("--no-rate-limit", action="store_true", help="never answer 429")
    add("--bucket-size", type=int, default=40, help="leaky bucket burst (default 40)")
    add("--leak-per-s", type=float, default=2.0, help="leaky bucket drain (default 2/s)")
    add("--time-scale", type=float, default=1.0, help="multiplies webhook retry waits")
    add("--allow-http-webhooks", action="store_true", help="accept http:// on any host")
    add("--strict-last-page", action="store_true", help="404 past the last page, not []")
    add("--seed", type=int, default=None, help="seed for generated data")
    add(
        "--seed-store",
        action="append",
        default=[],
        metavar="STORE_ID[:TOKEN]",
        help="install a store at start (repeatable)",
    )
    add("--seed-orders", type=int, default=0, metavar="N", help="paid orders per seeded store")
    return parser


def _seed(state: SimState, specs: list[str], orders: int) -> None:
    for spec in specs:
        raw_id, _, token = spec.partition(":")
        store_id = int(raw_id)
        state.add_store(store_id, token or None)
        if orders:
            state.add_orders(store_id, orders, paid=True)


async def _serve(args: argparse.Namespace, state: SimState) -> None:
    running = await start_simulator(
        state,
        args.host,
        args.port,
        rate_limit=not args.no_rate_limit,
        bucket_size=args.bucket_size,
        leak_per_s=args.leak_per_s,
        token_header=args.token_header,
        time_scale=args.time_scale,
        allow_http_webhooks=args.allow_http_webhooks,
        strict_last_page=args.strict_last_page,
        seed=args.seed,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print(f"nuvemshop simulator listening on {running.url}", flush=True)
    for store_id, store in state.stores.items():
        print(f"store {store_id} token {store.token}", flush=True)
    try:
        await stop.wait()
    finally:
        await running.close()


def main(argv: list[str] | None = None) -> int:
    """Run the simulator until SIGINT/SIGTERM; 0 on a clean stop, 1 when it cannot listen,
    2 on bad arguments."""
    args = _parser().parse_args(argv)
    state = SimState(
        seed=args.seed,
        app_id=args.app_id,
        client_secret=args.client_secret,
        redirect_url=args.redirect_url,
    )
    try:
        _seed(state, args.seed_store, args.seed_orders)
    except ValueError as exc:
        print(f"error: bad --seed-store: {exc}", file=sys.stderr)
        return 2
    try:
        asyncio.run(_serve(args, state))
    except OSError as exc:
        print(f"error: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
