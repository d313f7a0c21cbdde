"""The rules of ERP-signed connect links (SPEC §9): what is signed, what verifies, what not."""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import parse_qs, urlsplit

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from pydantic import SecretStr

from services.ingest.connect_links import (
    MAX_TTL_S,
    BadLinkRequest,
    ConnectLinkSecretError,
    LinkRefused,
    make_link,
    secret_from_settings,
    signature,
    verify_link,
)
from shared.settings import Settings

SECRET = "a-connect-link-secret-of-the-erp"
NOW = 1_780_000_000.0

users = st.text(st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=60).filter(
    lambda u: u == u.strip()
)
ttls = st.integers(min_value=1, max_value=MAX_TTL_S)


def _query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query, keep_blank_values=True).items()}


def test_the_signature_is_hex_hmac_sha256_of_user_colon_expires() -> None:
    expected = hmac.new(SECRET.encode(), b"erp-user-7:1780000900", hashlib.sha256).hexdigest()
    assert signature("erp-user-7", 1_780_000_900, SECRET) == expected
    link = make_link("https://ingest.example/", "erp-user-7", SECRET, now=NOW, ttl_s=900)
    assert link.expires == 1_780_000_900
    assert link.url == (
        "https://ingest.example/connect/nuvemshop?user=erp-user-7&expires=1780000900"
        f"&signature={expected}"
    )


@given(users, ttls, st.floats(min_value=0, max_value=0.999))
def test_a_link_verifies_for_its_user_until_it_expires(user: str, ttl: int, later: float) -> None:
    link = make_link("http://127.0.0.1:8080", user, SECRET, now=NOW, ttl_s=ttl)
    q = _query(link.url)
    assert q["user"] == user
    assert verify_link(q["user"], q["expires"], q["signature"], SECRET, now=NOW) == user
    in_time = NOW + (ttl - 1) * later
    assert verify_link(q["user"], q["expires"], q["signature"], SECRET, now=in_time) == user
    with pytest.raises(LinkRefused, match="expired"):
        verify_link(q["user"], q["expires"], q["signature"], SECRET, now=link.expires)


@given(users, users, ttls)
def test_a_link_names_no_other_user(user: str, other: str, ttl: int) -> None:
    assume(user != other)
    q = _query(make_link("http://h", user, SECRET, now=NOW, ttl_s=ttl).url)
    with pytest.raises(LinkRefused):
        verify_link(other, q["expires"], q["signature"], SECRET, now=NOW)


@given(users, ttls, st.integers(min_value=-MAX_TTL_S, max_value=MAX_TTL_S))
def test_an_expiry_moved_by_anything_is_refused(user: str, ttl: int, moved: int) -> None:
    assume(moved != 0)
    q = _query(make_link("http://h", user, SECRET, now=NOW, ttl_s=ttl).url)
    with pytest.raises(LinkRefused):
        verify_link(user, str(int(q["expires"]) + moved), q["signature"], SECRET, now=NOW)


@given(users, st.text(min_size=1, max_size=40))
def test_a_link_signed_with_another_secret_is_refused(user: str, other_secret: str) -> None:
    assume(other_secret != SECRET)
    q = _query(make_link("http://h", user, other_secret, now=NOW).url)
    with pytest.raises(LinkRefused):
        verify_link(user, q["expires"], q["signature"], SECRET, now=NOW)


@given(st.one_of(st.none(), st.text(max_size=80)), st.one_of(st.none(), st.text(max_size=30)))
def test_garbage_is_refused_never_crashes(expires: str | None, given_signature: str | None) -> None:
    with pytest.raises(LinkRefused):
        verify_link("erp-user-1", expires, given_signature, SECRET, now=NOW)


def test_what_an_attacker_might_try_is_refused() -> None:
    good = make_link("http://h", "erp-user-1", SECRET, now=NOW)
    q = _query(good.url)
    sig, exp = q["signature"], q["expires"]
    refused = {
        "missing user": (None, exp, sig),
        "missing expiry": ("erp-user-1", None, sig),
        "missing signature": ("erp-user-1", exp, None),
        "empty signature": ("erp-user-1", exp, ""),
        "leading zero": ("erp-user-1", "0" + exp, sig),
        "sign": ("erp-user-1", "+" + exp, sig),
        "fraction": ("erp-user-1", exp + ".0", sig),
        "colon moved into the user": ("erp-user-1:" + exp[:3], exp[3:], sig),
        "truncated signature": ("erp-user-1", exp, sig[:-2]),
        "non-ASCII signature": ("erp-user-1", exp, sig[:-1] + "é"),
        "signature of the empty message": ("erp-user-1", exp, signature("", "", SECRET)),
    }
    for why, (user, expires, given_sig) in refused.items():
        try:
            verify_link(user, expires, given_sig, SECRET, now=NOW)
        except LinkRefused:
            continue
        pytest.fail(f"accepted: {why}")
    # The hex is read whatever its case.
    assert verify_link("erp-user-1", exp, sig.upper(), SECRET, now=NOW) == "erp-user-1"


def test_a_link_claiming_more_than_the_longest_life_is_refused() -> None:
    far = str(int(NOW) + MAX_TTL_S + 60)
    forged = signature("erp-user-1", far, SECRET)  # as if the secret had signed it
    with pytest.raises(LinkRefused, match="longer"):
        verify_link("erp-user-1", far, forged, SECRET, now=NOW)


def test_no_secret_verifies_nothing() -> None:
    q = _query(make_link("http://h", "erp-user-1", "", now=NOW).url)
    with pytest.raises(LinkRefused):
        verify_link("erp-user-1", q["expires"], q["signature"], "", now=NOW)


@pytest.mark.parametrize(
    ("user", "ttl"),
    [
        ("", 900),
        (" padded", 900),
        ("tab\tuser", 900),
        ("x" * 201, 900),
        ("ok", 0),
        ("ok", MAX_TTL_S + 1),
    ],
)
def test_links_that_cannot_be_made(user: str, ttl: int) -> None:
    with pytest.raises(BadLinkRequest):
        make_link("http://h", user, SECRET, now=NOW, ttl_s=ttl)


def test_the_secret_is_required_and_long_enough() -> None:
    with pytest.raises(ConnectLinkSecretError, match="CONNECT_LINK_SECRET is not set"):
        secret_from_settings(Settings(_env_file=None))
    with pytest.raises(ConnectLinkSecretError, match="shorter"):
        secret_from_settings(Settings(connect_link_secret=SecretStr("short"), _env_file=None))
    configured = Settings(connect_link_secret=SecretStr(SECRET), _env_file=None)
    assert secret_from_settings(configured) == SECRET
