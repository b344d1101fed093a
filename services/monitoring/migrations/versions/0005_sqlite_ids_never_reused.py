"""ids are never reused on SQLite

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-05 07:00:00
"""
from shared.alembic_env.sqlite_ids import never_reuse_ids

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # make run (SQLite) gave a deleted row's id to the next one, and the other services took the
    # new object for the old (issue 13); PostgreSQL never reuses an id: nothing to do there
    never_reuse_ids("metrics_records", "alert_rules", "alert_events", "notifications", "workers")


def downgrade() -> None:
    pass  # AUTOINCREMENT only stops reuse; keeping it is harmless
