"""The supervisor, the loop watch and the broker URL rules, without broker or database."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest

from shared.link import split_hosts, with_heartbeat
from shared.metrics import ServiceMetrics
from shared.supervisor import LoopWatch, Supervisor


async def _until(check: Callable[[], bool], within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline
        await asyncio.sleep(0.01)


def _restarts(metrics: ServiceMetrics, task: str) -> float:
    value = metrics.registry.get_sample_value("nuvem_ledger_task_restarts_total", {"task": task})
    return value or 0.0


async def test_a_failing_task_is_restarted_counted_and_logged() -> None:
    metrics = ServiceMetrics("test")
    stopping = asyncio.Event()
    supervisor = Supervisor(metrics, stopping, first_pause_s=0.01)
    runs = 0

    async def flaky(stop: asyncio.Event) -> None:
        nonlocal runs
        runs += 1
        if runs < 3:
            raise ValueError(f"boom {runs}")
        await stop.wait()

    task = supervisor.spawn("flaky", flaky)
    await _until(lambda: runs >= 3)
    assert supervisor.states["flaky"].status == "running"
    assert supervisor.states["flaky"].last_error == "ValueError: boom 2"
    assert _restarts(metrics, "flaky") == 2
    assert not supervisor.failed.is_set()
    stopping.set()
    await task
    assert supervisor.states["flaky"].status == "done"


async def test_a_task_that_returns_while_running_is_restarted() -> None:
    metrics = ServiceMetrics("test")
    stopping = asyncio.Event()
    supervisor = Supervisor(metrics, stopping, first_pause_s=0.01)
    runs = 0

    async def quits(stop: asyncio.Event) -> None:
        nonlocal runs
        runs += 1
        if runs > 1:
            await stop.wait()

    task = supervisor.spawn("quits", quits)
    await _until(lambda: runs >= 2)
    assert supervisor.states["quits"].last_error == "ended while the service was running"
    stopping.set()
    await task


async def test_a_task_failing_past_its_budget_is_dead_and_fails_the_process() -> None:
    metrics = ServiceMetrics("test")
    stopping = asyncio.Event()
    supervisor = Supervisor(metrics, stopping, budget=3, first_pause_s=0.001)

    async def always(_: asyncio.Event) -> None:
        raise RuntimeError("never works")

    task = supervisor.spawn("always", always)
    await asyncio.wait_for(supervisor.failed.wait(), timeout=5)
    await task
    state = supervisor.states["always"]
    assert state.status == "dead"
    assert [s.name for s in supervisor.dead()] == ["always"]
    assert [s.name for s in supervisor.not_running()] == ["always"]
    assert _restarts(metrics, "always") == 4


async def test_the_loop_watch_sees_a_blocked_loop() -> None:
    watch = LoopWatch(tick_s=0.01, memory_s=5)
    stopping = asyncio.Event()
    task = asyncio.create_task(watch.run(stopping))
    await asyncio.sleep(0.05)
    assert watch.worst_recent_lag() < 0.2
    time.sleep(0.4)  # noqa: ASYNC251 - blocking the loop is the point
    await asyncio.sleep(0.05)
    assert watch.worst_recent_lag() >= 0.35
    stopping.set()
    await task


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("amqp://g:p@h1:5672/vh", ["amqp://g:p@h1:5672/vh"]),
        (
            "amqp://g:p@h1:5701,h2:5702,h3:5703/vh",
            ["amqp://g:p@h1:5701/vh", "amqp://g:p@h2:5702/vh", "amqp://g:p@h3:5703/vh"],
        ),
        (
            "amqp://g:p@h1:5701/vh, amqp://g:p@h2:5702/vh",
            ["amqp://g:p@h1:5701/vh", "amqp://g:p@h2:5702/vh"],
        ),
        ("amqp://h1,h2/", ["amqp://h1/", "amqp://h2/"]),
    ],
)
def test_amqp_url_may_name_several_nodes(url: str, expected: list[str]) -> None:
    assert split_hosts(url) == expected


def test_a_heartbeat_is_added_unless_the_url_sets_one() -> None:
    assert with_heartbeat("amqp://g:p@h:5672/vh") == "amqp://g:p@h:5672/vh?heartbeat=10"
    assert with_heartbeat("amqp://h/vh?heartbeat=30") == "amqp://h/vh?heartbeat=30"
