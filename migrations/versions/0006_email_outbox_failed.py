"""email outbox: failed_at and failure, for an email the mail server refused for good

Revision ID: 0006_email_outbox_failed
Revises: 0005_signing_keys_signs_from
Create Date: 2026-12-06 11:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0006_email_outbox_failed'
down_revision = '0005_signing_keys_signs_from'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('email_outbox', schema=None) as batch_op:
        batch_op.add_column(sa.Column('failed_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('failure', sa.String(length=255), nullable=True))


def downgrade():
    with op.batch_alter_table('email_outbox', schema=None) as batch_op:
        batch_op.drop_column('failure')
        batch_op.drop_column('failed_at')
