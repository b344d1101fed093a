"""Alembic, driven from code: each service has its own history in services/<svc>/migrations.

`python -m shared.migrations <service> upgrade` (the Kubernetes migration Job / init container)
and `upgrade(service, engine)` (make run, tests) run the same thing. On PostgreSQL an advisory
lock serialises concurrent upgraders (several pods starting together)."""

from __future__ import annotations

import argparse
import importlib
import zlib

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, text

from .config import REPO_ROOT, load_settings
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("service")
    parser.add_argument("action", choices=["upgrade", "revision", "current"])
    parser.add_argument("-m", "--message", default="change")
    args = parser.parse_args()
    settings = load_settings(args.service)
    engine = make_engine(settings.database_url)
    if args.action == "upgrade":
        upgrade(args.service, engine)
    else:
        config = alembic_config(args.service)
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            if args.action == "revision":
                command.revision(config, message=args.message, autogenerate=True)
            else:
                command.current(config)


if __name__ == "__main__":
    main()
