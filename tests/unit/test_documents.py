"""Brazilian document rules: normalisation, CPF and CNPJ (numeric and alphanumeric) validation,
classification and masking, by tables of known cases and by properties over generated documents
whose check digits are computed here by a second, independent implementation."""

from __future__ import annotations

import itertools
import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.documents import (
    DocumentCheck,
    DocumentKind,
    classify_document,
    is_valid_cnpj,
    is_valid_cpf,
    mask_document,
    normalize_document,
)

CNPJ_BASE_ALPHABET = string.digits + string.ascii_uppercase


# --- an independent reference: weights cycle 2..9 from the right; dv = (10 * sum mod 11) mod 10


def reference_dv(values: list[int], max_weight: int) -> int:
    weights = itertools.cycle(range(2, max_weight + 1))
    total = sum(value * weight for value, weight in zip(reversed(values), weights, strict=False))
    return (total * 10) % 11 % 10


def reference_cpf(base: str) -> str:
    values = [int(c) for c in base]
    values.append(reference_dv(values, 11))
    values.append(reference_dv(values, 11))
    return "".join(str(v) for v in values)


def reference_cnpj(base: str) -> str:
    values = [ord(c) - 48 for c in base]
    first = reference_dv(values, 9)
    second = reference_dv([*values, first], 9)
    return f"{base}{first}{second}"


def test_reference_reproduces_the_official_vectors() -> None:
    assert reference_cpf("758395665") == "75839566500"
    assert reference_cnpj("112223330001") == "11222333000181"
    assert reference_cnpj("167272300001") == "16727230000197"
    assert reference_cnpj("12ABC34501DE") == "12ABC34501DE35"


def not_all_equal(document: str) -> bool:
    return len(set(document)) > 1


valid_cpfs = (
    st.text(alphabet=string.digits, min_size=9, max_size=9).map(reference_cpf).filter(not_all_equal)
)
valid_cnpjs = (
    st.text(alphabet=CNPJ_BASE_ALPHABET, min_size=12, max_size=12)
    .map(reference_cnpj)
    .filter(not_all_equal)
)
valid_documents = st.one_of(valid_cpfs, valid_cnpjs)


@st.composite
def reformatted(draw: st.DrawFn, document: str) -> str:
    """``document`` with separators and whitespace sprinkled in and some letters lower-cased."""
    pieces: list[str] = []
    for character in document:
        pieces.append(draw(st.sampled_from(["", "", ".", "/", "-", " ", "\t", "\u00a0", "\n"])))
        pieces.append(character.lower() if draw(st.booleans()) else character)
    pieces.append(draw(st.sampled_from(["", " ", "-", "\r\n"])))
    return "".join(pieces)


# --- tables ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("758.395.665-00", "75839566500"),
        ("11.222.333/0001-81", "11222333000181"),
        ("12.abc.345/01de-35", "12ABC34501DE35"),
        ("  758 395\t665\n00 ", "75839566500"),
        ("758\u00a0395\u2003665-00", "75839566500"),
        ("a_b(c)", "A_B(C)"),
        ("ç1ı", "ç1ı"),
        ("", ""),
    ],
)
def test_normalize_document(raw: str, expected: str) -> None:
    assert normalize_document(raw) == expected


@pytest.mark.parametrize(
    ("raw", "normalized", "kind"),
    [
        ("75839566500", "75839566500", "cpf"),
        ("758.395.665-00", "75839566500", "cpf"),
        ("11222333000181", "11222333000181", "cnpj"),
        ("11.222.333/0001-81", "11222333000181", "cnpj"),
        ("16.727.230/0001-97", "16727230000197", "cnpj"),
        ("12ABC34501DE35", "12ABC34501DE35", "cnpj"),
        ("12.abc.345/01de-35", "12ABC34501DE35", "cnpj"),
    ],
)
def test_valid_documents(raw: str, normalized: str, kind: DocumentKind) -> None:
    assert classify_document(raw) == DocumentCheck(normalized, kind, None)
    assert classify_document(raw).is_valid
    assert is_valid_cpf(raw) is (kind == "cpf")
    assert is_valid_cnpj(raw) is (kind == "cnpj")


@pytest.mark.parametrize(
    ("raw", "reason_part"),
    [
        (None, "no CPF or CNPJ"),
        ("", "no CPF or CNPJ"),
        (" . / - ", "no CPF or CNPJ"),
        ("7583956650", "10 characters"),
        ("112223330001810", "15 characters"),
        ("75839566501", "CPF check digits"),
        ("75839566510", "CPF check digits"),
        ("11111111111", "all digits equal"),
        ("00000000000", "all digits equal"),
        ("7583956650A", "only digits"),
        ("11222333000182", "CNPJ check digits"),
        ("16727230000179", "CNPJ check digits"),
        ("12ABC34501DE36", "CNPJ check digits"),
        ("12ABD34501DE35", "CNPJ check digits"),
        ("00000000000000", "all characters equal"),
        ("12ABC34501DEA5", "numeric check digits"),
        ("12ÁBC34501DE35", "first 12 positions"),
        ("12_BC34501DE35", "first 12 positions"),
    ],
)
def test_invalid_documents(raw: str | None, reason_part: str) -> None:
    check = classify_document(raw)
    assert not check.is_valid
    assert check.normalized is None
    assert check.kind is None
    assert check.reason is not None
    assert reason_part in check.reason
    if raw is not None:
        assert not is_valid_cpf(raw)
        assert not is_valid_cnpj(raw)


@pytest.mark.parametrize(
    ("raw", "masked"),
    [
        ("75839566500", "***.***.***-00"),
        ("758.395.665-00", "***.***.***-00"),
        ("11.222.333/0001-81", "**.***.***/****-81"),
        ("12abc34501de35", "**.***.***/****-35"),
        ("1234567", "*****67"),
        ("12345", "***45"),
        ("1234", "****"),
        ("1", "*"),
        ("", ""),
    ],
)
def test_mask_document(raw: str, masked: str) -> None:
    assert mask_document(raw) == masked


# --- properties --------------------------------------------------------------------------------


@given(valid_cpfs)
def test_generated_cpfs_pass(cpf: str) -> None:
    assert is_valid_cpf(cpf)
    assert not is_valid_cnpj(cpf)
    assert classify_document(cpf) == DocumentCheck(cpf, "cpf", None)


@given(valid_cnpjs)
def test_generated_cnpjs_pass(cnpj: str) -> None:
    assert is_valid_cnpj(cnpj)
    assert not is_valid_cpf(cnpj)
    assert classify_document(cnpj) == DocumentCheck(cnpj, "cnpj", None)


@given(st.data(), st.one_of(valid_documents, st.text(alphabet=CNPJ_BASE_ALPHABET, max_size=16)))
def test_formatting_never_changes_the_verdict(data: st.DataObject, document: str) -> None:
    formatted = data.draw(reformatted(document))
    assert classify_document(formatted) == classify_document(document)
    assert is_valid_cpf(formatted) is is_valid_cpf(document)
    assert is_valid_cnpj(formatted) is is_valid_cnpj(document)


@given(st.data(), valid_documents)
def test_changing_one_check_digit_always_fails(data: st.DataObject, document: str) -> None:
    position = data.draw(st.sampled_from([len(document) - 2, len(document) - 1]))
    replacement = data.draw(
        st.sampled_from(string.digits).filter(lambda d: d != document[position])
    )
    altered = document[:position] + replacement + document[position + 1 :]
    assert not classify_document(altered).is_valid
    assert not is_valid_cpf(altered)
    assert not is_valid_cnpj(altered)


@given(valid_documents)
def test_mask_never_reveals_more_than_the_last_two(document: str) -> None:
    masked = mask_document(document)
    assert document not in masked.replace(".", "").replace("/", "").replace("-", "")
    assert masked.endswith(document[-2:])
    assert sum(c.isalnum() for c in masked) == 2


@given(st.text(alphabet=string.digits + "ABCDEF./- ", min_size=5, max_size=20))
def test_reasons_never_contain_the_document(raw: str) -> None:
    # Five characters at least: shorter strings could coincide with words of the reason ("CPF").
    check = classify_document(raw)
    document = normalize_document(raw)
    if not check.is_valid and len(document) >= 5:
        assert check.reason is not None
        assert document not in check.reason
