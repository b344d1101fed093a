"""a job remembers the broker's delivery count of its attempt (a redelivered attempt: its worker was lost)

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-05 11:05:11.315101
"""
from alembic import op
import sqlalchemy as sa


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('persistent_jobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('delivery', sa.Integer(), server_default='1', nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('persistent_jobs', schema=None) as batch_op:
        batch_op.drop_column('delivery')
