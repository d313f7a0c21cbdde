"""When each store is polled: a pure rule, without I/O."""

from __future__ import annotations

import math
import zlib

SLOT_EARLIEST = 0.85  # of an interval: the next poll is never sooner than this after the last


def poll_slot_delay(store_id: int, interval_s: float, now_s: float) -> float:
    """Seconds until a store's next poll: at its own slot of the interval, never in a herd.

    Each store has a fixed phase in the interval (a hash of its id), so thousands of stores
    connected at once are polled once at connection and then spread evenly over the interval,
    each exactly once per interval. The next slot is at least ``SLOT_EARLIEST`` of an interval
    away, so a poll that ran late still keeps one poll per interval.
    """
    phase = (zlib.crc32(str(store_id).encode()) % 100_000) / 100_000 * interval_s
    earliest = now_s + SLOT_EARLIEST * interval_s
    cycles = math.ceil((earliest - phase) / interval_s)
    return phase + cycles * interval_s - now_s
