"""a job remembers the broker's delivery count of its attempt (a redelivered attempt: its worker was lost)"""

import sqlalchemy as sa
from alembic import op

revision, down_revision = "0004", "0003"


def upgrade() -> None:
    op.add_column("persistent_jobs", sa.Column("delivery", sa.Integer(), server_default="1", nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("persistent_jobs") as batch_op:  # SQLite rebuilds the table to drop a column
        batch_op.drop_column("delivery")
