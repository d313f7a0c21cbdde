"""docs/asyncapi.yaml documents every message of shared/contracts.py, field for field.

No YAML parser is a dependency of the project, so these checks read the document as indented
text. They rely on its layout: two spaces per level, one key per line, block lists. A message
model, a field, a routing key or a queue added in the code without its documentation fails here.
"""

from __future__ import annotations

import datetime as dt
import re
import typing
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from pydantic import AwareDatetime, BaseModel

from shared.contracts import ALL_MESSAGES, EXCHANGES, Message
from shared.topology import DELIVERY_LIMIT, QUEUES, SHARD_ROUTES

DOC_PATH = Path(__file__).resolve().parents[2] / "docs" / "asyncapi.yaml"
LINES = DOC_PATH.read_text(encoding="utf-8").splitlines()
ERP_EXCHANGE = "erp.events"


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _block(lines: list[str], key: str, indent: int) -> list[str]:
    """The lines under the mapping key ``key`` written at ``indent`` spaces (its value block)."""
    head = " " * indent + key + ":"
    for number, line in enumerate(lines):
        if line == head or line.startswith(head + " "):
            body: list[str] = []
            for following in lines[number + 1 :]:
                content = following.strip()
                if content and not content.startswith("#") and _indent(following) <= indent:
                    break
                body.append(following)
            return body
    raise AssertionError(f"docs/asyncapi.yaml: no {key!r} at indent {indent}")


def _keys(lines: list[str], indent: int) -> set[str]:
    pattern = re.compile("^" + " " * indent + r"([A-Za-z_][\w.-]*):")
    return {m.group(1) for line in lines if (m := pattern.match(line))}


def _list_items(lines: list[str], indent: int) -> set[str]:
    pattern = re.compile("^" + " " * indent + r"- (\S+)$")
    return {m.group(1) for line in lines if (m := pattern.match(line))}


COMPONENTS = _block(LINES, "components", 0)
SCHEMAS = _block(COMPONENTS, "schemas", 2)
MESSAGES = _block(COMPONENTS, "messages", 2)
CHANNELS = _block(LINES, "channels", 0)
OPERATIONS = _block(LINES, "operations", 0)


def _models_in(annotation: object) -> Iterator[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation
        for field in annotation.model_fields.values():
            yield from _models_in(field.annotation)
    for argument in typing.get_args(annotation):
        yield from _models_in(argument)


def _family(messages: list[type[Message]]) -> dict[str, type[BaseModel]]:
    """The message models and every part nested in them, by class name."""
    found: dict[str, type[BaseModel]] = {}
    for message in messages:
        for model in _models_in(message):
            found[model.__name__] = model
    return found


PUBLISHED = _family([m for m in ALL_MESSAGES if m.exchange != ERP_EXCHANGE])
FROM_ERP = _family([m for m in ALL_MESSAGES if m.exchange == ERP_EXCHANGE])
ALL_MODELS = FROM_ERP | PUBLISHED


def _channel_id(message: type[Message]) -> str:
    return message.__name__[0].lower() + message.__name__[1:]


def _properties(name: str) -> list[str]:
    return _block(_block(SCHEMAS, name, 4), "properties", 6)


def _annotation_types(annotation: object) -> set[object]:
    """The plain types in an annotation, through ``Optional``/unions and ``Annotated``."""
    if typing.get_origin(annotation) is typing.Annotated:
        return _annotation_types(typing.get_args(annotation)[0])
    arguments = typing.get_args(annotation)
    if not arguments:
        return {annotation}
    return {found for argument in arguments for found in _annotation_types(argument)}


def test_the_document_is_asyncapi_3() -> None:
    assert "asyncapi: 3.0.0" in LINES
    assert "defaultContentType: application/json" in LINES


@pytest.mark.parametrize("message", ALL_MESSAGES, ids=lambda m: m.routing_key)
def test_every_routing_key_has_its_channel(message: type[Message]) -> None:
    channel = _block(CHANNELS, _channel_id(message), 2)
    assert f"    address: {message.routing_key}" in channel
    assert f"          name: {message.exchange}" in channel
    assert f"        $ref: '#/components/messages/{message.__name__}'" in channel
    assert message.exchange in EXCHANGES


@pytest.mark.parametrize("message", ALL_MESSAGES, ids=lambda m: m.routing_key)
def test_every_message_has_its_properties(message: type[Message]) -> None:
    documented = _block(MESSAGES, message.__name__, 4)
    assert "      contentType: application/json" in documented
    assert f"          messageType: {message.message_type()}" in documented
    assert f"        type: {message.message_type()}" in documented
    assert "        delivery_mode: 2" in documented
    assert any(line.startswith("        message_id: ") for line in documented)
    assert f"        $ref: '#/components/schemas/{message.__name__}'" in documented


@pytest.mark.parametrize("message", ALL_MESSAGES, ids=lambda m: m.routing_key)
def test_every_message_has_its_operation(message: type[Message]) -> None:
    action = "receive" if message.exchange == ERP_EXCHANGE else "send"
    operation = _block(OPERATIONS, action + message.__name__, 2)
    assert f"    action: {action}" in operation
    assert f"      $ref: '#/channels/{_channel_id(message)}'" in operation


@pytest.mark.parametrize("name", sorted(ALL_MODELS))
def test_every_field_is_documented_and_nothing_else(name: str) -> None:
    model = ALL_MODELS[name]
    assert _keys(_properties(name), 8) == set(model.model_fields)


@pytest.mark.parametrize("name", sorted(ALL_MODELS))
def test_required_fields(name: str) -> None:
    model = ALL_MODELS[name]
    required = _list_items(_block(_block(SCHEMAS, name, 4), "required", 6), 8)
    must = {field for field, info in model.model_fields.items() if info.is_required()}
    if name in PUBLISHED:
        # What we publish always carries every field (null where the model allows None).
        assert required == set(model.model_fields)
    else:
        assert required == must


@pytest.mark.parametrize("name", sorted(ALL_MODELS))
def test_money_timestamps_and_dates_have_their_wire_form(name: str) -> None:
    properties = _properties(name)
    for field, info in ALL_MODELS[name].model_fields.items():
        types = _annotation_types(info.annotation)
        documented = _block(properties, field, 8)
        if Decimal in types:
            assert "          type: string" in documented, f"{name}.{field}: money is a string"
            assert any(line.startswith("          pattern: ") for line in documented)
        elif dt.datetime in types or AwareDatetime in types:
            assert "          format: date-time" in documented, f"{name}.{field}"
        elif dt.date in types:
            assert "          format: date" in documented, f"{name}.{field}"


def test_dead_letter_and_parked_queues_are_documented() -> None:
    for spec in QUEUES:
        queue = spec.dead_name if spec.dead_letter else spec.name
        assert any(line == f"    address: {queue}" for line in CHANNELS), queue
        assert any(line == f"          name: {queue}" for line in CHANNELS), queue
    assert f"x-delivery-limit: {DELIVERY_LIMIT}" in " ".join(LINES)
    for headers in ("DeadLetterHeaders", "ParkedHeaders"):
        assert {"x-error-reason", "x-error-detail"} <= _keys(_properties(headers), 8)


# Fields issue 11 added to what ingest publishes (SPEC §8): documented as additions, and optional
# in the models so that the mapper and the ledger read messages published before them.
ADDED_BY_SPEC_8 = {
    "OrderPaid": ("store_payment", "shipping_address"),
    "OrderCustomer": ("address",),
    "SalePendingReview": ("store_payment", "shipping_address"),
    "SaleCustomer": ("address",),
}


@pytest.mark.parametrize(("name", "fields"), sorted(ADDED_BY_SPEC_8.items()))
def test_fields_added_by_spec_8_are_documented_and_optional(
    name: str, fields: tuple[str, ...]
) -> None:
    model = PUBLISHED[name]
    properties = _properties(name)
    for field in fields:
        assert not model.model_fields[field].is_required(), f"{name}.{field}"
        documented = " ".join(_block(properties, field, 8))
        assert "Added (SPEC §8" in documented, f"{name}.{field}"
        assert 'type: "null"' in documented, f"{name}.{field}: null when absent"


def test_partial_refund_message_is_documented_as_bound_to_the_ledger() -> None:
    channel = " ".join(_block(CHANNELS, "orderPartiallyRefunded", 2))
    assert "Consumed by: ledger (queues `ledger.sales.<k>`, by store)" in channel
    # Routed to the store's shard through the ledger.shards headers exchange.
    assert ("ingest.events", "order.partially_refunded") in SHARD_ROUTES
