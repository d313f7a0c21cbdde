"""Access tokens at rest: Fernet-encrypted with ``TOKEN_ENCRYPTION_KEY``, never stored or logged plain.

``TOKEN_ENCRYPTION_KEY`` may be a comma-separated list of keys (``MultiFernet``): the first
encrypts, every one decrypts. Rotating is: put the new key first and keep the old one after it,
restart, run ``nuvem-ledger integration rotate-tokens`` (every stored token re-encrypted with the
first key), then drop the old key.
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg
from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from services.ingest.adapters import postgres as db
from shared.logging import get_logger
from shared.settings import Settings

log = get_logger(__name__)


class TokenKeyError(RuntimeError):
    """The encryption key is missing or unusable (ingest refuses to start, in one line)."""


def parse_keys(value: str) -> list[str]:
    """The keys of ``TOKEN_ENCRYPTION_KEY``, first (encrypting) first; blanks around commas are
    ignored. ``TokenKeyError`` names the position of a key that is not a Fernet key, never the
    key itself."""
    keys = [part.strip() for part in value.split(",")]
    if not any(keys):
        raise TokenKeyError("TOKEN_ENCRYPTION_KEY is empty")
    for number, key in enumerate(keys, start=1):
        if not key:
            raise TokenKeyError(f"TOKEN_ENCRYPTION_KEY: key {number} of {len(keys)} is empty")
        try:
            Fernet(key.encode())
        except (ValueError, TypeError):
            raise TokenKeyError(
                f"TOKEN_ENCRYPTION_KEY: key {number} of {len(keys)} is not a Fernet key "
                "(urlsafe base64 of 32 bytes)"
            ) from None
    return keys


class TokenCipher:
    """Encrypts with the first key, decrypts with any of them."""

    def __init__(self, key: str) -> None:
        keys = parse_keys(key)
        self.key_count = len(keys)
        self._fernet = MultiFernet([Fernet(k.encode()) for k in keys])

    def encrypt(self, token: str) -> bytes:
        return self._fernet.encrypt(token.encode())

    def decrypt(self, stored: bytes) -> str:
        try:
            return self._fernet.decrypt(stored).decode()
        except InvalidToken as exc:
            raise TokenKeyError(
                "a stored access token cannot be decrypted with any key of TOKEN_ENCRYPTION_KEY "
                "(was the key changed?)"
            ) from exc

    def rotate(self, stored: bytes) -> bytes:
        """The same token encrypted with the first key (``TokenKeyError`` if no key reads it)."""
        try:
            return self._fernet.rotate(stored)
        except InvalidToken as exc:
            raise TokenKeyError(
                "a stored access token cannot be decrypted with any key of TOKEN_ENCRYPTION_KEY"
            ) from exc


def generate_key() -> str:
    return Fernet.generate_key().decode()


def cipher_from_settings(settings: Settings) -> TokenCipher:
    """The cipher for stored tokens, or ``TokenKeyError`` when no key is configured."""
    if settings.token_encryption_key is None:
        raise TokenKeyError(
            "TOKEN_ENCRYPTION_KEY is not set: generate one with "
            "`python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'`"
        )
    return TokenCipher(settings.token_encryption_key.get_secret_value())


@dataclass(frozen=True)
class Rotation:
    rotated: int
    unreadable: list[int]  # stores whose token no key reads (they must be connected again)


async def rotate_tokens(pool: asyncpg.Pool, cipher: TokenCipher) -> Rotation:
    """Re-encrypt every stored token with the first key, in one transaction (rows locked, so a
    store connected meanwhile waits and keeps its new token)."""
    rotated, unreadable = 0, []
    async with pool.acquire() as conn, conn.transaction():
        for store_id, stored in await db.lock_tokens(conn):
            try:
                fresh = cipher.rotate(stored)
            except TokenKeyError:
                unreadable.append(store_id)
                continue
            await db.set_token(conn, store_id, fresh)
            rotated += 1
    log.info("stored tokens re-encrypted", rotated=rotated, unreadable=len(unreadable))
    return Rotation(rotated, unreadable)
