"""SQL building blocks of the rollups and the reports: time buckets, exact money sums, and the
defaults of an unattributed conversion's columns (what is counted is ``measures``')."""

from __future__ import annotations

from typing import Any

from sqlalchemy import BigInteger, Dialect, String, TypeDecorator, func, literal_column
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from backend.core.clock import HOUR_MS


def bucket_of(at_ms: Any, size_ms: int) -> Any:
    """The start of the ``size_ms`` bucket of an epoch-milliseconds column. The size is
    written into the SQL (not bound), so PostgreSQL sees the SELECT and GROUP BY
    expressions as the same."""
    size = literal_column(str(int(size_ms)), BigInteger)
    return (at_ms // size) * size


def hour_of(at_ms: Any) -> Any:
    """The start of the UTC hour of an epoch-milliseconds column."""
    return bucket_of(at_ms, HOUR_MS)


class _ExactTotal(TypeDecorator[int]):
    """A sum read back as a Python int: SQLite's in two halves (``"high:low"``), PostgreSQL's
    ``numeric`` as it is."""

    impl = String
    cache_ok = True

    def process_result_value(self, value: Any, dialect: Dialect) -> int:
        if isinstance(value, str):
            high, _, low = value.partition(":")
            return (int(high) << 32) + int(low)
        return int(value or 0)


class exact_sum(FunctionElement[int]):
    """``coalesce(sum(column), 0)`` that no number of rows can overflow, for money: SQLite's
    ``sum`` of 64-bit integers fails past 2**63 (and its ``total`` is a float), so there the
    high and low 32 bits are summed apart, each far from overflowing, and joined in Python;
    PostgreSQL sums ``bigint`` into ``numeric`` by itself. Not for ``INSERT ... SELECT``: the
    SQLite form is text."""

    type = _ExactTotal()
    inherit_cache = True


@compiles(exact_sum)
def _exact_sum(element: exact_sum, compiler: SQLCompiler, **kw: Any) -> str:
    return f"coalesce(sum({compiler.process(element.clauses, **kw)}), 0)"


@compiles(exact_sum, "sqlite")
def _exact_sum_sqlite(element: exact_sum, compiler: SQLCompiler, **kw: Any) -> str:
    value = compiler.process(element.clauses, **kw)
    return (
        f"printf('%d:%d', coalesce(sum(({value}) >> 32), 0),"
        f" coalesce(sum(({value}) & 4294967295), 0))"
    )


def or_empty(column: Any) -> Any:
    """``column``, or '' where NULL (a conversion without a click); the constant is written
    into the SQL for the same reason as in ``bucket_of``."""
    return func.coalesce(column, literal_column("''"))


def or_zero(column: Any) -> Any:
    """``column``, or 0 where NULL (an unattributed conversion's partner, campaign, link)."""
    return func.coalesce(column, literal_column("0"))
