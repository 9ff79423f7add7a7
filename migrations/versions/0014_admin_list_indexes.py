"""admin user list: an index in id order for each filter, trigrams for the email substring

GET /admin/users pages by key and counts at most 10,001 rows; these indexes let each filter
read only what it returns. `(group_id, id)` replaces `ix_users_group_id` (it serves the
foreign key as well); the inactive and two-factor indexes are partial, as those are the rare
values (the common ones walk the primary key). Each carries the other filters' columns
(INCLUDE, PostgreSQL), so a combination is decided inside one index.

PostgreSQL only: the pg_trgm extension, a GIN trigram index of the email spelt in letters
(separators as two letters, `q` as `qq`: the model's `email_trigram_text`, which must stay the
same expression) with a finer histogram, statistics of how the group and the two flags go
together, and an ANALYZE, without which the planner knows nothing of the new expression and
would read the trigram index for the most common email parts too. Every index is built
CONCURRENTLY (no write waits for it); on a large table that takes longer than
DATABASE_STATEMENT_TIMEOUT (a million users: about 30 s): run the upgrade with
DATABASE_STATEMENT_TIMEOUT=0, as the compose migrator does. Stopped half-way, it can be run
again. The downgrade keeps the extension, which other schemas of the database may use.

Revision ID: 0014_admin_list_indexes
Revises: 0013_oidc
Create Date: 2026-12-20 12:00:00.000000

"""
from alembic import op
import sqlalchemy as sa

from app.core.migrate import create_index_online, drop_index_online


# revision identifiers, used by Alembic.
revision = '0014_admin_list_indexes'
down_revision = '0013_oidc'
branch_labels = None
depends_on = None

# app/identity/models.py, email_trigram_text, as this revision builds it.
EMAIL_TRIGRAM_TEXT = (
    "replace(replace(replace(replace(replace(replace(replace(email, 'q', 'qq'), '.', 'qd'),"
    " '@', 'qa'), '_', 'qu'), '+', 'qp'), '-', 'qh'), '''', 'qs')"
)


def _postgresql():
    return op.get_bind().dialect.name == 'postgresql'


def upgrade():
    if _postgresql():
        op.execute('CREATE EXTENSION IF NOT EXISTS pg_trgm')
    create_index_online(
        'ix_users_group_id_id', 'users', ['group_id', 'id'],
        postgresql_include=['is_active', 'mfa_enabled'],
    )
    drop_index_online('ix_users_group_id', 'users')
    create_index_online(
        'ix_users_inactive_id', 'users', ['id'],
        postgresql_include=['group_id', 'mfa_enabled'],
        postgresql_where=sa.text('NOT is_active'),
        sqlite_where=sa.text('NOT is_active'),
    )
    create_index_online(
        'ix_users_mfa_enabled_id', 'users', ['id'],
        postgresql_include=['group_id', 'is_active'],
        postgresql_where=sa.text('mfa_enabled'),
        sqlite_where=sa.text('mfa_enabled'),
    )
    if _postgresql():
        create_index_online(
            'ix_users_email_trigrams', 'users',
            [sa.text(f'({EMAIL_TRIGRAM_TEXT}) gin_trgm_ops')],
            postgresql_using='gin',
        )
        # A finer histogram of the spelt emails (500 buckets, 100 by default): the planner then
        # tells a part that one user in a few hundred holds from one that nobody holds, and
        # walks the primary key for the first, where the trigram index would fetch them all.
        op.execute('ALTER INDEX ix_users_email_trigrams ALTER COLUMN 1 SET STATISTICS 500')
        op.execute(
            'CREATE STATISTICS IF NOT EXISTS users_admin_filters (mcv)'
            ' ON group_id, is_active, mfa_enabled FROM users'
        )
        op.execute('ANALYZE users')


def downgrade():
    if _postgresql():
        op.execute('DROP STATISTICS IF EXISTS users_admin_filters')
        drop_index_online('ix_users_email_trigrams', 'users')
    drop_index_online('ix_users_mfa_enabled_id', 'users')
    drop_index_online('ix_users_inactive_id', 'users')
    create_index_online('ix_users_group_id', 'users', ['group_id'])
    drop_index_online('ix_users_group_id_id', 'users')
