"""passkeys: the WebAuthn credentials and the challenges of ceremonies under way

Both tables name their user with ON DELETE CASCADE: deleting an account deletes its passkeys
and its pending challenges in the same transaction.

Revision ID: 0012_passkeys
Revises: 0011_two_factor
Create Date: 2026-12-06 11:45:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0012_passkeys'
down_revision = '0011_two_factor'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'passkeys',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('user_id', sa.Integer(), nullable=False),
        sa.Column('credential_id', sa.LargeBinary(length=1023), nullable=False),
        sa.Column('public_key', sa.LargeBinary(), nullable=False),
        sa.Column('user_handle', sa.LargeBinary(length=64), nullable=False),
        sa.Column('sign_count', sa.BigInteger(), nullable=False),
        sa.Column('transports', sa.JSON(), nullable=False),
        sa.Column('backed_up', sa.Boolean(), nullable=False),
        sa.Column('name', sa.String(length=64), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('last_used_at', sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ['user_id'], ['users.id'], name=op.f('fk_passkeys_user_id_users'), ondelete='CASCADE'
        ),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_passkeys')),
        sa.UniqueConstraint('credential_id', name=op.f('uq_passkeys_credential_id')),
    )
    with op.batch_alter_table('passkeys', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_passkeys_user_id'), ['user_id'], unique=False)

    op.create_table(
        'webauthn_challenges',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('challenge_hash', sa.String(length=64), nullable=False),
        sa.Column('ceremony', sa.String(length=16), nullable=False),
        sa.Column('user_id', sa.Integer(), nullable=True),
        sa.Column('address', sa.String(length=64), nullable=True),
        sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ['user_id'], ['users.id'], name=op.f('fk_webauthn_challenges_user_id_users'),
            ondelete='CASCADE',
        ),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_webauthn_challenges')),
        sa.UniqueConstraint(
            'challenge_hash', name=op.f('uq_webauthn_challenges_challenge_hash')
        ),
    )
    with op.batch_alter_table('webauthn_challenges', schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f('ix_webauthn_challenges_address'), ['address'], unique=False
        )
        batch_op.create_index(
            batch_op.f('ix_webauthn_challenges_expires_at'), ['expires_at'], unique=False
        )
        batch_op.create_index(
            batch_op.f('ix_webauthn_challenges_user_id'), ['user_id'], unique=False
        )


def downgrade():
    op.drop_table('webauthn_challenges')
    op.drop_table('passkeys')
