"""The migration runner's registrations: each service's schema, ordered by what reads what."""

from __future__ import annotations

from pathlib import Path

import pytest

from services import system
from shared.db import MigrationError, SchemaMigrations, in_dependency_order

HERE = Path(__file__).parent


def _reg(schema: str, *after: str) -> SchemaMigrations:
    return SchemaMigrations(schema, HERE, after=after)


def test_every_service_registers_its_own_schema_with_files() -> None:
    registered = system.migrations()
    assert sorted(r.schema for r in registered) == sorted(system.SERVICES)
    for registration in registered:
        files = registration.files()
        assert files, registration.schema
        assert [m.version for m in files] == sorted(m.version for m in files)
        assert registration.directory.parts[-3:] == ("services", registration.schema, "migrations")


def test_a_schema_comes_after_the_schemas_it_reads() -> None:
    ordered = [r.schema for r in in_dependency_order(system.migrations())]
    assert ordered.index("ledger") < ordered.index("mapper")
    assert [r.schema for r in in_dependency_order([_reg("b", "a"), _reg("a")])] == ["a", "b"]
    assert [r.schema for r in in_dependency_order([_reg("a"), _reg("c"), _reg("b", "a")])] == [
        "a",
        "c",
        "b",
    ]


def test_a_schema_read_but_not_registered_is_not_waited_for() -> None:
    """A service migrating alone registers only its own schema."""
    assert [r.schema for r in in_dependency_order([_reg("mapper", "ledger")])] == ["mapper"]


def test_cycles_duplicates_and_odd_names_are_refused() -> None:
    with pytest.raises(MigrationError, match="cannot be ordered"):
        in_dependency_order([_reg("a", "b"), _reg("b", "a")])
    with pytest.raises(MigrationError, match="twice"):
        in_dependency_order([_reg("a"), _reg("a")])
    with pytest.raises(MigrationError, match="unsupported"):
        _reg("drop table x")
