"""The desk's access log: every view of a borrower's personal data (who, when, which case).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30
"""

from alembic import op

from desk.schema import desk_access_log

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    desk_access_log.create(op.get_bind())


def downgrade() -> None:
    desk_access_log.drop(op.get_bind())
