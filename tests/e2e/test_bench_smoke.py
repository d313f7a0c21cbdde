"""`nuvem-ledger bench --quick` runs end to end, as CI's smoke test of the benchmark.

No timing is asserted: figures depend on the machine. What is checked is that every phase ran
and reported every key the issue names, with plausible values (positive rates, zero 429s).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.e2e

KEYS = (
    "poll_orders_per_s",
    "webhook_accepted_per_s",
    "webhook_accept_p99_ms",
    "webhook_orders_per_s",
    "throttled_429",
    "confirmations_per_s",
    "steady_p50_ms",
    "steady_p99_ms",
    "floor_batched_per_s",
    "floor_unbatched_per_s",
    "rss_mb",
    "poll_orders_per_s_large_catalog",
    "steady_many_stores_p50_ms",
    "steady_many_stores_p99_ms",
    "steady_many_stores_ingest_p99_ms",
    "steady_many_stores_mapper_p99_ms",
    "flash_sale_seconds",
    "flash_sale_requests",
    "flash_sale_429",
    "stores_connected",
    "poll_cycle_seconds",
    "ledger_replicas",
    "floor_two_hop_batched_per_s",
)


@pytest.mark.timeout(900)
def test_quick_bench_reports_every_figure() -> None:
    env = {k: v for k, v in os.environ.items() if k not in {"BENCH_PROFILE"}}
    done = subprocess.run(
        [sys.executable, "-m", "services.cli", "bench", "--quick", "--json"],
        capture_output=True,
        text=True,
        timeout=850,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    figures = json.loads(done.stdout)
    missing = [k for k in KEYS if k not in figures]
    assert not missing, missing
    for key in KEYS:
        if key not in {"rss_mb", "throttled_429", "flash_sale_429"}:
            assert figures[key] > 0, (key, figures[key])
    assert figures["throttled_429"] == 0
    assert set(figures["rss_mb"]) == {"ingest", "mapper", "ledger", "ledger-2"}
    assert all(mb > 0 for mb in figures["rss_mb"].values())
    assert "(a) poll path" in done.stderr  # progress is shown while it runs
