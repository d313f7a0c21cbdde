"""Prometheus metrics, one registry per service so ``run all`` serves three separate ``/metrics``."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


class ServiceMetrics:
    """The counters and histograms every service exports, labelled by queue and outcome."""

    def __init__(self, service: str) -> None:
        self.service = service
        self.registry = CollectorRegistry()
        self.messages = Counter(
            "nuvem_ledger_messages_total",
            "Messages consumed, by queue and outcome (processed, dead_lettered, requeued).",
            ["queue", "outcome"],
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "nuvem_ledger_batch_size",
            "Messages per consumed batch.",
            ["queue"],
            buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500),
            registry=self.registry,
        )
        self.batch_seconds = Histogram(
            "nuvem_ledger_batch_seconds",
            "Time to handle one batch (transaction and publish).",
            ["queue"],
            registry=self.registry,
        )
        self.published = Counter(
            "nuvem_ledger_published_total",
            "Messages published, by routing key.",
            ["routing_key"],
            registry=self.registry,
        )
        self.http_requests = Counter(
            "nuvem_ledger_http_requests_total",
            "HTTP requests by route and status.",
            ["route", "status"],
            registry=self.registry,
        )
        self.api_requests = Counter(
            "nuvem_ledger_nuvemshop_requests_total",
            "Requests made to the Nuvemshop API, by status.",
            ["status"],
            registry=self.registry,
        )

        self.task_restarts = Counter(
            "nuvem_ledger_task_restarts_total",
            "Restarts of supervised background tasks, by task.",
            ["task"],
            registry=self.registry,
        )
        self.ready = Gauge(
            "nuvem_ledger_ready",
            "1 when the service answers /readyz with 200, else 0 (updated on each probe).",
            registry=self.registry,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
