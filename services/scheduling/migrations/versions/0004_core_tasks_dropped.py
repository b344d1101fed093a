"""core_tasks dropped: a `base_task` template is asked of core, and scheduling hears of periodic tasks only"""

import sqlalchemy as sa
from alembic import op

from shared.db import BigIntPK, JSONType

revision, down_revision = "0004", "0003"


def upgrade() -> None:
    op.drop_table("core_tasks")


def downgrade() -> None:
    # empty again: the older code fills it from task.created and asks core for what it has not seen
    op.create_table(
        "core_tasks",
        sa.Column("id", BigIntPK, autoincrement=False, nullable=False),
        sa.Column("brand_id", sa.Integer(), nullable=False),
        sa.Column("task_id", sa.String(length=40), nullable=False),
        sa.Column("task_type", sa.String(length=100), nullable=False),
        sa.Column("priority", sa.String(length=10), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("context_data", JSONType, nullable=False),
        sa.Column("max_retries", sa.Integer(), nullable=True),
        sa.Column("timeout_minutes", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_core_tasks"),
    )
