"""The case ledger: contact attempts, the case event trail, work queues.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "contact_attempts",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("idempotency_key", sa.String(200), nullable=False),
        sa.Column("loan_id", sa.String(64), nullable=False),
        sa.Column("jurisdiction", sa.String(8), nullable=False),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("template", sa.String(64)),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text),
        sa.Column("provider_message_id", sa.String(200)),
        sa.Column("location", sa.Text),
        sa.Column("sha256", sa.String(64)),
        sa.Column("tries", sa.Integer, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True)),
        sa.Column("retain_until", sa.Date, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_contact_attempts"),
        sa.UniqueConstraint("idempotency_key", name="uq_contact_attempts_idempotency_key"),
    )
    op.create_index("ix_contact_attempts_loan_id", "contact_attempts", ["loan_id"])
    op.create_index("ix_contact_attempts_retain_until", "contact_attempts", ["retain_until"])

    op.create_table(
        "case_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("loan_id", sa.String(64), nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text),
        sa.Column("actor", sa.String(64)),
        sa.Column("detail", sa.JSON, nullable=False),
        sa.Column("workflow_id", sa.String(200), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("retain_until", sa.Date, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_case_events"),
        sa.UniqueConstraint("loan_id", "seq", name="uq_case_events_loan_id_seq"),
    )
    op.create_index("ix_case_events_retain_until", "case_events", ["retain_until"])

    op.create_table(
        "work_items",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("item_key", sa.String(200), nullable=False),
        sa.Column("loan_id", sa.String(64), nullable=False),
        sa.Column("workflow_id", sa.String(200), nullable=False),
        sa.Column("queue", sa.String(32), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("assigned_to", sa.String(200)),
        sa.Column("payload", sa.JSON, nullable=False),
        sa.Column("outcome", sa.String(32)),
        sa.Column("reported_by", sa.String(64)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True)),
        sa.Column("retain_until", sa.Date, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_work_items"),
        sa.UniqueConstraint("item_key", name="uq_work_items_item_key"),
    )
    op.create_index("ix_work_items_loan_id", "work_items", ["loan_id"])
    op.create_index("ix_work_items_queue_state", "work_items", ["queue", "state"])
    op.create_index("ix_work_items_retain_until", "work_items", ["retain_until"])

    # The audit trail is append-only: on PostgreSQL the database itself refuses to change a row
    # (only the retention purge deletes). SQLite gets the same guard as a trigger.
    if op.get_bind().dialect.name == "postgresql":
        op.execute("""
            CREATE FUNCTION arrears_case_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN RAISE EXCEPTION 'case_events is append-only: rows are never changed'; END $$""")
        op.execute("""
            CREATE TRIGGER case_events_append_only BEFORE UPDATE ON case_events
            FOR EACH ROW EXECUTE FUNCTION arrears_case_events_append_only()""")
    else:
        op.execute("""
            CREATE TRIGGER case_events_append_only BEFORE UPDATE ON case_events
            BEGIN SELECT RAISE(ABORT, 'case_events is append-only: rows are never changed'); END""")


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS case_events_append_only" +
               (" ON case_events" if op.get_bind().dialect.name == "postgresql" else ""))
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS arrears_case_events_append_only()")
    op.drop_table("work_items")
    op.drop_table("case_events")
    op.drop_table("contact_attempts")
