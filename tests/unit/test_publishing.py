"""``shared.publishing`` relies on aiormq's channel internals: an upgrade that renames them fails
here, not in production (the behaviour itself: tests/integration/test_publishing.py)."""

from __future__ import annotations

import dataclasses
import inspect

import aiormq
from aiormq.abc import ChannelFrame


def test_the_channel_attributes_the_publisher_uses_exist() -> None:
    source = inspect.getsource(aiormq.Channel.__init__)
    for attribute in (
        "self.confirmations",
        "self.message_id_delivery_tag",
        "self.delivery_tag",
        "self.write_queue",
        "self.max_content_size",
        "self.number",
    ):
        assert attribute in source, attribute
    assert isinstance(inspect.getattr_static(aiormq.Channel, "lock"), property)
    # Returns are matched to their publish through message_id_delivery_tag, confirms through
    # confirmations: the reader's handlers must still read both.
    assert "message_id_delivery_tag" in inspect.getsource(aiormq.Channel._on_return_frame)
    assert "confirmations" in inspect.getsource(aiormq.Channel._on_confirm_frame)


def test_a_channel_frame_is_payload_close_and_drain() -> None:
    names = [f.name for f in dataclasses.fields(ChannelFrame)]
    assert names == ["payload", "should_close", "drain_future"]
