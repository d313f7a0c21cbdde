"""TOKEN_ENCRYPTION_KEY as a list (MultiFernet): the first key encrypts, every key decrypts, and
rotating re-encrypts with the first so an old key can be dropped."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet
from hypothesis import given, settings
from hypothesis import strategies as st

from services.ingest.tokens import TokenCipher, TokenKeyError, parse_keys

OLD, NEW, OTHER = (Fernet.generate_key().decode() for _ in range(3))
tokens = st.text(min_size=1, max_size=80)


@given(tokens)
@settings(max_examples=50)
def test_the_first_key_encrypts_and_every_key_decrypts(token: str) -> None:
    before = TokenCipher(OLD).encrypt(token)
    both = TokenCipher(f"{NEW},{OLD}")
    assert both.decrypt(before) == token  # an old token still reads
    after = both.encrypt(token)
    assert TokenCipher(NEW).decrypt(after) == token  # new ones use the first key alone
    with pytest.raises(TokenKeyError):
        TokenCipher(OLD).decrypt(after)


@given(tokens)
@settings(max_examples=50)
def test_rotating_lets_the_old_key_go(token: str) -> None:
    stored = TokenCipher(OLD).encrypt(token)
    rotated = TokenCipher(f"{NEW}, {OLD}").rotate(stored)
    assert TokenCipher(NEW).decrypt(rotated) == token
    with pytest.raises(TokenKeyError):
        TokenCipher(OLD).decrypt(rotated)
    with pytest.raises(TokenKeyError):
        TokenCipher(f"{NEW},{OTHER}").rotate(TokenCipher(OLD).encrypt(token))


def test_one_key_is_a_list_of_one() -> None:
    assert parse_keys(OLD) == [OLD]
    assert parse_keys(f" {NEW} ,\n{OLD} ") == [NEW, OLD]
    assert TokenCipher(OLD).key_count == 1


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("", "empty"),
        (" , ", "empty"),
        (f"{NEW},,{OLD}", "key 2 of 3 is empty"),
        (f"{NEW},not-a-key", "key 2 of 2 is not a Fernet key"),
        ("x" * 44, "key 1 of 1 is not a Fernet key"),
    ],
)
def test_a_bad_list_is_refused_naming_the_position_never_the_key(value: str, says: str) -> None:
    with pytest.raises(TokenKeyError, match=says) as refused:
        TokenCipher(value)
    assert NEW not in str(refused.value)
    assert OLD not in str(refused.value)
