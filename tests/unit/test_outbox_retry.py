"""The outbox publisher waits between attempts when the broker refuses with the link up.

Seen in the cluster test: a channel that kept answering nacks while the link stayed up made the
publisher retry every 4 ms (186,000 warnings in 10 minutes), since it only waited for the link.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, cast

from shared.messaging import Broker, Envelope, UnroutableError
from shared.outbox import OutboxPublisher, Staged


class RefusingBroker:
    """Up, and refusing every publish; records when each attempt came."""

    is_connected = True

    def __init__(self, attempts: int) -> None:
        self.at: list[float] = []
        self.enough = asyncio.Event()
        self.wanted = attempts

    async def publish_many(self, envs: list[Envelope], **_: Any) -> None:
        self.at.append(time.monotonic())
        if len(self.at) >= self.wanted:
            self.enough.set()
        raise UnroutableError("x/y: refused by the broker (nack)")

    async def wait_up(self, within: float | None = None) -> bool:
        return True


async def test_refusals_with_the_link_up_are_retried_with_a_growing_pause() -> None:
    broker = RefusingBroker(attempts=4)
    publisher = OutboxPublisher(cast(Any, None), "test", cast(Broker, broker))
    env = Envelope(exchange="x", routing_key="y", body=b"{}", message_id="m-1", type="t")
    task = asyncio.create_task(publisher.run(asyncio.Event()))
    await publisher.submit([Staged(1, env)])
    await asyncio.wait_for(broker.enough.wait(), timeout=10)
    publisher.draining.set()
    await asyncio.wait_for(task, timeout=10)
    gaps = [b - a for a, b in zip(broker.at, broker.at[1:], strict=False)]
    assert len(gaps) >= 3
    assert [round(g, 2) >= floor for g, floor in zip(gaps, (0.19, 0.39, 0.79), strict=False)] == [
        True,
        True,
        True,
    ], gaps
