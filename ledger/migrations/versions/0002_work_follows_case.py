"""Work follows the case: work items get their public id, what the case calls them, when they are
due and why they were closed; the queue listing is indexed by due time.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# A visit plan's key (`{loan}/{seq}/{stage}/visit/plan-{n}`, see LoanCollectionWorkflow._act and
# FieldVisitWorkflow): its visit is the child workflow `{workflow_id}-visit-{seq}`.
_VISIT_PLAN = re.compile(r"/(\d+)/[a-z_]+/visit/plan-\d+$")

_items = sa.table(
    "work_items",
    sa.column("id", sa.Integer), sa.column("item_key", sa.String), sa.column("workflow_id", sa.String),
    sa.column("queue", sa.String), sa.column("payload", sa.JSON), sa.column("created_at", sa.DateTime(timezone=True)),
    sa.column("item_id", sa.String), sa.column("case_ref", sa.String), sa.column("due_at", sa.DateTime(timezone=True)),
)


def _safe_name(key: str) -> str:
    # activities.outbox.safe_name as it stood when this migration was written (frozen here: a
    # migration must mean the same thing whatever later code does).
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in key)


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _scheduled_for(payload: object) -> datetime | None:
    text = payload.get("scheduled_for") if isinstance(payload, dict) else None
    if not isinstance(text, str):
        return None
    try:
        return _utc(datetime.fromisoformat(text))
    except ValueError:
        return None


def _backfill() -> None:
    bind = op.get_bind()
    rows = bind.execute(sa.select(_items.c.id, _items.c.item_key, _items.c.workflow_id, _items.c.queue,
                                  _items.c.payload, _items.c.created_at)).all()
    for row in rows:
        item_id = _safe_name(row.item_key)
        case_ref, due_at = None, _utc(row.created_at)
        if row.queue == "calls":
            case_ref = item_id  # the case's task_id is the item's id
        elif row.queue == "visits":
            plan = _VISIT_PLAN.search(row.item_key)
            case_ref = f"{row.workflow_id}-visit-{int(plan.group(1))}" if plan else None
            due_at = _scheduled_for(row.payload) or due_at
        bind.execute(sa.update(_items).where(_items.c.id == row.id).values(
            item_id=item_id, case_ref=case_ref, due_at=due_at))


def upgrade() -> None:
    with op.batch_alter_table("work_items") as batch:
        batch.add_column(sa.Column("item_id", sa.String(200), nullable=True))
        batch.add_column(sa.Column("case_ref", sa.String(200), nullable=True))
        batch.add_column(sa.Column("due_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("reason", sa.Text, nullable=True))
    _backfill()
    with op.batch_alter_table("work_items") as batch:
        batch.alter_column("item_id", existing_type=sa.String(200), nullable=False)
        batch.alter_column("due_at", existing_type=sa.DateTime(timezone=True), nullable=False)
        batch.create_unique_constraint("uq_work_items_item_id", ["item_id"])
        batch.drop_index("ix_work_items_queue_state")
        batch.create_index("ix_work_items_queue_state_due_at", ["queue", "state", "due_at", "id"])


def downgrade() -> None:
    with op.batch_alter_table("work_items") as batch:
        batch.drop_index("ix_work_items_queue_state_due_at")
        batch.create_index("ix_work_items_queue_state", ["queue", "state"])
        batch.drop_constraint("uq_work_items_item_id", type_="unique")
        batch.drop_column("reason")
        batch.drop_column("due_at")
        batch.drop_column("case_ref")
        batch.drop_column("item_id")
