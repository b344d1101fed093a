"""Alembic, driven from code: each service has its own history in services/<svc>/migrations.

`python -m shared.migrations <service> upgrade` (`make migrate`, the Kubernetes migration init
container) and `upgrade(service, engine)` (make run, tests) run the same thing;
`python -m shared.migrations <service> revision -m "..."` (`make revision`) writes the next one. On PostgreSQL an advisory
lock serialises concurrent upgraders (several pods starting together)."""

from __future__ import annotations

import argparse
import importlib
import tempfile
import zlib

from alembic import command
from alembic.config import Config
from alembic.script import Script
from sqlalchemy import Engine, text

from .config import REPO_ROOT, database_url_of
from .db import make_engine


def alembic_config(service: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(REPO_ROOT / "services" / service / "migrations"))
    config.attributes["target_metadata"] = importlib.import_module(f"services.{service}.models").Base.metadata
    return config


def upgrade(service: str, engine: Engine, revision: str = "head") -> None:
    config = alembic_config(service)
    with engine.connect() as connection:
        sqlite = connection.dialect.name == "sqlite"
        if sqlite:
            # batch migrations rebuild tables, and SQLite's DROP TABLE first deletes the rows, which
            # with foreign keys on runs their ON DELETE actions (CASCADE) on the rows referencing
            # them; the pragma only takes effect outside a transaction
            connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
            connection.commit()
        try:
            with connection.begin():
                if connection.dialect.name == "postgresql":
                    lock_id = zlib.crc32(f"taskhub-migrate-{service}".encode())
                    connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": lock_id})
                config.attributes["connection"] = connection
                command.upgrade(config, revision)
        finally:
            if sqlite:
                connection.exec_driver_sql("PRAGMA foreign_keys=ON")
                connection.commit()


def new_revision(service: str, message: str) -> str:
    """Autogenerate the service's next revision, `000N_<message>.py`, from what its models have
    that an empty SQLite database upgraded to head lacks (SQLite, so that Alembic writes batch
    operations, which run on both dialects). Returns the new file's path: read it, then commit."""
    versions = REPO_ROOT / "services" / service / "migrations" / "versions"
    number = 1 + max((int(path.name[:4]) for path in versions.glob("[0-9][0-9][0-9][0-9]_*.py")), default=0)
    with tempfile.TemporaryDirectory() as folder:
        engine = make_engine(f"sqlite:///{folder}/{service}.db")
        try:
            upgrade(service, engine)
            config = alembic_config(service)
            with engine.begin() as connection:
                config.attributes["connection"] = connection
                script = command.revision(config, message=message, autogenerate=True, rev_id=f"{number:04d}")
        finally:
            engine.dispose()
    assert isinstance(script, Script)  # one head, so one script
    return script.path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("service")
    parser.add_argument("action", choices=["upgrade", "revision", "current"])
    parser.add_argument("-m", "--message", default="change")
    args = parser.parse_args()
    if args.action == "revision":
        print(new_revision(args.service, args.message))
        return
    # the service's own database is the only setting a migration needs
    engine = make_engine(database_url_of(args.service))
    try:
        if args.action == "upgrade":
            upgrade(args.service, engine)
        else:
            config = alembic_config(args.service)
            with engine.begin() as connection:
                config.attributes["connection"] = connection
                command.current(config)
    finally:
        engine.dispose()


if __name__ == "__main__":
    main()
