"""Access tokens at rest: Fernet-encrypted with ``TOKEN_ENCRYPTION_KEY``, never stored or logged plain."""

from __future__ import annotations

from cryptography.fernet import Fernet, InvalidToken

from shared.settings import Settings


class TokenKeyError(RuntimeError):
    """The encryption key is missing or unusable (ingest refuses to start, in one line)."""


class TokenCipher:
    def __init__(self, key: str) -> None:
        try:
            self._fernet = Fernet(key.encode())
        except (ValueError, TypeError) as exc:
            raise TokenKeyError(
                "TOKEN_ENCRYPTION_KEY is not a Fernet key (urlsafe base64 of 32 bytes)"
            ) from exc

    def encrypt(self, token: str) -> bytes:
        return self._fernet.encrypt(token.encode())

    def decrypt(self, stored: bytes) -> str:
        try:
            return self._fernet.decrypt(stored).decode()
        except InvalidToken as exc:
            raise TokenKeyError(
                "a stored access token cannot be decrypted with TOKEN_ENCRYPTION_KEY "
                "(was the key changed?)"
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
