"""one row per login: the refresh token's state moves onto `sessions`; `refresh_tokens` goes

Revision ID: 0016_one_row_per_login
Revises: 0015_outbox_indexes
Create Date: 2026-12-08 10:00:00.000000

A refresh used to insert a row and keep the spent one until its login expired; a login now
keeps its refresh token's state on its own row (app/sessions/models.py,
app/sessions/refresh_format.py).

Every live login keeps working: the hash of its current token (the newest one neither spent
nor revoked) becomes its row's `refresh_hash` and `legacy_refresh_hash`, by which the new
code finds it (a legacy token carries no login id); its first refresh rotates it into the
new form. A partial unique index, over the legacy rows only, is built without holding
writes. What the upgrade cannot carry: a token spent before it and presented after it is
refused (401) without ending its login as reuse, and of the two tokens a login held when a
refresh raced its rotation in the last seconds before the upgrade, only the newer works.

The downgrade writes each live login's current token back to `refresh_tokens`, and the one
it spent last as spent, so the previous code accepts the tokens of the new form (it knows a
token by its hash whatever its text) and still recognises the reuse of the last one.
"""
from datetime import datetime, timezone

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from app.core.migrate import create_index_online, drop_index_online


# revision identifiers, used by Alembic.
revision = '0016_one_row_per_login'
down_revision = '0015_outbox_indexes'
branch_labels = None
depends_on = None

LEGACY_INDEX = 'ix_sessions_legacy_refresh_hash'
LEGACY_ROWS = sa.text('legacy_refresh_hash IS NOT NULL')

sessions = sa.table(
    'sessions',
    sa.column('id', sa.Integer()),
    sa.column('user_id', sa.Integer()),
    sa.column('family_id', sa.String()),
    sa.column('created_at', sa.DateTime(timezone=True)),
    sa.column('expires_at', sa.DateTime(timezone=True)),
    sa.column('ended_at', sa.DateTime(timezone=True)),
    sa.column('refresh_hash', sa.String()),
    sa.column('previous_refresh_hash', sa.String()),
    sa.column('rotated_at', sa.DateTime(timezone=True)),
    sa.column('legacy_refresh_hash', sa.String()),
)
tokens = sa.table(
    'refresh_tokens',
    sa.column('id', sa.Integer()),
    sa.column('token_hash', sa.String()),
    sa.column('user_id', sa.Integer()),
    sa.column('family_id', sa.String()),
    sa.column('expires_at', sa.DateTime(timezone=True)),
    sa.column('created_at', sa.DateTime(timezone=True)),
    sa.column('used_at', sa.DateTime(timezone=True)),
    sa.column('revoked_at', sa.DateTime(timezone=True)),
)


def upgrade():
    with op.batch_alter_table('sessions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('refresh_generation', sa.Integer(), server_default=sa.text('0'), nullable=False))
        batch_op.add_column(sa.Column('refresh_hash', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('previous_refresh_hash', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('rotated_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('legacy_refresh_hash', sa.String(length=64), nullable=True))

    now = datetime.now(timezone.utc)
    unspent = sa.and_(
        tokens.c.used_at.is_(None), tokens.c.revoked_at.is_(None), tokens.c.expires_at > now
    )
    if op.get_bind().dialect.name == 'postgresql':
        # One pass over the table, whatever its size, rather than a lookup per login.
        current = (
            sa.select(tokens.c.family_id, tokens.c.token_hash)
            .where(unspent)
            .ext(postgresql.distinct_on(tokens.c.family_id))
            .order_by(tokens.c.family_id, tokens.c.created_at.desc(), tokens.c.id.desc())
            .subquery()
        )
        op.execute(
            sessions.update()
            .where(sessions.c.family_id == current.c.family_id, sessions.c.ended_at.is_(None))
            .values(refresh_hash=current.c.token_hash, legacy_refresh_hash=current.c.token_hash)
        )
    else:
        newest = (
            sa.select(tokens.c.token_hash)
            .where(tokens.c.family_id == sessions.c.family_id, unspent)
            .order_by(tokens.c.created_at.desc(), tokens.c.id.desc())
            .limit(1)
            .scalar_subquery()
        )
        op.execute(sessions.update().where(sessions.c.ended_at.is_(None)).values(refresh_hash=newest))
        op.execute(sessions.update().values(legacy_refresh_hash=sessions.c.refresh_hash))

    if op.get_bind().dialect.name == 'postgresql':
        # Every refresh now writes a new version of its login's row. Room left free on each
        # page lets it go beside the old one without an entry in any index (a HOT update):
        # 80 % of refreshes instead of 62 % in a run of 9,000 (new pages only; old ones as
        # they are rewritten).
        op.execute('ALTER TABLE sessions SET (fillfactor = 85)')

    create_index_online(
        LEGACY_INDEX, 'sessions', ['legacy_refresh_hash'], unique=True,
        postgresql_where=LEGACY_ROWS, sqlite_where=LEGACY_ROWS,
    )
    op.drop_table('refresh_tokens')


def downgrade():
    op.create_table('refresh_tokens',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('family_id', sa.String(length=64), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('used_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_refresh_tokens_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_refresh_tokens')),
    sa.UniqueConstraint('token_hash', name=op.f('uq_refresh_tokens_token_hash'))
    )
    with op.batch_alter_table('refresh_tokens', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_refresh_tokens_expires_at'), ['expires_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_refresh_tokens_family_id'), ['family_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_refresh_tokens_user_id'), ['user_id'], unique=False)

    # Each live login's current token, unspent, and the one it spent last, spent when it was
    # rotated: the previous code's grace and reuse detection read exactly that.
    live = sessions.c.ended_at.is_(None)
    columns = ['token_hash', 'user_id', 'family_id', 'expires_at', 'created_at', 'used_at']
    op.execute(tokens.insert().from_select(columns, sa.select(
        sessions.c.refresh_hash, sessions.c.user_id, sessions.c.family_id, sessions.c.expires_at,
        sa.func.coalesce(sessions.c.rotated_at, sessions.c.created_at), sa.null(),
    ).where(live, sessions.c.refresh_hash.is_not(None))))
    op.execute(tokens.insert().from_select(columns, sa.select(
        sessions.c.previous_refresh_hash, sessions.c.user_id, sessions.c.family_id,
        sessions.c.expires_at, sessions.c.created_at, sessions.c.rotated_at,
    ).where(live, sessions.c.previous_refresh_hash.is_not(None))))

    drop_index_online(LEGACY_INDEX, 'sessions')
    if op.get_bind().dialect.name == 'postgresql':
        op.execute('ALTER TABLE sessions RESET (fillfactor)')
    with op.batch_alter_table('sessions', schema=None) as batch_op:
        batch_op.drop_column('legacy_refresh_hash')
        batch_op.drop_column('rotated_at')
        batch_op.drop_column('previous_refresh_hash')
        batch_op.drop_column('refresh_hash')
        batch_op.drop_column('refresh_generation')
