"""Prometheus metrics, one registry per service so ``run all`` serves three separate ``/metrics``.

The names are a contract (``docs/metrics.md``; the alerts and the dashboard use them). Every
service exports the consumer, outbox, inbox and health families; each also exports its own
(ingest: webhooks, fetches, the Nuvemshop API and polling; the mapper: imports and rejections;
the ledger: confirmations and refusals). A service's own metrics exist on every instance, but
only its own are registered, so a service never exports another's at zero.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

# Stores that carry their own id in the per-store request counter; the rest are "other".
TOP_STORES = 20
LAG_QUANTILES = (0.5, 0.9, 0.99, 1.0)
_SERVICES = ("ingest", "mapper", "ledger")
# Webhook to pending sale: from well under a second (a quiet system) to minutes (a backlog).
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0)


def status_class(status: int | None) -> str:
    """``2xx``, ``4xx``, ``429``, ``5xx`` or ``error`` (no answer at all)."""
    if status is None:
        return "error"
    if status == 429:
        return "429"
    return f"{status // 100}xx"


class StoreRequests(Collector):
    """Requests per store by status class, with only the busiest ``top`` stores named.

    Every store is counted in memory (a few integers each); at a scrape the ``top`` stores by
    requests carry their id and every other store is summed under ``store_id="other"``, so the
    series stay bounded (``top`` + 1 per class) however many thousands of stores there are.
    """

    def __init__(self, top: int = TOP_STORES) -> None:
        self.top = top
        self._counts: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))

    def count(self, store_id: int, status: int | None) -> None:
        self._counts[store_id][status_class(status)] += 1

    def collect(self) -> Iterable[Metric]:
        family = CounterMetricFamily(
            "nuvem_ledger_nuvemshop_store_requests",
            "Requests to the Nuvemshop API per store (top-N stores by requests, else 'other'),"
            " by status class.",
            labels=["store_id", "status_class"],
        )
        busiest = sorted(self._counts, key=lambda s: -sum(self._counts[s].values()))
        named = set(busiest[: self.top])
        other: dict[str, int] = defaultdict(int)
        for store_id, classes in sorted(self._counts.items()):
            for klass, value in sorted(classes.items()):
                if store_id in named:
                    family.add_metric([str(store_id), klass], value)
                else:
                    other[klass] += value
        for klass, value in sorted(other.items()):
            family.add_metric(["other", klass], value)
        yield family


def quantiles(values: Sequence[float], qs: Sequence[float] = LAG_QUANTILES) -> dict[float, float]:
    """Nearest-rank quantiles of ``values`` (0 for every quantile when there are none)."""
    ordered = sorted(values)
    if not ordered:
        return dict.fromkeys(qs, 0.0)
    found = {}
    for q in qs:
        rank = max(1, -(-round(q * 1000) * len(ordered) // 1000))  # ceil(q * n), in ‰: exact
        found[q] = ordered[min(rank, len(ordered)) - 1]
    return found


class ServiceMetrics:
    """The counters, gauges and histograms a service exports."""

    def __init__(self, service: str) -> None:
        self.service = service
        self.registry = CollectorRegistry()
        # A service's own families exist everywhere but are registered only where they are its.
        own = {name: self.registry if service == name else None for name in _SERVICES}
        self._declare_consumers(self.registry)
        self._declare_health(self.registry)
        self._declare_intake(own["ingest"])
        self._declare_polling(own["ingest"])
        self._declare_mapper(own["mapper"])
        self._declare_ledger(own["ledger"])
        if own["ingest"] is not None:
            # Known label values start at zero, so a rate() sees the first increment.
            for via in ("webhook", "poll", "backfill"):
                self.orders_fetched.labels(via)
            for reason in ("not_paid", "before_activation", "store_disabled"):
                self.orders_skipped.labels(reason)
            for reason in ("credentials_revoked", "app_uninstalled", "switched_off"):
                self.integrations_disabled.labels(reason)
            self.set_poll_lag([])

    def _declare_consumers(self, registry: CollectorRegistry) -> None:
        """Every service: its consumers, outbox and inbox."""
        self.messages = Counter(
            "nuvem_ledger_messages_total",
            "Messages consumed, by queue and outcome (processed, dead_lettered, requeued).",
            ["queue", "outcome"],
            registry=registry,
        )
        self.batch_size = Histogram(
            "nuvem_ledger_batch_size",
            "Messages per consumed batch.",
            ["queue"],
            buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500),
            registry=registry,
        )
        self.batch_seconds = Histogram(
            "nuvem_ledger_batch_seconds",
            "Time to handle one batch (transaction and publish).",
            ["queue"],
            registry=registry,
        )
        self.published = Counter(
            "nuvem_ledger_published_total",
            "Messages published, by routing key.",
            ["routing_key"],
            registry=registry,
        )
        self.outbox_rows = Gauge(
            "nuvem_ledger_outbox_backlog_rows",
            "Rows in the service's outbox not yet confirmed by RabbitMQ.",
            ["schema"],
            registry=registry,
        )
        self.outbox_age = Gauge(
            "nuvem_ledger_outbox_oldest_age_seconds",
            "Age of the oldest row in the service's outbox (0 when empty).",
            ["schema"],
            registry=registry,
        )
        self.inbox_rows = Gauge(
            "nuvem_ledger_inbox_rows",
            "Consumed message ids remembered (kept INBOX_RETENTION_DAYS).",
            ["schema"],
            registry=registry,
        )

    def _declare_health(self, registry: CollectorRegistry) -> None:
        """Every service: HTTP, supervised tasks, readiness."""
        self.http_requests = Counter(
            "nuvem_ledger_http_requests_total",
            "HTTP requests by route and status.",
            ["route", "status"],
            registry=registry,
        )
        self.task_restarts = Counter(
            "nuvem_ledger_task_restarts_total",
            "Restarts of supervised background tasks, by task.",
            ["task"],
            registry=registry,
        )
        self.ready = Gauge(
            "nuvem_ledger_ready",
            "1 when the service answers /readyz with 200, else 0 (updated on each probe).",
            registry=registry,
        )

    def _declare_intake(self, registry: CollectorRegistry | None) -> None:
        """Ingest: webhooks, and the orders it reads, announces or skips."""
        self.webhooks_received = Counter(
            "nuvem_ledger_webhooks_received_total",
            "Nuvemshop webhooks accepted (signature valid, queued), by event.",
            ["event"],
            registry=registry,
        )
        self.orders_fetched = Counter(
            "nuvem_ledger_orders_fetched_total",
            "Orders read from the Nuvemshop API, by how (webhook, poll, backfill).",
            ["via"],
            registry=registry,
        )
        self.orders_announced = Counter(
            "nuvem_ledger_orders_announced_total",
            "order.paid messages published (each paid order once).",
            registry=registry,
        )
        self.orders_skipped = Counter(
            "nuvem_ledger_orders_skipped_total",
            "Orders not announced, by reason (not_paid, before_activation, store_disabled).",
            ["reason"],
            registry=registry,
        )

    def _declare_polling(self, registry: CollectorRegistry | None) -> None:
        """Ingest: the Nuvemshop API, polling, the stores and their switch-offs."""
        self.api_requests = Counter(
            "nuvem_ledger_nuvemshop_requests_total",
            "Requests made to the Nuvemshop API, by status ('error': no answer).",
            ["status"],
            registry=registry,
        )
        self.api_throttled = Counter(
            "nuvem_ledger_nuvemshop_throttled_total",
            "Nuvemshop API requests answered 429.",
            registry=registry,
        )
        self.store_requests = StoreRequests()
        if registry is not None:
            registry.register(self.store_requests)
        self.poll_lag = Gauge(
            "nuvem_ledger_poll_lag_seconds",
            "Time since each enabled store was last polled, as quantiles over the stores.",
            ["quantile"],
            registry=registry,
        )
        self.poll_interval = Gauge(
            "nuvem_ledger_poll_interval_seconds",
            "The configured POLL_INTERVAL_SECONDS.",
            registry=registry,
        )
        self.stores = Gauge(
            "nuvem_ledger_stores",
            "Connected stores, by state (enabled, disabled).",
            ["state"],
            registry=registry,
        )
        self.polls = Counter(
            "nuvem_ledger_polls_total",
            "Store polls finished, by outcome (ok, revoked, suspended, unavailable, locked,"
            " disabled, failed).",
            ["outcome"],
            registry=registry,
        )
        self.integrations_disabled = Counter(
            "nuvem_ledger_integrations_disabled_total",
            "Integrations switched off, by reason.",
            ["reason"],
            registry=registry,
        )

    def _declare_mapper(self, registry: CollectorRegistry | None) -> None:
        """The mapper: imports, rejections, and how long a webhook took to become a sale."""
        self.orders_imported = Counter(
            "nuvem_ledger_orders_imported_total",
            "Pending sales created (sale.pending_review).",
            registry=registry,
        )
        self.orders_rejected = Counter(
            "nuvem_ledger_orders_rejected_total",
            "Orders that could not become a sale (sale.rejected), by reason.",
            ["reason"],
            registry=registry,
        )
        self.webhook_to_pending = Histogram(
            "nuvem_ledger_webhook_to_pending_seconds",
            "From a webhook's arrival at ingest to the sale.pending_review it led to.",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )

    def _declare_ledger(self, registry: CollectorRegistry | None) -> None:
        """The ledger: confirmations posted and ERP messages refused."""
        self.sales_confirmed = Counter(
            "nuvem_ledger_sales_confirmed_total",
            "Sales the ERP confirmed and the ledger posted (sale.confirmed).",
            registry=registry,
        )
        self.confirmations_refused = Counter(
            "nuvem_ledger_confirmations_refused_total",
            "ERP messages answered with sale.confirmation_refused, by reason.",
            ["reason"],
            registry=registry,
        )

    def api_answer(self, store_id: int | None, status: int | None) -> None:
        """One attempt at the Nuvemshop API: its status (``None``: no answer came)."""
        self.api_requests.labels("error" if status is None else str(status)).inc()
        if status == 429:
            self.api_throttled.inc()
        if store_id is not None:
            self.store_requests.count(store_id, status)

    def set_poll_lag(self, lags: Sequence[float]) -> None:
        for q, value in quantiles(lags).items():
            self.poll_lag.labels(_quantile_label(q)).set(value)

    def render(self) -> bytes:
        return generate_latest(self.registry)


def _quantile_label(q: float) -> str:
    return "1" if q == 1.0 else str(q)
