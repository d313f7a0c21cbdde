"""The services' subscriber declarations agree with the topology and with docs/asyncapi.yaml.

A message type is declared once, beside its handler (``shared.subscribers``): every routing key
declared on a queue must reach that queue (``shared/topology.py``) and be documented as consumed
there, and nothing may reach a consumed queue that no declaration handles (the consumer would
dead-letter it as ``unknown_message``). The check reads whatever the services declare.
"""

from __future__ import annotations

from typing import Any

import pytest

from services.system import SERVICES, factories
from shared.subscribers import Subscriber, registries, serves
from shared.topology import ERP_ROUTES, QUEUES, SHARD_ROUTES, QueueSpec
from tests.unit.test_asyncapi import CHANNELS, _block

factories()  # imports every service's composition root, and so its declarations
DECLARED: list[Subscriber[Any, Any]] = [
    s for r in registries() if r.service in SERVICES for s in r.declared
]


def _specs(queue: str) -> list[QueueSpec]:
    return [spec for spec in QUEUES if serves(queue, spec.name)]


def _reaching(spec: QueueSpec) -> set[str]:
    """The routing keys whose messages reach the queue."""
    keys = {key for _, key in spec.bindings}
    if spec.shard is not None:
        # A shard gets its stores' messages through the headers exchange, and the ERP's
        # decisions about sales not known yet as probes from ledger.erp.
        keys |= {key for _, key in SHARD_ROUTES} | {key for _, key in ERP_ROUTES}
    return keys


def test_every_service_declares_something() -> None:
    declaring = {r.service for r in registries() if r.declared and r.service in SERVICES}
    assert declaring >= {"ingest", "ledger"}


@pytest.mark.parametrize("declared", DECLARED, ids=lambda s: f"{s.routing_key}@{s.queues}")
def test_every_declared_routing_key_is_bound_to_its_queues(declared: Subscriber[Any, Any]) -> None:
    for queue in declared.queues:
        specs = _specs(queue)
        assert specs, f"{queue} is not a queue of shared/topology.py"
        for spec in specs:
            assert declared.routing_key in _reaching(spec), f"{declared.routing_key} -> {spec.name}"


@pytest.mark.parametrize("declared", DECLARED, ids=lambda s: f"{s.routing_key}@{s.queues}")
def test_every_declaration_is_documented(declared: Subscriber[Any, Any]) -> None:
    name = declared.model.__name__
    channel = " ".join(_block(CHANNELS, name[0].lower() + name[1:], 2))
    for queue in declared.queues:
        assert f"`{queue}`" in channel, f"docs/asyncapi.yaml: {name} consumed on {queue}"


@pytest.mark.parametrize("spec", [s for s in QUEUES if _reaching(s)], ids=lambda s: s.name)
def test_nothing_reaches_a_queue_that_no_declaration_handles(spec: QueueSpec) -> None:
    handled = {s.routing_key for s in DECLARED if s.serves(spec.name)}
    assert handled, f"nothing is declared on {spec.name}"
    assert _reaching(spec) <= handled, spec.name
