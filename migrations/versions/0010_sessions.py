"""sessions: a record of each login, which the guard reads

Revision ID: 0010_sessions
Revises: 0009_account_deletion
Create Date: 2026-12-07 10:00:00.000000

Every login that has a refresh token not revoked gets its record, so it keeps working: from
its first token's issue to its last one's (its last refresh), ending when its tokens do.
What it was started from was never stored, so its address and user agent stay empty.
Downgrading drops the records: every ending since was also written to its refresh tokens.
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0010_sessions'
down_revision = '0009_account_deletion'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('sessions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('family_id', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_used_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('user_agent', sa.String(length=255), nullable=True),
    sa.Column('ip', sa.String(length=45), nullable=True),
    sa.Column('ended_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_sessions_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sessions')),
    sa.UniqueConstraint('family_id', name=op.f('uq_sessions_family_id'))
    )
    with op.batch_alter_table('sessions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_sessions_expires_at'), ['expires_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_sessions_user_id'), ['user_id'], unique=False)

    tokens = sa.table(
        'refresh_tokens',
        sa.column('user_id', sa.Integer()),
        sa.column('family_id', sa.String()),
        sa.column('created_at', sa.DateTime(timezone=True)),
        sa.column('expires_at', sa.DateTime(timezone=True)),
        sa.column('revoked_at', sa.DateTime(timezone=True)),
    )
    live_families = (
        sa.select(
            sa.func.min(tokens.c.user_id),
            tokens.c.family_id,
            sa.func.min(tokens.c.created_at),
            sa.func.max(tokens.c.created_at),
            sa.func.max(tokens.c.expires_at),
        )
        .where(tokens.c.revoked_at.is_(None))
        .group_by(tokens.c.family_id)
    )
    sessions = sa.table(
        'sessions',
        *(sa.column(name) for name in ('user_id', 'family_id', 'created_at', 'last_used_at', 'expires_at')),
    )
    op.execute(
        sessions.insert().from_select(
            ['user_id', 'family_id', 'created_at', 'last_used_at', 'expires_at'], live_families
        )
    )


def downgrade():
    with op.batch_alter_table('sessions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_sessions_user_id'))
        batch_op.drop_index(batch_op.f('ix_sessions_expires_at'))

    op.drop_table('sessions')
