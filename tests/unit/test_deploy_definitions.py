"""deploy/rabbitmq/definitions.json describes exactly the topology the services declare.

RabbitMQ refuses a redeclaration whose arguments differ from the queue it holds, so a broker
pre-loaded from this file and the code's ``shared.topology`` must never drift apart.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from shared.contracts import ALL_MESSAGES, EXCHANGES
from shared.topology import QUEUES, SHARD_EXCHANGE, SHARD_ROUTES, shard_binding

DEFINITIONS = Path(__file__).resolve().parents[2] / "deploy" / "rabbitmq" / "definitions.json"
VHOST = "/"


def _definitions() -> dict[str, Any]:
    data = json.loads(DEFINITIONS.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def _expected_queues() -> dict[str, dict[str, Any]]:
    queues: dict[str, dict[str, Any]] = {}
    for spec in QUEUES:
        queues[spec.name] = spec.arguments()
        if spec.dead_letter:
            # Declared by shared.messaging.declare_topology with these arguments only.
            queues[spec.dead_name] = {"x-queue-type": "quorum"}
    return queues


def test_only_known_sections() -> None:
    # Users and permissions live in compose-users.json (development only), never here.
    assert set(_definitions()) <= {"vhosts", "exchanges", "queues", "bindings"}
    assert _definitions()["vhosts"] == [{"name": VHOST}]


def test_exchanges_match_contracts() -> None:
    exchanges = _definitions()["exchanges"]
    assert sorted(e["name"] for e in exchanges) == sorted([*EXCHANGES, SHARD_EXCHANGE])
    for exchange in exchanges:
        assert exchange == {
            "name": exchange["name"],
            "vhost": VHOST,
            "type": "headers" if exchange["name"] == SHARD_EXCHANGE else "topic",
            "durable": True,
            "auto_delete": False,
            "internal": False,
            "arguments": {},
        }


def test_queues_match_topology_exactly() -> None:
    queues = _definitions()["queues"]
    names = [q["name"] for q in queues]
    assert len(names) == len(set(names)), "a queue is listed twice"
    declared = {q["name"]: q["arguments"] for q in queues}
    # Dict equality compares values with their types: 20 and "20" differ, as they do for RabbitMQ.
    assert declared == _expected_queues()
    for queue in queues:
        assert queue["vhost"] == VHOST
        assert queue["durable"] is True
        assert queue["auto_delete"] is False
        assert isinstance(queue["arguments"].get("x-delivery-limit", 0), int)


def test_bindings_match_topology() -> None:
    bindings = [b for b in _definitions()["bindings"] if b["source"] != SHARD_EXCHANGE]
    found = sorted(
        (b["source"], b["routing_key"], b["destination"])
        for b in bindings
        if b["vhost"] == VHOST and b["arguments"] == {}
    )
    assert len(found) == len(bindings), "every binding is on vhost / without arguments"
    expected = sorted((ex, key, spec.name) for spec in QUEUES for ex, key in spec.bindings)
    expected += [(ex, key, SHARD_EXCHANGE) for ex, key in SHARD_ROUTES]
    assert found == sorted(expected)
    kinds = {b["destination"]: b["destination_type"] for b in bindings}
    assert {d for d, kind in kinds.items() if kind == "exchange"} == {SHARD_EXCHANGE}


def test_shards_are_bound_by_their_header() -> None:
    shards = [b for b in _definitions()["bindings"] if b["source"] == SHARD_EXCHANGE]
    found = sorted((b["destination"], b["destination_type"], b["arguments"]) for b in shards)
    expected = [
        ("queue", spec.name, shard_binding(spec.shard)) for spec in QUEUES if spec.shard is not None
    ]
    assert found == sorted((name, kind, args) for kind, name, args in expected)


def test_bindings_name_real_messages() -> None:
    # A binding for a routing key no message model has would be a typo that silently drops
    # messages; every message the ERP sends us must reach a queue.
    bound = {
        (b["source"], b["routing_key"])
        for b in _definitions()["bindings"]
        if b["source"] != SHARD_EXCHANGE  # a headers exchange: no routing key
    }
    messages = {(m.exchange, m.routing_key) for m in ALL_MESSAGES}
    assert bound <= messages
    assert {
        (m.exchange, m.routing_key) for m in ALL_MESSAGES if m.exchange == "erp.events"
    } <= bound
