"""The portfolio: how many cases and how much, by stage, DPD bucket and grade, and what waits on whom.

Read from the ledger (the case book, the work queues, the desk's approvals), never by listing Temporal
histories: a handful of GROUP BY queries in one read transaction, the same on SQLite and PostgreSQL,
whatever the number of cases. Amounts are summed per currency as exact integers in the database and
rendered as decimal strings in the currency's decimals.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import and_, case, func, literal_column, or_, select, union

from desk.schema import desk_approvals
from domain.dpd import DPD_BUCKETS
from domain.loan import RISK_GRADES
from domain.stages import Stage
from ledger import Ledger
from ledger.book import money
from ledger.schema import case_book, work_items

# What an open case waits on, in the order the page lists it: the borrower's own commitments, the
# people whose queues hold its work, then the holds that stop it.
WAITING_ON = ("borrower: promise", "borrower: plan", "agents", "field staff", "legal", "supervisors", "hardship",
              "dispute", "operator hold")
_HOLD_WAITS = {"borrower: promise": "promise", "borrower: plan": "arrangement", "hardship": "hardship",
               "dispute": "dispute", "operator hold": "operator"}
_QUEUE_WAITS = {"agents": "calls", "field staff": "visits", "legal": "legal"}

_book = case_book.c
_open = _book.outcome.is_(None)


async def portfolio(ledger: Ledger, *, today: date | None = None) -> dict[str, Any]:
    """The open cases by stage (in ladder order), DPD bucket and grade, with their amounts per
    currency; how many cases are open and closed; and what the open ones wait on (a case waiting on
    several counts under each). DPD are counted as of ``today`` (default: today, UTC), as the case
    counts them: DPD at intake plus the days since, while anything is past due."""
    now = datetime.now(UTC)
    today = today or now.date()
    async with ledger.engine.connect() as connection:
        if ledger.dialect == "postgresql":
            # One snapshot for every figure on the page.
            await connection.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
        async with connection.begin():
            counts = (await connection.execute(_counts())).all()
            groups = (await connection.execute(_groups(today))).all()
            queues = dict((await connection.execute(_queues())).all())
            supervisors = (await connection.execute(_supervisors(now))).scalar_one()
    return {
        "as_of": today.isoformat(),
        "cases": {"open": sum(c.cases for c in counts if c.outcome is None),
                  "closed": sum(c.cases for c in counts if c.outcome is not None)},
        "by_stage": _breakdown(groups, "stage", [stage.value for stage in Stage], outstanding=True),
        "by_dpd_bucket": _breakdown(groups, "bucket", [name for name, _, _ in DPD_BUCKETS]),
        "by_grade": _breakdown(groups, "grade", list(RISK_GRADES), others=True),
        "waiting_on": [{"who": who, "cases": _waiting(who, counts, queues, supervisors)} for who in WAITING_ON],
    }


def _counts() -> Any:
    """Cases by outcome (None: open) and by the holds they are on: a few dozen groups at most."""
    return (select(_book.outcome, _book.holds, func.count().label("cases"))
            .group_by(_book.outcome, _book.holds))


def _groups(today: date) -> Any:
    """The open cases grouped by stage, grade, currency and DPD bucket, with their sums: at most a
    few hundred groups, whatever the number of cases, from which the three breakdowns are added up."""
    # Grouped by position: PostgreSQL would not match a CASE with bound dates in GROUP BY to its twin
    # in the select list (each gets parameters of its own).
    return (select(_book.stage, _book.risk_grade.label("grade"), _book.currency, _dpd_bucket(today).label("bucket"),
                   func.count().label("cases"), func.sum(_book.amount_past_due_milli).label("amount_past_due"),
                   func.sum(_book.outstanding_milli).label("outstanding"))
            .where(_open).group_by(*(literal_column(str(n)) for n in (1, 2, 3, 4))))


def _dpd_bucket(today: date) -> Any:
    """The bucket of a case's DPD as of ``today``, without date arithmetic in SQL. The case counts
    DPD at intake plus the days since (none before it), while anything is past due: that is the
    larger of the DPD at intake and today less ``overdue_since``, so a case is in the first bucket
    that holds both. NULL for a case with nothing past due (DPD 0) or never opened in the trail."""
    def since(day: int) -> date:
        return today - timedelta(days=day)

    past_due = or_(_book.amount_past_due_milli.is_(None), _book.amount_past_due_milli > 0)
    *bounded, (last, _, _) = DPD_BUCKETS
    return case(
        (~past_due, None),
        (and_(_book.dpd_at_intake < 1, _book.overdue_since > since(1)), None),
        *((and_(_book.dpd_at_intake <= high, _book.overdue_since >= since(high)), name) for name, _, high in bounded),
        (and_(_book.dpd_at_intake.is_not(None), _book.overdue_since.is_not(None)), last),
        else_=None)


def _queues() -> Any:
    """Cases with open work on the agents', field staff's and legal queues (a closing case's is closed
    with it, in the transaction that appends its events)."""
    return (select(work_items.c.queue, func.count(work_items.c.loan_id.distinct()))
            .where(work_items.c.state == "open", work_items.c.queue.in_(_QUEUE_WAITS.values()))
            .group_by(work_items.c.queue))


def _supervisors(now: datetime) -> Any:
    """Cases a supervisor must act on: a flag on their queue, or an approval still undecided."""
    waiting = union(
        select(work_items.c.loan_id).where(work_items.c.queue == "supervisor", work_items.c.state == "open"),
        select(desk_approvals.c.loan_id).where(desk_approvals.c.state == "pending", desk_approvals.c.expires_at > now),
    ).subquery()
    return select(func.count()).select_from(waiting)


def _breakdown(groups: list[Any], key: str, order: list[str], *, outstanding: bool = False,
               others: bool = False) -> list[dict[str, Any]]:
    """``groups`` added up by ``key``: one entry for each of ``order`` (none left out, zeros
    included), then, with ``others``, any other value present (such as "unknown"). Cases whose key
    is NULL (no DPD bucket) are in no entry."""
    cases: dict[str, int] = defaultdict(int)
    amounts: dict[str, dict[str, dict[str, int]]] = defaultdict(lambda: defaultdict(lambda: defaultdict(int)))
    for group in groups:
        name = getattr(group, key)
        if name is None:
            continue
        cases[name] += group.cases
        for field in ("amount_past_due", "outstanding"):
            total = getattr(group, field)
            if total is not None:
                amounts[name][field][group.currency] += int(total)
    names = order + (sorted(set(cases) - set(order)) if others else [])
    fields = ("amount_past_due", "outstanding") if outstanding else ("amount_past_due",)
    return [{key: name, "cases": cases.get(name, 0),
             **{field: _rendered(amounts[name][field]) for field in fields}} for name in names]


def _rendered(totals: dict[str, int]) -> dict[str, str]:
    return {currency: str(money(Decimal(total), currency)) for currency, total in sorted(totals.items())}


def _waiting(who: str, counts: list[Any], queues: dict[str, int], supervisors: int) -> int:
    if who in _HOLD_WAITS:
        return sum(c.cases for c in counts if c.outcome is None and _HOLD_WAITS[who] in c.holds.split(","))
    if who in _QUEUE_WAITS:
        return int(queues.get(_QUEUE_WAITS[who], 0))
    return int(supervisors)
