"""outbox rows wake the relay with NOTIFY and are deleted once published

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-05 06:30:00
"""
from alembic import op
import sqlalchemy as sa
import shared.db


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None

# One NOTIFY per inserting statement (not per row), delivered at commit: the relay sleeps until then.
NOTIFY_FUNCTION = """
CREATE OR REPLACE FUNCTION taskhub_outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('taskhub_outbox', '');
    RETURN NULL;
END $$
"""


def upgrade() -> None:
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.drop_index('ix_outbox_unpublished', postgresql_where=sa.text('published_at IS NULL'), sqlite_where=sa.text('published_at IS NULL'))
        batch_op.drop_index('ix_outbox_published_at')
        batch_op.drop_column('published_at')
    if op.get_bind().dialect.name == 'postgresql':
        op.execute(NOTIFY_FUNCTION)
        op.execute('CREATE TRIGGER outbox_notify AFTER INSERT ON outbox FOR EACH STATEMENT EXECUTE FUNCTION taskhub_outbox_notify()')


def downgrade() -> None:
    if op.get_bind().dialect.name == 'postgresql':
        op.execute('DROP TRIGGER IF EXISTS outbox_notify ON outbox')
        op.execute('DROP FUNCTION IF EXISTS taskhub_outbox_notify()')
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.add_column(sa.Column('published_at', shared.db.UTCDateTime(timezone=True), nullable=True))
        batch_op.create_index('ix_outbox_published_at', ['published_at'], unique=False)
        batch_op.create_index('ix_outbox_unpublished', ['id'], unique=False, postgresql_where=sa.text('published_at IS NULL'), sqlite_where=sa.text('published_at IS NULL'))
