"""Plausible Brazilian shop data for simulated orders: buyer names, e-mails and phones, valid CPF
and CNPJ numbers (check digits computed here), addresses, a small catalogue of products and the
payment gateways a Nuvemshop store typically uses. Everything is drawn from a caller-supplied
`random.Random`, so a seeded simulator produces the same orders every run.
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

FIRST_NAMES = (
    "Maria", "Ana", "Juliana", "Fernanda", "Camila", "Beatriz", "Larissa", "Patrícia",
    "João", "José", "Pedro", "Lucas", "Gabriel", "Rafael", "Thiago", "André", "Bruno",
)  # fmt: skip
LAST_NAMES = (
    "Silva", "Santos", "Oliveira", "Souza", "Pereira", "Costa", "Rodrigues", "Almeida",
    "Nascimento", "Lima", "Araújo", "Fernandes", "Carvalho", "Gomes", "Ribeiro", "Conceição",
)  # fmt: skip
BUSINESS_SUFFIXES = ("LTDA", "ME", "EIRELI", "Comércio LTDA", "Serviços LTDA")
CITIES = (
    ("Sorocaba", "São Paulo", "18010220", "Centro", "Rua Doutor Azevedo Sampaio"),
    ("São Paulo", "São Paulo", "01310100", "Bela Vista", "Avenida Paulista"),
    ("Rio de Janeiro", "Rio de Janeiro", "22041001", "Copacabana", "Rua Barata Ribeiro"),
    ("Belo Horizonte", "Minas Gerais", "30130010", "Centro", "Avenida Afonso Pena"),
    ("Curitiba", "Paraná", "80020310", "Centro", "Rua XV de Novembro"),
    ("Recife", "Pernambuco", "50030230", "Boa Vista", "Rua da Aurora"),
    ("Porto Alegre", "Rio Grande do Sul", "90010150", "Centro Histórico", "Rua dos Andradas"),
    ("São João del-Rei", "Minas Gerais", "36307352", "", "Praça Doutor Antônio Viegas"),
)
# Brazilian states by the name the API writes in `*_province`; fulfillment orders carry the code.
PROVINCE_CODES = {
    "São Paulo": "SP",
    "Rio de Janeiro": "RJ",
    "Minas Gerais": "MG",
    "Paraná": "PR",
    "Pernambuco": "PE",
    "Rio Grande do Sul": "RS",
}
# The address "floor" is Brazil's complement: mostly empty, sometimes an apartment or a block.
COMPLEMENTS = ("", "", "", "Apto 12", "Casa 2", "Bloco B, ap. 304", "Fundos")
CATALOGUE = (
    ("Camiseta Básica Algodão", "59.90"),
    ("Caneca de Cerâmica 300ml", "39.90"),
    ("Mesa de Roble", "6000.00"),
    ("Tênis Corrida Leve", "289.90"),
    ("Mochila Impermeável 25L", "199.00"),
    ("Kit 3 Meias Esportivas", "49.90"),
    ("Luminária de Mesa LED", "129.90"),
    ("Garrafa Térmica 1L", "89.90"),
    ("Fone Bluetooth", "149.00"),
    ("Vela Aromática Lavanda", "34.50"),
    ("Caderno Pautado A5", "24.90"),
    ("Sabonete Artesanal", "12.00"),
)
# (gateway, gateway_name, method, card company or None, max installments). An order created
# through the API without a gateway reads `not-provided`, an empty `gateway_name` and no method.
GATEWAYS = (
    ("nuvempago", "Pago Nube", "pix", None, 1),
    ("mercadopago", "Mercado Pago", "credit_card", "visa", 6),
    ("mercadopago", "Mercado Pago", "credit_card", "mastercard", 12),
    ("pagseguro", "PagSeguro", "boleto", None, 1),
    ("pagarme", "Pagar.me", "debit_card", "elo", 1),
    ("offline", "Transferência Bancária", "custom", None, 1),
    ("not-provided", "", None, None, 1),
)
SHIPPING_OPTIONS = (
    (Decimal("0.00"), Decimal("18.40"), "Correios", "PAC"),
    (Decimal("15.90"), Decimal("0.00"), "Correios", "PAC"),
    (Decimal("27.50"), Decimal("0.00"), "Correios", "SEDEX"),
    (Decimal("12.00"), Decimal("0.00"), "Jadlog", "Expresso"),
)
CANCEL_REASONS = ("customer", "inventory", "fraud", "other")
PRODUCT_ID_BASE = 111_334_785
VARIANT_ID_BASE = 426_215_948


def _check_digit(digits: list[int], weights: list[int]) -> int:
    remainder = sum(d * w for d, w in zip(digits, weights, strict=True)) % 11
    return 0 if remainder < 2 else 11 - remainder


def make_cpf(rng: random.Random) -> str:
    """A valid, random CPF (11 digits, never all equal)."""
    while True:
        base = [rng.randrange(10) for _ in range(9)]
        if len(set(base)) > 1:
            break
    base.append(_check_digit(base, list(range(10, 1, -1))))
    base.append(_check_digit(base, list(range(11, 1, -1))))
    return "".join(map(str, base))


def make_cnpj(rng: random.Random) -> str:
    """A valid, random numeric CNPJ (14 digits, branch 0001)."""
    base = [rng.randrange(10) for _ in range(8)] + [0, 0, 0, 1]
    base.append(_check_digit(base, [5, 4, 3, 2, 9, 8, 7, 6, 5, 4, 3, 2]))
    base.append(_check_digit(base, [6, 5, 4, 3, 2, 9, 8, 7, 6, 5, 4, 3, 2]))
    return "".join(map(str, base))


def make_phone(rng: random.Random, *, mobile: bool = True) -> str:
    """A Brazilian phone in E.164: `+55` + area code + 9-digit mobile or 8-digit landline."""
    area = rng.choice((11, 15, 21, 31, 41, 51, 81))
    number = f"9{rng.randrange(10**8):08d}" if mobile else f"3{rng.randrange(10**7):07d}"
    return f"+55{area}{number}"


def _slug(text: str) -> str:
    table = str.maketrans("áàãâéêíóôõúçÁÀÃÂÉÊÍÓÔÕÚÇ", "aaaaeeioooucAAAAEEIOOOUC")
    return "".join(ch for ch in text.translate(table).lower() if ch.isalnum() or ch == ".")


def make_address(rng: random.Random) -> dict[str, Any]:
    """A Brazilian address with the API's parts: street, number, floor (the complement),
    locality (the neighbourhood, sometimes empty), city, province (the state's name), zipcode
    and country code."""
    city, province, zipcode, locality, street = rng.choice(CITIES)
    return {
        "street": street,
        "number": rng.choice((str(rng.randrange(1, 2000)), str(rng.randrange(1, 200)), "S/N")),
        "floor": rng.choice(COMPLEMENTS),
        "locality": locality,
        "city": city,
        "province": province,
        "zipcode": zipcode,
        "country": "BR",
    }


def make_customer(rng: random.Random, customer_id: int) -> dict[str, Any]:
    """A buyer profile: a person (CPF) most of the time, a company (CNPJ) about a fifth of it."""
    first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
    name = f"{first} {last}"
    company = rng.random() < 0.2
    mobile = make_phone(rng)
    return {
        "id": customer_id,
        "name": name,
        "email": f"{_slug(first)}.{_slug(last)}{customer_id % 1000}@example.com.br",
        "identification": make_cnpj(rng) if company else make_cpf(rng),
        "phone": mobile,
        "billing_phone": make_phone(rng, mobile=False) if company else mobile,
        "business_name": f"{last} {rng.choice(BUSINESS_SUFFIXES)}" if company else "",
        "document_type": "cnpj" if company else "cpf",
        "customer_type": "company" if company else "individual",
        "address": make_address(rng),
    }


def apply_customer_spec(base: dict[str, Any], spec: Mapping[str, Any]) -> dict[str, Any]:
    """Overrides over a generated profile, kept coherent: a given name also renames the e-mail,
    a 14-character identification (punctuation aside) makes the buyer a company, and a given
    `address` replaces only the parts it names."""
    customer = {**base, **spec}
    if isinstance(spec.get("address"), Mapping):
        customer["address"] = {**base["address"], **spec["address"]}
    if "name" in spec and "email" not in spec:
        first, _, rest = str(spec["name"]).strip().partition(" ")
        local = f"{_slug(first) or 'cliente'}.{_slug(rest.replace(' ', '')) or 'nuvem'}"
        customer["email"] = f"{local}{int(customer['id']) % 1000}@example.com.br"
    if "identification" in spec:
        company = len(re.sub(r"[\s./-]", "", str(spec["identification"]))) == 14
        defaults = {
            "document_type": "cnpj" if company else "cpf",
            "customer_type": "company" if company else "individual",
            "business_name": customer["name"] if company else "",
        }
        customer.update({k: v for k, v in defaults.items() if k not in spec})
    return customer


def catalogue_line(rng: random.Random, index: int | None = None) -> dict[str, Any]:
    """One product line drawn from the catalogue (stable product and variant ids per entry)."""
    position = rng.randrange(len(CATALOGUE)) if index is None else index % len(CATALOGUE)
    name, price = CATALOGUE[position]
    return {
        "name": name,
        "price": Decimal(price),
        "quantity": rng.choice((1, 1, 1, 2, 3)),
        "sku": f"SKU-{position + 1:04d}",
        "barcode": None if position % 3 == 0 else f"789{position:010d}",
        "product_id": PRODUCT_ID_BASE + position * 17,
        "variant_id": VARIANT_ID_BASE + position * 31,
    }
