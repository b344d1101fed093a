"""manual worker records belong to a brand; a brand's recent test sends are counted

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-05 07:00:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('workers', schema=None) as batch_op:
        batch_op.add_column(sa.Column('brand_id', sa.Integer(), nullable=True))
    with op.batch_alter_table('notifications', schema=None) as batch_op:
        batch_op.create_index('ix_notifications_brand_created', ['brand_id', 'created_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('notifications', schema=None) as batch_op:
        batch_op.drop_index('ix_notifications_brand_created')
    with op.batch_alter_table('workers', schema=None) as batch_op:
        batch_op.drop_column('brand_id')
