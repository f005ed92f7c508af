"""``COPY`` into a table on PostgreSQL, inside the transaction of a synchronous SQLAlchemy
connection (the worker's ``Database.run_write`` on asyncpg).

asyncpg's ``copy_records_to_table`` streams tuples in the binary format: the worker's bulk
path, where a multi-row ``INSERT ... ON CONFLICT DO NOTHING RETURNING`` has SQLAlchemy bind
every parameter of every row. COPY knows no ``ON CONFLICT``: a row stored already fails the
whole statement with ``RowExists``, and its transaction must be rolled back.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from asyncpg.exceptions import InterfaceError as DriverInterfaceError
from asyncpg.exceptions import PostgresError, UniqueViolationError
from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.util import await_only


class RowExists(Exception):
    """A row COPY was given has a key the table holds already; the transaction is aborted."""


def copy_rows(
    connection: Connection, table: str, columns: Sequence[str], rows: Sequence[tuple[Any, ...]]
) -> None:
    """COPY ``rows`` (tuples in ``columns`` order) into ``table`` within ``connection``'s
    transaction."""
    # SQLAlchemy's asyncpg adapter opens the transaction with its first statement; COPY goes to
    # the driver past it, so a statement comes first (a private hook would save the round trip,
    # one per batch, at the risk of COPY committing on its own should the hook change).
    connection.exec_driver_sql("SELECT 1")
    driver = connection.connection.driver_connection
    if driver is None:
        raise RuntimeError("the connection is closed")
    try:
        await_only(driver.copy_records_to_table(table, records=rows, columns=list(columns)))
    except UniqueViolationError as error:
        raise RowExists(str(error)) from error
    except (PostgresError, DriverInterfaceError) as error:
        # As SQLAlchemy raises the driver's errors of its own statements: the worker then tells
        # an outage (retried) from data the database refuses (dead-lettered) for COPY alike.
        raise DBAPIError(
            f"COPY {table}", None, error, connection_invalidated=driver.is_closed()
        ) from error
