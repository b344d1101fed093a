"""Bulk loads that outlive a schema change: `INSERT INTO table (...) SELECT ...` built from what
the table has now. A column the load names but the table no longer has is left out; a column the
table requires (NOT NULL, no default) that the load does not name gets a neutral value of its
type. So a migration that adds a flag or drops a bookkeeping column does not break the bench
(CI runs it on every submission), and a load never hides a column it means to fill."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection, text

NEUTRAL = {
    "boolean": "false",
    "smallint": "0",
    "integer": "0",
    "bigint": "0",
    "real": "0",
    "double precision": "0",
    "numeric": "0",
    "text": "''",
    "character varying": "''",
    "jsonb": "'{}'::jsonb",
    "json": "'{}'::json",
    "timestamp with time zone": "now()",
    "timestamp without time zone": "now()",
    "date": "current_date",
}

COLUMNS = """
SELECT column_name, data_type, is_nullable = 'NO' AND column_default IS NULL AND is_identity = 'NO'
FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = :table
"""


def insert_select(
    conn: Connection, table: str, values: Mapping[str, str], source: str, params: Mapping[str, Any]
) -> None:
    """`values`: column -> SQL expression over `source` (e.g. `FROM generate_series(1, :n) AS g`)."""
    columns = {
        name: (kind, required) for name, kind, required in conn.execute(text(COLUMNS), {"table": table})
    }
    chosen = {name: expression for name, expression in values.items() if name in columns}
    for name, (kind, required) in columns.items():
        if required and name not in chosen:
            if kind not in NEUTRAL:
                raise ValueError(f"{table}.{name} ({kind}) needs a value the bench cannot make up")
            chosen[name] = NEUTRAL[kind]
    sql = f"INSERT INTO {table} ({', '.join(chosen)}) SELECT {', '.join(chosen.values())} {source}"
    conn.execute(text(sql), dict(params))
