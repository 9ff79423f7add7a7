"""email change: the pending change and its emailed link

Revision ID: 0008_email_change
Revises: 0007_security_events
Create Date: 2026-12-06 14:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0008_email_change'
down_revision = '0007_security_events'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('email_change_tokens',
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('new_email', sa.String(length=320), nullable=False),
    sa.Column('family_id', sa.String(length=64), nullable=True),
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_email_change_tokens_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_email_change_tokens')),
    sa.UniqueConstraint('token_hash', name=op.f('uq_email_change_tokens_token_hash')),
    sa.UniqueConstraint('user_id', name=op.f('uq_email_change_tokens_user_id'))
    )
    with op.batch_alter_table('email_change_tokens', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_email_change_tokens_expires_at'), ['expires_at'], unique=False)


def downgrade():
    with op.batch_alter_table('email_change_tokens', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_email_change_tokens_expires_at'))

    op.drop_table('email_change_tokens')
