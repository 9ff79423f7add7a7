"""email outbox: a partial index on the unsent rows for the sweep, one on created_at for the retention clean-up

The sweep looks for rows not sent (sent_at IS NULL AND payload IS NOT NULL) whose
next_attempt_at has come: the partial index holds only those, where the full index on
next_attempt_at it replaces held every row kept for a week after its sending. The retention
clean-up deletes rows by created_at. Both are built CONCURRENTLY on PostgreSQL
(create_index_online), so the outbox keeps taking emails during the build.

Revision ID: 0015_outbox_indexes
Revises: 0014_admin_list_indexes
Create Date: 2026-12-07 12:00:00.000000

"""
import sqlalchemy as sa

from app.core.migrate import create_index_online, drop_index_online


# revision identifiers, used by Alembic.
revision = '0015_outbox_indexes'
down_revision = '0014_admin_list_indexes'
branch_labels = None
depends_on = None

UNSENT = 'sent_at IS NULL AND payload IS NOT NULL'


def upgrade():
    create_index_online(
        'ix_email_outbox_unsent_next_attempt_at',
        'email_outbox',
        ['next_attempt_at'],
        postgresql_where=sa.text(UNSENT),
        sqlite_where=sa.text(UNSENT),
    )
    create_index_online('ix_email_outbox_created_at', 'email_outbox', ['created_at'])
    drop_index_online('ix_email_outbox_next_attempt_at', 'email_outbox')


def downgrade():
    create_index_online('ix_email_outbox_next_attempt_at', 'email_outbox', ['next_attempt_at'])
    drop_index_online('ix_email_outbox_created_at', 'email_outbox')
    drop_index_online('ix_email_outbox_unsent_next_attempt_at', 'email_outbox')
