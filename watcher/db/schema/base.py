"""The shared MetaData (one naming convention for every constraint) and column helpers."""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    DateTime,
    Identity,
    MetaData,
    text,
)

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)


def id_column() -> Column[int]:
    return Column("id", BigInteger, Identity(always=False), primary_key=True)


def created_at() -> Column[Any]:
    return Column(
        "created_at", DateTime(timezone=True), nullable=False, server_default=text("now()")
    )


def updated_at() -> Column[Any]:
    return Column(
        "updated_at", DateTime(timezone=True), nullable=False, server_default=text("now()")
    )


def name_checks(table: str, column: str = "name", *, folded: bool = True) -> list[CheckConstraint]:
    normal = f"lower(btrim({column}))" if folded else f"btrim({column})"
    return [
        CheckConstraint(f"{column} = {normal}", name=f"{column}_normalised"),
        CheckConstraint(f"length({column}) between 1 and 150", name=f"{column}_length"),
    ]
