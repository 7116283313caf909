"""The desk: users, API tokens, browser sessions, four-eyes approvals, payments by reference.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30
"""

from alembic import op

from desk.schema import TABLES

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    bind = op.get_bind()
    for table in TABLES:
        table.create(bind)


def downgrade() -> None:
    bind = op.get_bind()
    for table in reversed(TABLES):
        table.drop(bind)
