"""account deletion: each outbox email names the account it is for

`email_outbox.user_id` (nullable, ON DELETE CASCADE): deleting an account deletes its
unsent emails in the same transaction, so none reaches the address afterwards. Rows written
before this revision name no account and keep NULL: they are sent (or given up) within a
day, as before.

Revision ID: 0009_account_deletion
Revises: 0008_email_change
Create Date: 2026-12-08 10:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0009_account_deletion'
down_revision = '0008_email_change'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('email_outbox', schema=None) as batch_op:
        batch_op.add_column(sa.Column('user_id', sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f('ix_email_outbox_user_id'), ['user_id'], unique=False)
        batch_op.create_foreign_key(
            batch_op.f('fk_email_outbox_user_id_users'), 'users', ['user_id'], ['id'],
            ondelete='CASCADE',
        )


def downgrade():
    with op.batch_alter_table('email_outbox', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_email_outbox_user_id_users'), type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_email_outbox_user_id'))
        batch_op.drop_column('user_id')
