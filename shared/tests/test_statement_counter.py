"""Every engine counts the statements it sends (taskhub_db_statements_total{database}), which the
bench divides by the tasks done."""

from prometheus_client import REGISTRY
from sqlalchemy import text

from shared.db import make_engine


def _counted(database: str) -> float:
    return REGISTRY.get_sample_value("taskhub_db_statements_total", {"database": database}) or 0.0


def test_each_statement_sent_is_counted_once(tmp_path) -> None:
    path = tmp_path / "counted.db"
    engine = make_engine(f"sqlite:///{path}")
    before = _counted(str(path))
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (x INTEGER)"))
        conn.execute(text("INSERT INTO t (x) VALUES (:x)"), [{"x": 1}, {"x": 2}])  # executemany: one
        assert conn.execute(text("SELECT count(*) FROM t")).scalar_one() == 2
    engine.dispose()
    assert _counted(str(path)) - before == 3
