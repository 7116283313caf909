"""The desk's tables, in the ledger's database (migration ``0003_desk``): who may act, and what
waits on a second pair of eyes. Change them only with a new migration."""

from __future__ import annotations

from sqlalchemy import JSON, Boolean, Column, DateTime, Index, Integer, MetaData, String, Table, Text

from ledger.schema import metadata as ledger_metadata

# Named as the ledger names its own constraints and indexes.
metadata = MetaData(naming_convention=ledger_metadata.naming_convention)

# People and the bank's systems. One role each; a password (argon2id) for people who log in here,
# none for those who log in through the bank's identity provider (``subject`` is their OIDC "sub").
desk_users = Table(
    "desk_users", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(64), nullable=False, unique=True),
    Column("role", String(32), nullable=False),
    Column("team", String(64)),
    Column("password_hash", Text),
    Column("subject", String(255), unique=True),
    Column("active", Boolean, nullable=False),
    Column("failed_logins", Integer, nullable=False),
    Column("locked_until", DateTime(timezone=True)),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("created_by", String(64)),
)

# API tokens: shown once, kept as a SHA-256 of their secret (high-entropy, so no slow hash is
# needed), found by their public ``token_id``.
desk_tokens = Table(
    "desk_tokens", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("token_id", String(32), nullable=False, unique=True),
    Column("user_name", String(64), nullable=False, index=True),
    Column("secret_sha256", String(64), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("last_used_at", DateTime(timezone=True)),
    Column("revoked_at", DateTime(timezone=True)),
)

# Server-side sessions of the browser: the cookie holds a random id, the table its SHA-256.
desk_sessions = Table(
    "desk_sessions", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("session_sha256", String(64), nullable=False, unique=True),
    Column("user_name", String(64), nullable=False, index=True),
    Column("csrf_token", String(64), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("last_seen_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
)

# Four-eyes approvals: an arrangement beyond its proposer's limit, waiting for another supervisor.
desk_approvals = Table(
    "desk_approvals", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("approval_id", String(32), nullable=False, unique=True),
    Column("loan_id", String(64), nullable=False, index=True),
    Column("command", String(64), nullable=False),
    Column("payload", JSON, nullable=False),
    Column("proposed_by", String(64), nullable=False),
    Column("proposer_role", String(32), nullable=False),
    Column("needs", Text, nullable=False),          # why it needs approval (the case's words)
    Column("gives_up", JSON, nullable=False),       # field, share and limit given up
    Column("justification", Text),                  # the proposer's words
    # pending → approving (the update is on its way) → applied | failed; or rejected, expired
    Column("state", String(16), nullable=False),
    Column("decided_by", String(64)),
    Column("decided_at", DateTime(timezone=True)),
    Column("outcome", Text),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Index("ix_desk_approvals_state_expires_at", "state", "expires_at"),
)

# Payments from the core banking system, each applied once by its reference.
desk_payments = Table(
    "desk_payments", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("reference", String(64), nullable=False, unique=True),
    Column("loan_id", String(64), nullable=False, index=True),
    Column("amount", String(32), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("paid_at", DateTime(timezone=True)),
    Column("state", String(16), nullable=False),    # sending, applied, duplicate, refused
    Column("result", Text),
    Column("received_from", String(64), nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False),
)

TABLES = (desk_users, desk_tokens, desk_sessions, desk_approvals, desk_payments)

# Who saw a borrower's personal data, when, on which case, and which details (migration 0004).
desk_access_log = Table(
    "desk_access_log", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", DateTime(timezone=True), nullable=False, index=True),
    Column("user_name", String(64), nullable=False, index=True),
    Column("role", String(32), nullable=False),
    Column("loan_id", String(64), nullable=False, index=True),
    Column("what", String(32), nullable=False),     # viewed (the API, a page), revealed (unmasked on request)
    Column("details", String(64), nullable=False),  # which details were shown in clear: name,phone,...
    Column("via", String(16), nullable=False),      # api, web
)
