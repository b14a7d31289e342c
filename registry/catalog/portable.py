"""SQL whose meaning would otherwise depend on the database: the one place that knows the dialects.

``by_code_point(column)`` orders text by code point, as SQLite (``BINARY``) and Python's ``sorted``
do. PostgreSQL orders by the database's collation (a language's rules, e.g. ``a < B < _x`` under en-US),
so there the column is ordered ``COLLATE "C"``.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.visitors import InternalTraversal


class by_code_point(ColumnElement[str]):  # noqa: N801  (used like a SQL function)
    """``column`` for ORDER BY, ordered by code point on every backend."""

    inherit_cache = True
    _traverse_internals = [("column", InternalTraversal.dp_clauseelement)]

    def __init__(self, column: ColumnElement[str]) -> None:
        self.column = column
        self.type = column.type


@compiles(by_code_point)
def _as_is(element: by_code_point, compiler: SQLCompiler, **kw: Any) -> str:
    return compiler.process(element.column, **kw)


@compiles(by_code_point, "postgresql")
def _collate_c(element: by_code_point, compiler: SQLCompiler, **kw: Any) -> str:
    return f'{compiler.process(element.column, **kw)} COLLATE "C"'
