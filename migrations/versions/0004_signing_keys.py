"""signing keys; refresh tokens become opaque strings stored as their hash

Access tokens are signed with EdDSA keys kept in `signing_keys` (private parts encrypted).
Refresh tokens are no longer JWTs: `refresh_tokens.jti` becomes `token_hash`, the SHA-256
of the opaque token. The rows of the old JWT refresh tokens can never be presented again
(no HS256 token is accepted any more), so they are deleted: everyone logs in once more.

Revision ID: 0004_signing_keys
Revises: 0003_email_outbox
Create Date: 2026-11-27 07:30:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0004_signing_keys'
down_revision = '0003_email_outbox'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('signing_keys',
    sa.Column('kid', sa.String(length=64), nullable=False),
    sa.Column('alg', sa.String(length=16), nullable=False),
    sa.Column('public_jwk', sa.JSON(), nullable=False),
    sa.Column('private_key_encrypted', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('retired_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('kid', name=op.f('pk_signing_keys'))
    )
    with op.batch_alter_table('signing_keys', schema=None) as batch_op:
        batch_op.create_index('uq_signing_keys_current', ['alg'], unique=True, sqlite_where=sa.text('retired_at IS NULL'), postgresql_where=sa.text('retired_at IS NULL'))

    op.execute('DELETE FROM refresh_tokens')
    with op.batch_alter_table('refresh_tokens', schema=None) as batch_op:
        batch_op.drop_constraint('uq_refresh_tokens_jti', type_='unique')
        batch_op.alter_column('jti', new_column_name='token_hash', existing_type=sa.String(length=64), existing_nullable=False)
    # A second batch: SQLite's copy of the table must know the new name before it is used.
    with op.batch_alter_table('refresh_tokens', schema=None) as batch_op:
        batch_op.create_unique_constraint(batch_op.f('uq_refresh_tokens_token_hash'), ['token_hash'])


def downgrade():
    # The opaque refresh tokens mean nothing to the JWT code of the previous revision.
    op.execute('DELETE FROM refresh_tokens')
    with op.batch_alter_table('refresh_tokens', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('uq_refresh_tokens_token_hash'), type_='unique')
        batch_op.alter_column('token_hash', new_column_name='jti', existing_type=sa.String(length=64), existing_nullable=False)
    with op.batch_alter_table('refresh_tokens', schema=None) as batch_op:
        batch_op.create_unique_constraint('uq_refresh_tokens_jti', ['jti'])

    with op.batch_alter_table('signing_keys', schema=None) as batch_op:
        batch_op.drop_index('uq_signing_keys_current', sqlite_where=sa.text('retired_at IS NULL'), postgresql_where=sa.text('retired_at IS NULL'))

    op.drop_table('signing_keys')
