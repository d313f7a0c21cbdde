"""The alerts and the dashboard speak the metric contract of docs/metrics.md, in valid PromQL.

Every alert expression and every dashboard query is parsed with ``promql-parser`` (bindings of a
Rust PromQL parser that follows Prometheus' grammar); every metric it names must be in
docs/metrics.md (ours or RabbitMQ's) and every label it filters or groups on must be one of that
metric's documented labels or one Prometheus adds to every target. Every alert has a runbook
entry in docs/operations.md.
"""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path
from typing import Any

import promql_parser
import pytest

from tests.unit.test_deploy_k8s import objects

ROOT = Path(__file__).resolve().parents[2]
METRICS_DOC = ROOT / "docs" / "metrics.md"
OPERATIONS_DOC = ROOT / "docs" / "operations.md"

# Added by Prometheus (and the Prometheus Operator's ServiceMonitors) to every scraped series.
TARGET_LABELS = {"namespace", "service", "job", "pod", "container", "endpoint", "instance"}

# The application metrics the services promise (issue 14), with their types.
PROMISED = {
    "nuvem_ledger_webhooks_received_total": ("counter", {"event"}),
    "nuvem_ledger_orders_fetched_total": ("counter", {"via"}),
    "nuvem_ledger_orders_announced_total": ("counter", set()),
    "nuvem_ledger_orders_skipped_total": ("counter", {"reason"}),
    "nuvem_ledger_orders_imported_total": ("counter", set()),
    "nuvem_ledger_orders_rejected_total": ("counter", {"reason"}),
    "nuvem_ledger_sales_confirmed_total": ("counter", set()),
    "nuvem_ledger_confirmations_refused_total": ("counter", {"reason"}),
    "nuvem_ledger_webhook_to_pending_seconds": ("histogram", {"le"}),
    "nuvem_ledger_batch_size": ("histogram", {"queue", "le"}),
    "nuvem_ledger_nuvemshop_requests_total": ("counter", {"status"}),
    "nuvem_ledger_nuvemshop_throttled_total": ("counter", set()),
    "nuvem_ledger_nuvemshop_store_requests_total": ("counter", {"store_id", "status_class"}),
    "nuvem_ledger_outbox_backlog_rows": ("gauge", {"schema"}),
    "nuvem_ledger_outbox_oldest_age_seconds": ("gauge", {"schema"}),
    "nuvem_ledger_inbox_rows": ("gauge", {"schema"}),
    "nuvem_ledger_poll_lag_seconds": ("gauge", {"quantile"}),
    "nuvem_ledger_stores": ("gauge", {"state"}),
    "nuvem_ledger_integrations_disabled_total": ("counter", {"reason"}),
    "nuvem_ledger_task_restarts_total": ("counter", {"task"}),
    "nuvem_ledger_ready": ("gauge", set()),
    "nuvem_ledger_poll_interval_seconds": ("gauge", set()),
}

# What each alert of the brief must look at.
ALERTS = {
    "NuvemLedgerDeadLetters": {"rabbitmq_detailed_queue_messages"},
    "NuvemLedgerParkedOrdersGrowing": {"rabbitmq_detailed_queue_messages"},
    "NuvemLedgerStoreDisabled": {"nuvem_ledger_integrations_disabled_total"},
    "NuvemLedgerPollLagHigh": {
        "nuvem_ledger_poll_lag_seconds",
        "nuvem_ledger_poll_interval_seconds",
    },
    "NuvemLedgerNotReady": {"nuvem_ledger_ready"},
    "NuvemLedgerOutboxStuck": {"nuvem_ledger_outbox_oldest_age_seconds"},
    "NuvemLedgerNuvemshopThrottled": {"nuvem_ledger_nuvemshop_throttled_total"},
}


@functools.cache
def documented() -> dict[str, tuple[str, frozenset[str]]]:
    """Series name -> (type, labels), from the tables of docs/metrics.md (histograms expanded)."""
    found: dict[str, tuple[str, frozenset[str]]] = {}
    row = re.compile(r"^\| `([a-z_:][a-z0-9_:]*)` \| (counter|gauge|histogram) \|([^|]*)\|")
    for line in METRICS_DOC.read_text(encoding="utf-8").splitlines():
        match = row.match(line)
        if not match:
            continue
        name, kind, labels = match.groups()
        assert name not in found, f"{name} is listed twice"
        label_set = frozenset(re.findall(r"`([a-z_]+)`", labels))
        found[name] = (kind, label_set)
        if kind == "histogram":
            found[f"{name}_bucket"] = (kind, label_set)
            found[f"{name}_sum"] = (kind, label_set - {"le"})
            found[f"{name}_count"] = (kind, label_set - {"le"})
    return found


def test_metrics_doc_lists_every_promised_metric() -> None:
    for name, (kind, labels) in PROMISED.items():
        assert name in documented(), f"{name} is missing from docs/metrics.md"
        assert documented()[name] == (kind, frozenset(labels)), name


def test_metric_names_follow_prometheus_conventions() -> None:
    for name, (kind, _labels) in documented().items():
        assert re.fullmatch(r"(nuvem_ledger|rabbitmq_detailed)_[a-z0-9_]+", name), name
        base = re.sub(r"_(bucket|sum|count)$", "", name) if kind == "histogram" else name
        assert base.endswith("_total") == (kind == "counter"), name
        assert not re.search(r"_(ms|milliseconds|minutes|hours)(_|$)", base), f"{name}: base units"


def _label_names(expr: promql_parser.Expr) -> tuple[set[str], set[str]]:
    """(metric names, label names) an expression refers to."""
    names: set[str] = set()
    labels: set[str] = set()

    def visit(node: promql_parser.Expr) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            assert node.name, f"a selector without a metric name: {node}"
            names.add(node.name)
            labels.update(m.name for m in node.matchers.matchers if m.name != "__name__")
        elif isinstance(node, promql_parser.AggregateExpr) and node.modifier is not None:
            labels.update(node.modifier.labels)
        elif (
            isinstance(node, promql_parser.BinaryExpr) and node.modifier and node.modifier.matching
        ):
            labels.update(node.modifier.matching.labels)

    promql_parser.walk(expr, visit)
    return names, labels


def check_query(query: str, where: str) -> set[str]:
    """Parse a query and check its names against the contract; the metric names it uses."""
    try:
        expr = promql_parser.parse(query)
    except ValueError as exc:
        pytest.fail(f"{where}: not PromQL ({exc}): {query}")
    names, labels = _label_names(expr)
    unknown = names - set(documented())
    assert not unknown, f"{where}: metrics not in docs/metrics.md: {sorted(unknown)}"
    allowed = set(TARGET_LABELS)
    for name in names:
        allowed |= documented()[name][1]
    assert labels <= allowed, f"{where}: undocumented labels {sorted(labels - allowed)}"
    return names


def _rules() -> list[dict[str, Any]]:
    (rule,) = objects("production", "PrometheusRule")
    return [r for group in rule["spec"]["groups"] for r in group["rules"]]


def _alerts_section() -> str:
    text = OPERATIONS_DOC.read_text(encoding="utf-8")
    match = re.search(r"^## Alerts\n(.*?)(?=^## |\Z)", text, re.MULTILINE | re.DOTALL)
    assert match, 'docs/operations.md needs a section "## Alerts"'
    return match.group(1)


def test_every_alert_parses_and_names_only_contract_metrics() -> None:
    rules = _rules()
    assert {r["alert"] for r in rules} == set(ALERTS)
    for rule in rules:
        names = check_query(rule["expr"], rule["alert"])
        assert ALERTS[rule["alert"]] <= names, rule["alert"]
        if "for" in rule:
            assert promql_parser.parse_duration(rule["for"]).total_seconds() > 0
        assert rule["labels"]["severity"] in {"warning", "critical"}
        assert rule["annotations"]["summary"]


def test_alert_thresholds_are_the_promised_ones() -> None:
    rules = {r["alert"]: r for r in _rules()}
    assert promql_parser.parse_duration(rules["NuvemLedgerNotReady"]["for"]).total_seconds() == 300
    assert re.search(r"> 60\b", rules["NuvemLedgerOutboxStuck"]["expr"])
    assert re.search(r"> on \(namespace\) 2 \*", rules["NuvemLedgerPollLagHigh"]["expr"])
    assert 'queue="mapper.orders.parked"' in rules["NuvemLedgerParkedOrdersGrowing"]["expr"]
    dead = promql_parser.parse(rules["NuvemLedgerDeadLetters"]["expr"])
    regexes: list[str] = []
    promql_parser.walk(
        dead,
        lambda n: (
            regexes.extend(m.value for m in n.matchers.matchers if m.name == "queue")
            if isinstance(n, promql_parser.VectorSelector)
            else None
        ),
    )
    (regex,) = regexes
    for queue in ("mapper.orders.dead", "ledger.sales.3.dead", "mapper.orders.parked.dead"):
        assert re.fullmatch(regex, queue)
    for queue in ("mapper.orders", "mapper.orders.parked", "ledger.sales.dead-letters"):
        assert not re.fullmatch(regex, queue)


def test_every_alert_has_its_runbook_entry() -> None:
    headings = re.findall(r"^### (\S+)\s*$", _alerts_section(), re.MULTILINE)
    assert sorted(headings) == sorted(ALERTS), "one runbook entry per alert, no other"
    for rule in _rules():
        url = rule["annotations"]["runbook_url"]
        assert url.endswith(f"docs/operations.md#{rule['alert'].lower()}"), url


def _dashboard() -> dict[str, Any]:
    (config_map,) = [
        m for m in objects("production", "ConfigMap") if "grafana" in m["metadata"]["name"]
    ]
    dashboard: dict[str, Any] = json.loads(config_map["data"]["nuvem-ledger.json"])
    return dashboard


def _grafana_to_promql(query: str) -> str:
    # Grafana fills these in before Prometheus sees the query.
    query = re.sub(r"\$__\w+", "5m", query)
    return re.sub(r"\$\{?(\w+)\}?", "value", query)


def test_dashboard_queries_parse_and_name_only_contract_metrics() -> None:
    used: set[str] = set()
    panels = [p for p in _dashboard()["panels"] if p["type"] != "row"]
    assert panels
    for panel in panels:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            used |= check_query(_grafana_to_promql(target["expr"]), f"panel {panel['title']!r}")
    for variable in _dashboard()["templating"]["list"]:
        if variable["type"] == "query":
            match = re.fullmatch(r"label_values\((\w+), (\w+)\)", variable["definition"])
            assert match, variable["definition"]
            assert match.group(1) in documented()
    # The flow, rejections, latency, queue depths and dead letters, 429s, poll lag, outbox
    # backlog and task restarts are all on it.
    assert {
        "nuvem_ledger_webhooks_received_total",
        "nuvem_ledger_orders_announced_total",
        "nuvem_ledger_orders_imported_total",
        "nuvem_ledger_sales_confirmed_total",
        "nuvem_ledger_orders_rejected_total",
        "nuvem_ledger_webhook_to_pending_seconds_bucket",
        "rabbitmq_detailed_queue_messages",
        "nuvem_ledger_nuvemshop_throttled_total",
        "nuvem_ledger_poll_lag_seconds",
        "nuvem_ledger_outbox_backlog_rows",
        "nuvem_ledger_task_restarts_total",
    } <= used


def test_dashboard_layout_has_no_overlapping_panels() -> None:
    taken: set[tuple[int, int]] = set()
    for panel in _dashboard()["panels"]:
        pos = panel["gridPos"]
        assert pos["x"] + pos["w"] <= 24, panel["title"]
        cells = {(pos["x"] + dx, pos["y"] + dy) for dx in range(pos["w"]) for dy in range(pos["h"])}
        assert not cells & taken, f"{panel['title']} overlaps another panel"
        taken |= cells


def test_a_wrong_query_is_caught() -> None:
    with pytest.raises(AssertionError, match=r"not in docs/metrics\.md"):
        check_query("rate(nuvem_ledger_orders_imported[5m])", "typo")
    with pytest.raises(AssertionError, match="undocumented labels"):
        check_query('nuvem_ledger_ready{queue="x"}', "label")
    with pytest.raises(BaseException, match="not PromQL"):
        check_query("sum(rate(nuvem_ledger_ready[5m])", "syntax")
