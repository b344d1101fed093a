"""The bench's bulk loads follow the schema: a column that went away is left out, a column the
table now requires gets a neutral value, and the named values land as given."""

import pytest
from sqlalchemy import create_engine, text

from bench.scenarios.table_load import insert_select

pytestmark = pytest.mark.integration


def test_a_load_written_for_an_older_schema_still_loads(postgres_url: str) -> None:
    engine = create_engine(postgres_url)
    with engine.begin() as conn:
        conn.execute(
            text(
                "CREATE TABLE tasks (id bigserial PRIMARY KEY, task_id text NOT NULL, "
                "is_persistent boolean NOT NULL, created_at timestamptz NOT NULL, note text)"
            )
        )
        values = {"task_id": "'task_' || g", "lease_expires_at": "now()", "note": "'n' || g"}
        insert_select(conn, "tasks", values, "FROM generate_series(1, :n) AS g", {"n": 3})
        rows = conn.execute(text("SELECT task_id, is_persistent, note FROM tasks ORDER BY id")).all()
    engine.dispose()
    assert [tuple(r) for r in rows] == [
        ("task_1", False, "n1"),
        ("task_2", False, "n2"),
        ("task_3", False, "n3"),
    ]


def test_a_required_column_of_an_unknown_kind_is_an_error_not_a_guess(postgres_url: str) -> None:
    engine = create_engine(postgres_url)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (id bigserial PRIMARY KEY, spot point NOT NULL)"))
        with pytest.raises(ValueError, match="spot"):
            insert_select(conn, "t", {}, "FROM generate_series(1, 1) AS g", {})
    engine.dispose()
