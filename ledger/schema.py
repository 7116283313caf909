"""The ledger's tables. Change them only with a new migration under ``ledger/migrations/versions``."""

from __future__ import annotations

from sqlalchemy import (
    JSON, Column, Date, DateTime, Index, Integer, MetaData, String, Table, Text, UniqueConstraint,
)

metadata = MetaData(naming_convention={
    "ix": "ix_%(table_name)s_%(column_0_name)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "pk": "pk_%(table_name)s",
})

# One row per effect on the world (a text, an e-mail, a letter, a validation notice), claimed
# under its idempotency key *before* the provider is called: the unique key is what makes a retry,
# a worker crash or a replay find the earlier attempt instead of contacting the borrower again.
contact_attempts = Table(
    "contact_attempts", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("idempotency_key", String(200), nullable=False, unique=True),
    Column("loan_id", String(64), nullable=False, index=True),
    Column("jurisdiction", String(8), nullable=False),
    Column("channel", String(16), nullable=False),
    Column("template", String(64)),
    # sending: claimed, the provider may or may not have it; sent; failed (for good, with reason)
    Column("state", String(16), nullable=False),
    Column("reason", Text),
    Column("provider_message_id", String(200)),
    Column("location", Text),       # the outbox file or the letter's path
    Column("sha256", String(64)),   # of the document or message as sent
    Column("tries", Integer, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("completed_at", DateTime(timezone=True)),
    Column("retain_until", Date, nullable=False, index=True),
)

# The append-only audit trail: every event of a case as the workflow recorded it (commands with
# who sent them and their payload, verdicts allow/defer/block with reasons, stage changes,
# payments, promises, arrangements). ``seq`` is the event's position in the case, so writing the
# same events twice (a retried activity, a replay) adds nothing.
case_events = Table(
    "case_events", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("loan_id", String(64), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("kind", String(64), nullable=False),
    Column("status", String(16), nullable=False),
    Column("reason", Text),
    Column("actor", String(64)),
    Column("detail", JSON, nullable=False),
    Column("workflow_id", String(200), nullable=False),
    Column("recorded_at", DateTime(timezone=True), nullable=False),
    Column("retain_until", Date, nullable=False, index=True),
    UniqueConstraint("loan_id", "seq", name="uq_case_events_loan_id_seq"),
)

# Work for people: call tasks for agents, field visits, hand-offs to legal, supervisor flags.
# Agents pull open items and report outcomes, which become call_outcome / field_visit_report signals.
# The case's own events close them (a withdrawn or expired call task, a cancelled or completed visit,
# the case closing), in the transaction that appends those events: a queue shows only work the case
# still wants.
work_items = Table(
    "work_items", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("item_key", String(200), nullable=False, unique=True),
    Column("item_id", String(200), nullable=False, unique=True),  # the public id: the key, safe in a URL
    Column("loan_id", String(64), nullable=False, index=True),
    Column("workflow_id", String(200), nullable=False),
    Column("queue", String(32), nullable=False),
    Column("case_ref", String(200)),  # what the case calls it: a call task's task_id, a visit's visit_id
    Column("state", String(16), nullable=False),     # open, done, withdrawn, expired
    Column("assigned_to", String(200)),
    Column("payload", JSON, nullable=False),
    Column("outcome", String(32)),
    Column("reason", Text),  # why it was closed other than with an outcome
    Column("reported_by", String(64)),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("due_at", DateTime(timezone=True), nullable=False),  # call: when queued; visit: when scheduled
    Column("completed_at", DateTime(timezone=True)),
    Column("retain_until", Date, nullable=False, index=True),
    Index("ix_work_items_queue_state_due_at", "queue", "state", "due_at", "id"),
)

TABLES = (contact_attempts, case_events, work_items)
