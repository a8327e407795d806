"""Statements run on the database driver's cursor: Core statements compiled once per dialect, their
parameters and results converted by SQLAlchemy's own type processors.

SQLAlchemy Core's execution of a compiled statement (an execution context, a cursor result, row objects
and their processing) costs 40-100 us, more than SQLite's own work for the store's small statements, which
run on every request (a revision read per /recommend, the recorded sessions of each ranked client) and
three per session written. A `DriverStatement` costs the driver's call and the conversions Core applies,
so what it stores and reads is what Core stores and reads (tests/app/test_store.py compares them). In
process on SQLite: a session written 0.35 -> 0.20 ms of CPU, a client's revision read 112 -> 46 us.

A list of IDs is one parameter (`ids_in`): SQLite's `json_each` of a JSON array, PostgreSQL's `= ANY` of
an array, instead of Core's expanding IN, which is rendered anew for each list length.
"""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Callable, Mapping
from typing import Any, cast

from sqlalchemy import JSON, BigInteger, Connection, any_, bindparam, func, select
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Dialect
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ClauseElement, ColumnElement


def ids_in(column: ColumnElement[int], dialect: Dialect) -> ColumnElement[bool]:
    """`column` IN the list of integers given as the parameter `ids`, compiled to one parameter."""
    if dialect.name == "postgresql":
        return column == any_(bindparam("ids", type_=postgresql.ARRAY(BigInteger)))
    listed = func.json_each(bindparam("ids", type_=JSON)).table_valued("value")
    return column.in_(select(listed.c.value))


class DriverStatement:
    """A Core statement compiled for one dialect, run on the driver's cursor of a Core connection (in its
    transaction); the rows it returns are named tuples of its columns (a SELECT's, or an INSERT's or
    UPDATE's RETURNING), converted as Core converts them."""

    def __init__(self, statement: ClauseElement, dialect: Dialect) -> None:
        self._compiled = cast(SQLCompiler, statement.compile(dialect=dialect))
        self._processors: Mapping[str, Callable[[Any], Any]] = {
            name: processor
            for name, bind in self._compiled.binds.items()
            if (processor := bind.type.dialect_impl(dialect).bind_processor(dialect)) is not None
        }
        positional = self._compiled.positional
        self._positions = tuple(self._compiled.positiontup or ()) if positional else None
        columns = list(getattr(statement, "exported_columns", ()))
        self._row: Any = namedtuple("Row", [column.name for column in columns])  # type: ignore[misc]
        results = [column.type.dialect_impl(dialect).result_processor(dialect, None) for column in columns]
        self._results = results if any(results) else None  # None: the driver's values are Core's

    def first(self, connection: Connection, params: Mapping[str, Any]) -> Any | None:
        """The first row the statement returns with `params`, or None."""
        rows = self._run(connection, params, one=True)
        return rows[0] if rows else None

    def all(self, connection: Connection, params: Mapping[str, Any]) -> list[Any]:
        """Every row the statement returns with `params`."""
        return self._run(connection, params, one=False)

    def _run(self, connection: Connection, params: Mapping[str, Any], *, one: bool) -> list[Any]:
        values = self._compiled.construct_params(params)  # the statement's own literals filled in
        for name, processor in self._processors.items():
            values[name] = processor(values[name])
        cursor = connection.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.execute(
                self._compiled.string,
                values if self._positions is None else tuple(values[name] for name in self._positions),
            )
            raw = [] if cursor.description is None else cursor.fetchmany(1) if one else cursor.fetchall()
        finally:
            cursor.close()
        return [self._convert(row) for row in raw]

    def _convert(self, row: tuple[Any, ...]) -> Any:
        if self._results is None:
            return self._row._make(row)
        converted = zip(self._results, row, strict=True)
        values = (value if process is None else process(value) for process, value in converted)
        return self._row._make(values)
