"""social sign-in: linked identities, sign-ins under way, one-time codes; optional password

`users.password_hash` becomes nullable: an account created by a provider has no password
until forgot/reset gives it one. The three new tables hang off `users` with ON DELETE
CASCADE, so deleting an account deletes them in the same statement.

Revision ID: 0013_oidc
Revises: 0012_passkeys
Create Date: 2026-12-06 12:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0013_oidc'
down_revision = '0012_passkeys'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.alter_column('password_hash', existing_type=sa.String(length=255), nullable=True)

    op.create_table('oidc_identities',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('provider', sa.String(length=40), nullable=False),
    sa.Column('subject', sa.String(length=255), nullable=False),
    sa.Column('email', sa.String(length=320), nullable=True),
    sa.Column('given_name', sa.String(length=100), nullable=True),
    sa.Column('family_name', sa.String(length=100), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_used_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_oidc_identities_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_oidc_identities')),
    sa.UniqueConstraint('provider', 'subject', name=op.f('uq_oidc_identities_provider'))
    )
    with op.batch_alter_table('oidc_identities', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_oidc_identities_user_id'), ['user_id'], unique=False)

    op.create_table('oidc_pending_sign_ins',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('state_hash', sa.String(length=64), nullable=False),
    sa.Column('browser_hash', sa.String(length=64), nullable=False),
    sa.Column('provider', sa.String(length=40), nullable=False),
    sa.Column('nonce', sa.String(length=64), nullable=False),
    sa.Column('code_verifier', sa.String(length=128), nullable=False),
    sa.Column('return_to', sa.String(length=2000), nullable=False),
    sa.Column('link_user_id', sa.Integer(), nullable=True),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['link_user_id'], ['users.id'], name=op.f('fk_oidc_pending_sign_ins_link_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_oidc_pending_sign_ins')),
    sa.UniqueConstraint('state_hash', name=op.f('uq_oidc_pending_sign_ins_state_hash'))
    )
    with op.batch_alter_table('oidc_pending_sign_ins', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_oidc_pending_sign_ins_expires_at'), ['expires_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_oidc_pending_sign_ins_link_user_id'), ['link_user_id'], unique=False)

    op.create_table('oidc_sign_in_codes',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('code_hash', sa.String(length=64), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('used_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_oidc_sign_in_codes_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_oidc_sign_in_codes')),
    sa.UniqueConstraint('code_hash', name=op.f('uq_oidc_sign_in_codes_code_hash'))
    )
    with op.batch_alter_table('oidc_sign_in_codes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_oidc_sign_in_codes_expires_at'), ['expires_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_oidc_sign_in_codes_user_id'), ['user_id'], unique=False)


def downgrade():
    op.drop_table('oidc_sign_in_codes')
    op.drop_table('oidc_pending_sign_ins')
    op.drop_table('oidc_identities')
    # An account without a password gets a hash no password matches: it keeps forgot/reset.
    op.execute("UPDATE users SET password_hash = '!' WHERE password_hash IS NULL")
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.alter_column('password_hash', existing_type=sa.String(length=255), nullable=False)
