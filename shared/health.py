"""What ``/healthz`` and ``/readyz`` report: liveness and readiness, each with its reasons.

Liveness fails only when a restart would help: the event loop was blocked for seconds, or a
supervised task died past its restart budget. Readiness fails whenever the service cannot do its
work right now: the broker link is down, the database does not answer, a supervised task is
restarting or dead, or the outbox holds a row older than ``OUTBOX_MAX_AGE_S`` (what it commits
is not reaching the broker). The database is probed on a connection of its own, so a pool busy
with work never reads as a database that is down.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import asyncpg

from shared.logging import get_logger
from shared.messaging import Broker
from shared.outbox import backlog
from shared.settings import Settings
from shared.supervisor import LoopWatch, Supervisor

log = get_logger(__name__)

LOOP_BLOCKED_S = 5.0
BROKER_STALL_S = 5.0
PROBE_TIMEOUT_S = 1.0
CACHE_S = 0.5


class HealthProbe:
    def __init__(
        self,
        *,
        service: str,
        settings: Settings,
        schema: str,
        broker: Broker,
        supervisor: Supervisor,
        watch: LoopWatch,
    ) -> None:
        self.service = service
        self.settings = settings
        self.schema = schema
        self.broker = broker
        self.supervisor = supervisor
        self.watch = watch
        self._conn: asyncpg.Connection | None = None
        self._lock = asyncio.Lock()
        self._cached: tuple[float, list[str]] | None = None

    def liveness_problems(self) -> list[str]:
        why = [
            f"task {s.name} is dead after {s.restarts} restarts: {s.last_error}"
            for s in self.supervisor.dead()
        ]
        lag = self.watch.worst_recent_lag()
        if lag > LOOP_BLOCKED_S:
            why.append(f"event loop blocked for {lag:.1f} s")
        return why

    async def readiness_problems(self) -> list[str]:
        async with self._lock:
            now = time.monotonic()
            if self._cached is not None and now - self._cached[0] < CACHE_S:
                return list(self._cached[1])
            why = await self._check()
            self._cached = (time.monotonic(), why)
            return list(why)

    async def _check(self) -> list[str]:
        why: list[str] = []
        if self.supervisor.stopping.is_set():
            why.append("stopping")
        if not self.broker.is_connected:
            why.append(f"broker unreachable: {self.broker.link.last_error or 'connecting'}")
        elif (stalled := self.broker.stalled_for()) > BROKER_STALL_S:
            # The connection looks alive (its heartbeat has not expired yet) but nothing it
            # publishes is confirmed: a stalled network or broker.
            why.append(f"broker not confirming for {stalled:.0f} s")
        why += [f"task {s.name} {s.status}: {s.last_error}" for s in self.supervisor.not_running()]
        try:
            rows, age = await asyncio.wait_for(self._backlog(), timeout=PROBE_TIMEOUT_S)
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            await self._drop()
            why.append(f"database unreachable: {type(exc).__name__}: {exc}")
        else:
            if age > self.settings.outbox_max_age_s:
                why.append(f"outbox backlog: {rows} rows, the oldest {age:.0f} s old")
        return why

    async def _backlog(self) -> tuple[int, float]:
        if self._conn is None or self._conn.is_closed():
            self._conn = await asyncpg.connect(self.settings.database_url, timeout=PROBE_TIMEOUT_S)
        return await backlog(self._conn, self.schema)

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.terminate()

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                await asyncio.wait_for(conn.close(), timeout=2)
