"""Supervision of a service's background tasks, and the liveness facts its probes report.

Every background task (consumers, the broker link, the outbox publisher and relay, the poller,
the inbox pruner) runs under the ``Supervisor``. A task that raises, or returns while the
service is still meant to run, is logged with its exception, counted in
``nuvem_ledger_task_restarts_total{task}`` and restarted after a growing pause. A task that
fails more than ``budget`` times within ``window_s`` is declared dead: ``failed`` is set, and
the process stops and exits non-zero so that its orchestrator restarts it; nothing stalls
silently. ``LoopWatch`` measures how late the event loop runs a timer, so ``/healthz`` can fail
when the loop is blocked.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from shared.logging import get_logger
from shared.metrics import ServiceMetrics

log = get_logger(__name__)

Loop = Callable[[asyncio.Event], Coroutine[Any, Any, None]]

RESTART_BUDGET = 5
RESTART_WINDOW_S = 300.0
MAX_PAUSE_S = 30.0
HEALTHY_RUN_S = 60.0  # a task that ran this long before failing starts its pauses afresh


@dataclass
class TaskState:
    name: str
    status: str = "starting"  # running | restarting | dead | done
    restarts: int = 0
    last_error: str | None = None


class Supervisor:
    def __init__(
        self,
        metrics: ServiceMetrics,
        stopping: asyncio.Event,
        *,
        budget: int = RESTART_BUDGET,
        window_s: float = RESTART_WINDOW_S,
        first_pause_s: float = 0.5,
    ) -> None:
        self.metrics = metrics
        self.stopping = stopping
        self.budget = budget
        self.window_s = window_s
        self.first_pause_s = first_pause_s
        self.failed = asyncio.Event()
        self.states: dict[str, TaskState] = {}
        self.tasks: dict[str, asyncio.Task[None]] = {}

    def spawn(self, name: str, run: Loop) -> asyncio.Task[None]:
        state = TaskState(name)
        self.states[name] = state
        task = asyncio.create_task(self._keep(state, run), name=name)
        self.tasks[name] = task
        return task

    def not_running(self) -> list[TaskState]:
        """Tasks that are restarting or dead (a reason not to be ready)."""
        return [s for s in self.states.values() if s.status in ("restarting", "dead")]

    def dead(self) -> list[TaskState]:
        return [s for s in self.states.values() if s.status == "dead"]

    async def _keep(self, state: TaskState, run: Loop) -> None:
        recent: collections.deque[float] = collections.deque()
        pause = self.first_pause_s
        while not self.stopping.is_set():
            state.status = "running"
            started = time.monotonic()
            try:
                await run(self.stopping)
            except asyncio.CancelledError:
                state.status = "done"
                raise
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}"
                log.exception("task failed, restarting", task=state.name, error=error)
            else:
                if self.stopping.is_set():
                    break
                error = "ended while the service was running"
                log.error("task ended unexpectedly, restarting", task=state.name)
            now = time.monotonic()
            if now - started >= HEALTHY_RUN_S:
                pause = self.first_pause_s
            state.restarts += 1
            state.last_error = error
            self.metrics.task_restarts.labels(state.name).inc()
            recent.append(now)
            while recent and recent[0] < now - self.window_s:
                recent.popleft()
            if len(recent) > self.budget:
                state.status = "dead"
                log.critical(
                    "task keeps failing: giving up, the process exits for a restart",
                    task=state.name,
                    restarts=len(recent),
                    window_s=self.window_s,
                    error=error,
                )
                self.failed.set()
                return
            state.status = "restarting"
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), timeout=pause)
            pause = min(pause * 2, MAX_PAUSE_S)
        state.status = "done"


class LoopWatch:
    """How late the event loop runs a timer: a blocked loop shows up as a large lag."""

    def __init__(self, *, tick_s: float = 0.25, memory_s: float = 10.0) -> None:
        self.tick_s = tick_s
        self.memory_s = memory_s
        self._lags: collections.deque[tuple[float, float]] = collections.deque()

    def worst_recent_lag(self) -> float:
        """The largest lag seen within the last ``memory_s`` seconds."""
        horizon = time.monotonic() - self.memory_s
        return max((lag for at, lag in self._lags if at >= horizon), default=0.0)

    async def run(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            before = time.monotonic()
            await asyncio.sleep(self.tick_s)
            now = time.monotonic()
            self._lags.append((now, max(0.0, now - before - self.tick_s)))
            while self._lags and self._lags[0][0] < now - self.memory_s:
                self._lags.popleft()
