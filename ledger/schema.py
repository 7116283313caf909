"""The ledger's tables. Change them only with a new migration under ``ledger/migrations/versions``."""

from __future__ import annotations

from sqlalchemy import (
    JSON, BigInteger, Boolean, Column, Date, DateTime, Index, Integer, MetaData, String, Table, Text, UniqueConstraint,
)

metadata = MetaData(naming_convention={
    "ix": "ix_%(table_name)s_%(column_0_name)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "pk": "pk_%(table_name)s",
})


def _episode() -> Column:
    """The delinquency episode a row belongs to (domain/episodes.py: the date the loan became
    delinquent, ``2026-11-26``, or ``2026-11-26.2`` for a case reopened on it); "" for a case from
    before episodes. One loan's episodes are separate cases: each numbers its events from the start
    and keys its effects with its episode, so a second one sends and records afresh."""
    return Column("episode", String(32), nullable=False, server_default="")


# One row per effect on the world (a text, an e-mail, a letter, a validation notice), claimed
# under its idempotency key *before* the provider is called: the unique key is what makes a retry,
# a worker crash or a replay find the earlier attempt instead of contacting the borrower again.
contact_attempts = Table(
    "contact_attempts", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("idempotency_key", String(200), nullable=False, unique=True),
    Column("loan_id", String(64), nullable=False, index=True),
    _episode(),
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
# payments, promises, arrangements). ``seq`` is the event's position in the case's episode, so
# writing the same events twice (a retried activity, a replay) adds nothing, and a loan's next
# episode, numbered from the start again, is kept beside the first one's.
case_events = Table(
    "case_events", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("loan_id", String(64), nullable=False),
    _episode(),
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
    # What a person wrote that may be health or family data (a hardship's or dispute's reason): JSON
    # naming the fields, their text encrypted with the payload keys (ledger/private.py). Never in
    # ``reason`` or ``detail``.
    Column("private", Text),
    UniqueConstraint("loan_id", "episode", "seq", name="uq_case_events_loan_id_episode_seq"),
)

# Work for people: call tasks for agents, field visits, hand-offs to legal, supervisor flags.
# Agents pull open items and report outcomes, which become call_outcome / field_visit_report signals.
# The case's own events close them (a withdrawn or expired call task, a cancelled or completed visit,
# the case closing), in the transaction that appends those events, and only that episode's items: a
# queue shows only work the case still wants.
work_items = Table(
    "work_items", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("item_key", String(200), nullable=False, unique=True),
    Column("item_id", String(200), nullable=False, unique=True),  # the public id: the key, safe in a URL
    Column("loan_id", String(64), nullable=False, index=True),
    _episode(),
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

# Where every loan stands now, one row per loan (its latest episode's case): a projection of
# ``case_events`` (``ledger/book.py``) kept in the transaction that appends them, so the portfolio
# reads 10k cases in a few GROUP BYs instead of listing Temporal histories. Amounts are integer
# thousandths of the currency unit: sums stay exact on SQLite too (its NUMERIC is a float), and three
# decimals hold every currency the engine accepts. What a case's events never said (a case opened
# before they said it) is "unknown" (text) or NULL (amounts, dates). Not in TABLES: a row holds no
# personal data, only the standing.
# Its ``retain_until`` is the loan's: the date of its newest activity's (events, contacts, work) plus
# the records rule, which every row of the loan is kept until at least (ledger/retention.py).
case_book = Table(
    "case_book", metadata,
    Column("loan_id", String(64), primary_key=True),
    # The episode the row is of: a newer one's events start the row afresh, an older one's leave it.
    _episode(),
    Column("workflow_id", String(200), nullable=False),
    Column("stage", String(16), nullable=False),
    Column("stage_entered_at", DateTime(timezone=True)),
    Column("currency", String(8), nullable=False),
    Column("amount_past_due_milli", BigInteger),
    Column("outstanding_milli", BigInteger),
    Column("risk_grade", String(8), nullable=False),
    Column("product", String(64), nullable=False),
    Column("jurisdiction", String(8), nullable=False),
    Column("assigned_agent", String(64)),
    Column("dpd_at_intake", Integer),
    Column("intake_at", DateTime(timezone=True)),
    # The day days-past-due count from (the intake's UTC date less the DPD at intake): the current
    # DPD is today less this day, compared in SQL without date arithmetic.
    Column("overdue_since", Date),
    Column("paused", Boolean, nullable=False),
    Column("holds", String(64), nullable=False),  # the kinds, comma-separated, the reason shown first
    Column("promise_due_date", Date),
    Column("promise_state", String(16)),          # pending, kept, broken
    Column("arrangement_kind", String(16)),
    Column("arrangement_state", String(16)),      # active, completed, broken, cancelled
    Column("outcome", String(16)),                # None while the case is open
    Column("closed_at", DateTime(timezone=True)),
    Column("last_seq", Integer, nullable=False),  # the last event applied: later ones only, once each
    Column("last_event_at", DateTime(timezone=True)),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("retain_until", Date, nullable=False, index=True),
    # The portfolio's two questions, answered from these indexes alone, without reading the table: the
    # open cases by stage, grade, currency and DPD with their amounts; the cases by outcome and holds.
    Index("ix_case_book_portfolio", "outcome", "stage", "risk_grade", "currency", "overdue_since",
          "dpd_at_intake", "amount_past_due_milli", "outstanding_milli"),
    Index("ix_case_book_outcome_holds", "outcome", "holds"),
    Index("ix_case_book_assigned_agent", "assigned_agent"),
)
