"""Column types the ORM models and the migrations share (kept stable: old migrations use them).

``text_column(n)`` is ``VARCHAR(n)`` on SQLite, which keeps longer values whole anyway, and unbounded
``TEXT`` on PostgreSQL, which would refuse them: a catalog stores the same strings on either backend
(paths, tensor names, architectures and other text an upstream sends).
"""

from __future__ import annotations

from sqlalchemy import String, Text
from sqlalchemy.types import TypeEngine


def text_column(length: int) -> TypeEngine[str]:
    """A string column's type: VARCHAR(length), but TEXT on PostgreSQL."""
    return String(length).with_variant(Text(), "postgresql")
