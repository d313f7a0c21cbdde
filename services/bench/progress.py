"""Progress on stderr while the bench runs."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Callable
from typing import Any


def say(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


async def wait_until(what: str, done: Callable[[], int], total: int, timeout_s: float) -> None:
    """Wait for ``done() >= total``, printing progress each second."""
    deadline = time.monotonic() + timeout_s
    last = -1
    while True:
        count = done()
        if count != last:
            sys.stderr.write(f"\r  {what}: {count}/{total}   ")
            sys.stderr.flush()
            last = count
        if count >= total:
            sys.stderr.write("\n")
            return
        if time.monotonic() > deadline:
            sys.stderr.write("\n")
            raise TimeoutError(f"{what}: only {count}/{total} after {timeout_s:.0f} s")
        await asyncio.sleep(0.25)


class Shown(dict[str, Any]):
    """The figures so far, each shown on stderr as it arrives (a later failure keeps them)."""

    def __ior__(self, other: Any) -> Shown:  # type: ignore[override,misc]
        say(f"  -> {json.dumps(other, default=str)}")
        super().update(other)
        return self

    def __setitem__(self, key: str, value: Any) -> None:
        say(f"  -> {json.dumps({key: value}, default=str)}")
        super().__setitem__(key, value)
