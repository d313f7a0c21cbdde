"""The leaky bucket Nuvemshop meters each store with: every request pours one unit in, the bucket
drains continuously at `leak_per_s`, and a request that would overflow `size` is refused (429)
without pouring. It reports the three `x-rate-limit-*` header values; `reset` is the number of
milliseconds until the bucket is empty. Time comes from an injectable monotonic source.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class LeakyBucket:
    """One store's bucket; `enabled=False` never refuses and always reports a full allowance."""

    size: int = 40
    leak_per_s: float = 2.0
    enabled: bool = True
    now: Callable[[], float] = time.monotonic
    level: float = 0.0
    _last: float | None = field(default=None, repr=False)

    def _drain(self) -> None:
        current = self.now()
        if self._last is not None:
            self.level = max(0.0, self.level - (current - self._last) * self.leak_per_s)
        self._last = current

    def take(self) -> bool:
        """Pour one request in; False (and nothing poured) when it would overflow."""
        if not self.enabled:
            return True
        self._drain()
        if self.level + 1 > self.size + 1e-9:
            return False
        self.level += 1
        return True

    def headers(self) -> dict[str, str]:
        """The `x-rate-limit-*` headers describing the bucket right now."""
        if not self.enabled:
            return {
                "x-rate-limit-limit": str(self.size),
                "x-rate-limit-remaining": str(self.size),
                "x-rate-limit-reset": "0",
            }
        self._drain()
        remaining = max(0, math.floor(self.size - self.level + 1e-9))
        reset_ms = math.ceil(self.level / self.leak_per_s * 1000) if self.leak_per_s > 0 else 0
        return {
            "x-rate-limit-limit": str(self.size),
            "x-rate-limit-remaining": str(remaining),
            "x-rate-limit-reset": str(reset_ms),
        }

    def reconfigure(self, *, size: int, leak_per_s: float, enabled: bool) -> None:
        """Change the parameters and empty the bucket."""
        self.size, self.leak_per_s, self.enabled = size, leak_per_s, enabled
        self.level, self._last = 0.0, None
