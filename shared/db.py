"""SQLAlchemy 2 plumbing shared by every service: engines, the UTC datetime type, JSON that is
JSONB on PostgreSQL, and the tables every service database has (outbox, inbox)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from prometheus_client import Counter
from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Connection,
    DateTime,
    Engine,
    Float,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    create_engine,
    event,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import DBAPIError, DisconnectionError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import sessionmaker
from sqlalchemy.sql.expression import FunctionElement
from sqlalchemy.types import TypeDecorator

# Named constraints so that Alembic migrations are stable on every backend.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

JSONType = JSON().with_variant(JSONB(), "postgresql")
# SQLite only auto-increments INTEGER PRIMARY KEY; PostgreSQL gets a 64-bit key.
BigIntPK = BigInteger().with_variant(Integer(), "sqlite")
# `__table_args__` of tables with such a key: without AUTOINCREMENT, SQLite gives the id of the
# newest deleted row to the next one, and the other services that remember that id (a deleted
# task's tombstone) would take the new object for the old (PostgreSQL never reuses a BIGSERIAL)
SQLITE_IDS = {"sqlite_autoincrement": True}


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite forgets the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def normalize_url(url: str) -> str:
    """Accept plain postgresql:// URLs and use psycopg 3 for them."""
    for plain in ("postgresql://", "postgres://"):
        if url.startswith(plain):
            return "postgresql+psycopg://" + url[len(plain) :]
    return url


def make_engine(url: str, **kwargs: Any) -> Engine:
    url = normalize_url(url)
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30}, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 20)
    kwargs.setdefault("pool_timeout", 5)
    kwargs.setdefault("pool_recycle", 1800)
    # fail fast when the database is down: 5 s to connect, 15 s per statement
    connect_args = {"connect_timeout": 5, "options": "-c statement_timeout=15000"}
    engine = create_engine(url, connect_args=connect_args, **kwargs)
    event.listen(engine, "checkin", _note_checkin)
    event.listen(engine, "checkout", _ping_if_idle)
    return engine


# A connection back in the pool for longer than this is pinged before it is used again: one that
# served a moment ago is almost surely alive, and pinging every checkout costs a round trip per
# transaction (a dead one found later is a DBAPIError the consumers treat as transient).
PING_AFTER_IDLE_SECONDS = 10.0


def _note_checkin(dbapi_connection: Any, record: Any) -> None:
    record.info["checked_in_at"] = time.monotonic()


def _ping_if_idle(dbapi_connection: Any, record: Any, proxy: Any) -> None:
    checked_in = record.info.get("checked_in_at")
    if checked_in is None or time.monotonic() - checked_in < PING_AFTER_IDLE_SECONDS:
        return
    try:
        cursor = dbapi_connection.cursor()
        cursor.execute("SELECT 1")
        cursor.close()
        dbapi_connection.rollback()
    except Exception as exc:
        # the pool throws this connection away and checks out a fresh one
        raise DisconnectionError(f"pooled connection unusable: {exc!r}") from exc


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


# Every statement any engine of the process hands to its driver (an executemany once), by
# database: the bench divides it by the tasks done. PostgreSQL cannot count statements itself
# without pg_stat_statements, which needs a restart to load.
DB_STATEMENTS = Counter("taskhub_db_statements_total", "SQL statements sent, by database", ["database"])


@event.listens_for(Engine, "before_cursor_execute")
def _count_statement(conn: Any, *_: Any) -> None:
    DB_STATEMENTS.labels(conn.engine.url.database or "").inc()


def make_session_factory(engine: Engine) -> sessionmaker[Any]:
    return sessionmaker(bind=engine, expire_on_commit=False)


def unreachable(exc: BaseException) -> bool:
    """Is this the database being away (connection refused or lost, restarting, pool exhausted),
    rather than something wrong with what was asked of it? Consumers keep their deliveries and
    try again; the API answers 503."""
    if isinstance(exc, PoolTimeout):
        return True
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(exc, OperationalError) and _connection_trouble(str(exc.orig))


def _connection_trouble(message: str) -> bool:
    text = message.lower()
    return any(
        marker in text
        for marker in (
            "connection",
            "could not connect",
            "server closed",
            "terminating",
            "shutting down",
            "starting up",
            "recovery mode",
            "timeout",
            "database is locked",
        )
    )


def is_postgres(engine: Engine | Connection) -> bool:
    return engine.dialect.name == "postgresql"


def upsert(bind: Any, table: Any) -> Any:
    """`INSERT INTO table` in the bind's dialect, so that `.on_conflict_do_update()` works on
    PostgreSQL and SQLite alike (their INSERT constructs share that method)."""
    return (postgresql_insert if bind.dialect.name == "postgresql" else sqlite_insert)(table)


def messaging_tables(metadata: MetaData) -> tuple[Table, Table]:
    """The outbox and inbox tables, added to a service's own metadata (and so to its migrations)."""
    outbox = Table(
        "outbox",
        metadata,
        Column("id", BigIntPK, primary_key=True, autoincrement=True),
        Column("message_id", String(64), nullable=False, unique=True),
        Column("exchange", String(32), nullable=False),
        Column("routing_key", String(100), nullable=False),
        Column("body", LargeBinary, nullable=False),
        Column("headers", JSONType, nullable=False, default=dict),
        Column("created_at", UTCDateTime, nullable=False),
        Column("attempts", Integer, nullable=False, default=0),
    )
    # Only unpublished rows live here (the relay deletes what it published), so the relay's query,
    # rows in id order, reads the primary key. On PostgreSQL an insert notifies the relay (a
    # statement trigger, see each service's migration "outbox notifies and forgets").
    inbox = Table(
        "inbox",
        metadata,
        Column("consumer", String(64), primary_key=True),
        Column("event_id", String(64), primary_key=True),
        Column("applied_at", UTCDateTime, nullable=False, index=True),
    )
    return outbox, inbox


class seconds_between(FunctionElement[float]):  # noqa: N801 - used like a SQL function
    """`seconds_between(later, earlier)`: an interval in seconds on PostgreSQL and SQLite."""

    type = Float()
    inherit_cache = True
    name = "seconds_between"


@compiles(seconds_between, "postgresql")
def _seconds_between_pg(element: Any, compiler: Any, **kw: Any) -> str:
    later, earlier = list(element.clauses)
    return f"EXTRACT(EPOCH FROM ({compiler.process(later, **kw)} - {compiler.process(earlier, **kw)}))"


@compiles(seconds_between)
def _seconds_between_sqlite(element: Any, compiler: Any, **kw: Any) -> str:
    later, earlier = list(element.clauses)
    return (
        f"((julianday({compiler.process(later, **kw)}) - "
        f"julianday({compiler.process(earlier, **kw)})) * 86400.0)"
    )
