"""signing keys: signs_from, so a rotated-in key is published before it signs

A key made by `flask keys rotate` is published at once and signs only from `signs_from`;
`retired_at` may now lie in the future (when the next key takes over). Keys made before this
revision signed from their creation.

Revision ID: 0005_signing_keys_signs_from
Revises: 0004_signing_keys
Create Date: 2026-12-06 10:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0005_signing_keys_signs_from'
down_revision = '0004_signing_keys'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('signing_keys', schema=None) as batch_op:
        batch_op.add_column(sa.Column('signs_from', sa.DateTime(timezone=True), nullable=True))
    op.execute('UPDATE signing_keys SET signs_from = created_at')
    with op.batch_alter_table('signing_keys', schema=None) as batch_op:
        batch_op.alter_column('signs_from', existing_type=sa.DateTime(timezone=True), nullable=False)


def downgrade():
    # The previous revision signs with the key that has no retirement date, which may be one
    # still waiting to sign: that key (which signed nothing) goes, and the key signing now
    # keeps signing.
    op.execute('DELETE FROM signing_keys WHERE signs_from > CURRENT_TIMESTAMP')
    op.execute('UPDATE signing_keys SET retired_at = NULL WHERE retired_at > CURRENT_TIMESTAMP')
    with op.batch_alter_table('signing_keys', schema=None) as batch_op:
        batch_op.drop_column('signs_from')
