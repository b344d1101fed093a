"""leases off the task row; persistent tasks known to core; a partial index for due dispatches

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-05 06:20:18
"""
from alembic import op
import sqlalchemy as sa
import shared.db


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('task_leases',
    sa.Column('task_pk', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=False, nullable=False),
    sa.Column('attempt', sa.Integer(), nullable=False),
    sa.Column('worker_name', sa.String(length=200), nullable=False),
    sa.Column('expires_at', shared.db.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('task_pk', name=op.f('pk_task_leases'))
    )
    op.create_index(op.f('ix_task_leases_expires_at'), 'task_leases', ['expires_at'], unique=False)
    # SQLite rebuilds the table: keep its ids never reused (revision 0002)
    with op.batch_alter_table('tasks', schema=None, table_kwargs={'sqlite_autoincrement': True}) as batch_op:
        batch_op.add_column(sa.Column('is_persistent', sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.drop_index('ix_tasks_lease')
        batch_op.drop_index('ix_tasks_dispatch_due')
        batch_op.create_index('ix_tasks_dispatch_due', ['dispatch_due_at'], unique=False, postgresql_where=sa.text('dispatch_due_at IS NOT NULL'), sqlite_where=sa.text('dispatch_due_at IS NOT NULL'))
        batch_op.drop_column('lease_expires_at')
    with op.batch_alter_table('tasks', schema=None, table_kwargs={'sqlite_autoincrement': True}) as batch_op:
        batch_op.alter_column('is_persistent', server_default=None)


def downgrade() -> None:
    with op.batch_alter_table('tasks', schema=None) as batch_op:
        batch_op.add_column(sa.Column('lease_expires_at', shared.db.UTCDateTime(timezone=True), nullable=True))
        batch_op.drop_index('ix_tasks_dispatch_due')
        batch_op.create_index('ix_tasks_dispatch_due', ['dispatch_due_at'], unique=False)
        batch_op.create_index('ix_tasks_lease', ['lease_expires_at'], unique=False)
        batch_op.drop_column('is_persistent')
    op.drop_index(op.f('ix_task_leases_expires_at'), table_name='task_leases')
    op.drop_table('task_leases')
