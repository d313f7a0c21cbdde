"""Rotating TOKEN_ENCRYPTION_KEY: ``integration rotate-tokens`` re-encrypts every stored token with
the first key of the list, after which the old key can be removed; against the real ingest, the
simulator, the broker and the database.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import orjson
import pytest
from pydantic import SecretStr

from services.ingest.connections import store_connection
from services.ingest.tokens import TokenCipher, TokenKeyError, generate_key
from services.system import factories
from shared.runtime import start_service
from tests.harness import System
from tests.integration.helpers import run_cli as run_command
from tests.integration.ingest_helpers import (
    cli_env,
    first_poll_done,
    ingest_pool,
    make_due,
    store_row,
)

STORE = 733_001
FOREIGN = 733_002


def _old_key(system: System) -> str:
    key = system.settings.token_encryption_key
    assert key is not None
    return key.get_secret_value()


async def _stored(system: System, store_id: int) -> bytes:
    row = await store_row(system, store_id)
    assert row is not None
    return bytes(row["access_token"])


async def _rotate(system: System, tmp_path: Path, keys: str) -> tuple[int, str, str]:
    env = cli_env(system) | {"TOKEN_ENCRYPTION_KEY": keys}
    done = await run_command("integration", "rotate-tokens", "--json", env=env, cwd=tmp_path)
    return done.returncode, done.stdout, done.stderr


async def test_rotated_tokens_read_with_the_new_key_alone_and_a_poll_works(
    system: System, tmp_path: Path
) -> None:
    old, new = _old_key(system), generate_key()
    await system.connect_store(STORE)
    await first_poll_done(system, STORE)
    token = system.simulator.state.stores[STORE].token
    assert token is not None
    assert TokenCipher(old).decrypt(await _stored(system, STORE)) == token

    code, out, err = await _rotate(system, tmp_path, f"{new},{old}")
    assert code == 0, err
    assert orjson.loads(out) == {"rotated": 1}

    stored = await _stored(system, STORE)
    assert TokenCipher(new).decrypt(stored) == token
    with pytest.raises(TokenKeyError):
        TokenCipher(old).decrypt(stored)

    # The old key removed: ingest restarted with the new key alone still polls the store.
    await system.services["ingest"].stop(grace_s=5)
    paid = int(system.simulator.state.add_order(STORE, paid=True)["id"])
    settings = system.settings.model_copy(update={"token_encryption_key": SecretStr(new)})
    system.services["ingest"] = await start_service(
        "ingest", factories()["ingest"], settings, port=0, host="127.0.0.1", connect_deadline=20
    )
    await make_due(system, STORE)
    await system.observer.wait_for("order.paid", order_id=paid, within=15)
    row = await store_row(system, STORE)
    assert row is not None
    assert row["enabled"] is True


async def test_a_token_no_key_reads_is_reported_and_the_others_rotate(
    system: System, tmp_path: Path
) -> None:
    old, new = _old_key(system), generate_key()
    await system.connect_store(STORE)
    await store_connection(  # a store whose token was encrypted with a key since lost
        ingest_pool(system),
        TokenCipher(generate_key()),
        store_id=FOREIGN,
        access_token="lost-token",
        activated_by="erp-user-1",
        activated_at=dt.datetime(2020, 1, 1, tzinfo=dt.UTC),
    )
    foreign_before = await _stored(system, FOREIGN)

    code, out, err = await _rotate(system, tmp_path, f"{new},{old}")
    assert code != 0
    assert out == ""
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "re-encrypted 1 token(s)" in lines[0]
    assert str(FOREIGN) in lines[0]
    assert "lost-token" not in err
    assert TokenCipher(new).decrypt(await _stored(system, STORE))
    assert await _stored(system, FOREIGN) == foreign_before

    bad_key, _, bad_err = await _rotate(system, tmp_path, f"{new},not-a-key")
    assert bad_key != 0
    assert "key 2 of 2 is not a Fernet key" in bad_err
    assert new not in bad_err
