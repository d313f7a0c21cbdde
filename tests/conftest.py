"""Fixtures: the real RabbitMQ and PostgreSQL, one vhost and one database per test."""

from __future__ import annotations

import asyncio
import gc
import secrets
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from pydantic import SecretStr

from services.ingest.tokens import generate_key
from shared.settings import Settings
from tests import infra
from tests.harness import System, start_system

# A task or future that dies with nobody to hear it fails its test (issue 9). asyncio reports
# such errors ("Task exception was never retrieved") to the loop's exception handler, which by
# default only logs them: every loop the tests get records them instead, and each test's
# teardown fails when any arrived during it.
_UNHANDLED: list[str] = []


def _record_unhandled(_: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    exc = context.get("exception")
    _UNHANDLED.append(f"{context.get('message')}: {type(exc).__name__}: {exc}")


class _RecordingPolicy(asyncio.DefaultEventLoopPolicy):
    def new_event_loop(self) -> asyncio.AbstractEventLoop:
        loop = super().new_event_loop()
        loop.set_exception_handler(_record_unhandled)
        return loop

    def set_event_loop(self, loop: asyncio.AbstractEventLoop | None) -> None:
        # pytest-asyncio leaves a fresh placeholder loop as the thread's loop after each of its
        # own; the next test replaces it without closing it, and its socket pair then fails
        # whichever test's teardown collects it (ResourceWarning). A placeholder that is not
        # running is closed when replaced; pytest-asyncio closes its own loops itself.
        old: asyncio.AbstractEventLoop | None = self._local._loop  # type: ignore[attr-defined]
        if (
            old is not None
            and old is not loop
            and not getattr(old, "__pytest_asyncio", False)
            and not old.is_running()
            and not old.is_closed()
        ):
            old.close()
        super().set_event_loop(loop)


# One policy for the whole run: pytest-asyncio restores the policy it found after each test and
# then makes its placeholder loop with it, so that policy must be this one too (else the
# placeholders of the default policy are never closed).
_POLICY = _RecordingPolicy()
asyncio.set_event_loop_policy(_POLICY)


@pytest.fixture(scope="session")
def event_loop_policy() -> asyncio.AbstractEventLoopPolicy:
    return _POLICY


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item) -> Iterator[None]:
    yield
    gc.collect()  # futures nobody awaited report their errors when collected
    errors, _UNHANDLED[:] = list(_UNHANDLED), []
    if errors:
        raise AssertionError("unhandled errors in tasks:\n" + "\n".join(errors))


@pytest.fixture(scope="session")
def infrastructure() -> Iterator[infra.Infrastructure]:
    located = infra.locate()
    asyncio.run(infra.prepare_template(located))
    yield located
    asyncio.run(infra.drop_template(located))
    located.stop()


@pytest.fixture
def vhost_url(infrastructure: infra.Infrastructure) -> Iterator[str]:
    vhost = infra.create_vhost(infrastructure)
    yield infra.with_vhost(infrastructure.amqp_url, vhost)
    infra.delete_vhost(infrastructure, vhost)


@pytest.fixture
async def database_url(infrastructure: infra.Infrastructure) -> AsyncIterator[str]:
    url = await infra.create_database(infrastructure)
    yield url
    await infra.drop_database(infrastructure, url)


@pytest.fixture
def settings(vhost_url: str, database_url: str) -> Settings:
    return Settings(
        amqp_url=vhost_url,
        database_url=database_url,
        token_encryption_key=SecretStr(generate_key()),
        connect_link_secret=SecretStr(secrets.token_urlsafe(32)),
        nuvemshop_client_secret=SecretStr("test-client-secret"),
        nuvemshop_app_id="1234",
        http_host="127.0.0.1",
        batch_wait_ms=5,
        poll_interval_seconds=300,
        _env_file=None,
    )


@pytest.fixture
async def system(settings: Settings) -> AsyncIterator[System]:
    running = await start_system(settings)
    yield running
    await running.stop()
