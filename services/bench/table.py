"""The bench's figures as a table; every path's rate as a ratio to the two-hop batched floor."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

Row = tuple[str, str, float | None]


def _rate(name: str, value: float, unit: str, floor: float | None) -> Row:
    return (name, f"{value:.0f} {unit}", value / floor if floor else None)


def _plain(name: str, figure: str) -> Row:
    return (name, figure, None)


def _rss(r: dict[str, Any], key: str, *, required: bool = False) -> str:
    table = r[key] if required else (r.get(key) or {})
    return " / ".join(f"{table[n]:.0f}" for n in sorted(table, key=_service_order)) + " MB"


def _service_order(name: str) -> tuple[int, str]:
    return (("ingest", "mapper").index(name) if name in ("ingest", "mapper") else 2, name)


def render_table(r: dict[str, Any]) -> str:
    """Every figure ``r`` holds (a run of some phases only leaves the others out)."""
    floor = r.get("floor_two_hop_batched_per_s")
    names = " / ".join(sorted(r.get("rss_mb") or {}, key=_service_order))
    makers: list[Callable[[], Row]] = [
        lambda: _rate("(a) poll path", r["poll_orders_per_s"], "orders/s", floor),
        lambda: _rate("(b) webhooks accepted", r["webhook_accepted_per_s"], "/s", floor),
        lambda: _plain(
            "(b) accept latency p50 / p99",
            f"{r['webhook_accept_p50_ms']:.1f} / {r['webhook_accept_p99_ms']:.1f} ms",
        ),
        lambda: _rate("(b) webhook path", r["webhook_orders_per_s"], "orders/s", floor),
        lambda: _plain("(b) 429s from the simulator", f"{r['throttled_429']:.0f}"),
        lambda: _rate("(b') paced webhooks accepted", r["paced_accept_rate_per_s"], "/s", floor),
        lambda: _plain(
            "(b') paced accept p50 / p99",
            f"{r['paced_accept_p50_ms']:.1f} / {r['paced_accept_p99_ms']:.1f} ms",
        ),
        lambda: _plain(
            "(b') probes: broker confirm / ingest /healthz p50 / p99",
            f"{r['probe_confirm_p50_ms']:.0f}/{r['probe_confirm_p99_ms']:.0f},"
            f" {r['probe_ingest_healthz_p50_ms']:.0f}/{r['probe_ingest_healthz_p99_ms']:.0f} ms",
        ),
        lambda: _rate("(c) confirmations", r["confirmations_per_s"], "/s", floor),
        lambda: _plain(
            "(d) steady, 10 stores: p50 / p99",
            f"{r['steady_p50_ms']:.0f} / {r['steady_p99_ms']:.0f} ms",
        ),
        lambda: _plain(
            f"(d') steady, {r['sizes']['many_stores']} stores: p50 / p99",
            f"{r['steady_many_stores_p50_ms']:.0f} / {r['steady_many_stores_p99_ms']:.0f} ms",
        ),
        lambda: _plain(
            "(d') p99 of its legs: to order.paid / to pending",
            f"{r['steady_many_stores_ingest_p99_ms']:.0f} / "
            f"{r['steady_many_stores_mapper_p99_ms']:.0f} ms",
        ),
        lambda: _plain(
            f"(h) flash sale, {r['flash_sale_orders']:.0f} orders",
            f"{r['flash_sale_seconds']:.1f} s",
        ),
        lambda: _plain(
            "(h) flash sale API requests / 429s",
            f"{r['flash_sale_requests']:.0f} / {r['flash_sale_429']:.0f}",
        ),
        lambda: _plain("(i) stores connected", f"{r['stores_connected']}"),
        lambda: _plain(
            "(i) first poll of all / poll cycle",
            f"{r['stores_first_poll_seconds']:.1f} / {r['poll_cycle_seconds']:.1f} s",
        ),
        lambda: _plain(
            f"(i) requests/store per {r['poll_interval_seconds']:.0f} s",
            f"{r['requests_per_store_per_interval']:.2f}",
        ),
        lambda: _plain(
            "(i) poll requests/s mean / max",
            f"{r['poll_requests_per_s_mean']:.1f} / {r['poll_requests_per_s_max']:.0f}",
        ),
        lambda: _plain(f"(i) RSS {names}", _rss(r, "rss_mb_stores", required=True)),
        lambda: _rate(
            "(e) floor, two-hop batched", r["floor_two_hop_batched_per_s"], "msgs/s", floor
        ),
        lambda: _rate("(e) floor, one hop batched", r["floor_batched_per_s"], "msgs/s", floor),
        lambda: _rate("(e) floor, one hop unbatched", r["floor_unbatched_per_s"], "msgs/s", floor),
        lambda: _plain(f"(f) peak RSS {names}", _rss(r, "rss_mb")),
        lambda: _rate(
            "(g) poll path, large catalog", r["poll_orders_per_s_large_catalog"], "orders/s", floor
        ),
        lambda: _plain("ledger replicas", f"{r['ledger_replicas']}"),
    ]
    rows: list[Row] = []
    for make in makers:
        with contextlib.suppress(KeyError, TypeError):
            rows.append(make())
    lines = [f"{'measure':<44} {'figure':>26} {'÷ floor':>8}", "-" * 80]
    for name, figure, ratio in rows:
        lines.append(f"{name:<44} {figure:>26} {'' if ratio is None else f'{ratio:.2f}':>8}")
    return "\n".join(lines)
