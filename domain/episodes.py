"""Delinquency episodes: a loan may fall delinquent, be cured and fall delinquent again.

An episode is named by the loan and the date it became delinquent (``YYYY-MM-DD``: the servicer's
``as_of`` less the days past due). The case's workflow id stays ``loan-<loan_id>``, one live case per
loan; each run of it is one episode, and everything the case writes (idempotency keys, ledger rows,
work items) carries the episode, so a second episode sends, queues and records afresh while the first
one's records stay as they were. A case reopened on the same delinquency (a reversed payment had
cured it) is the same date with a suffix: ``2026-11-26.2``, ``2026-11-26.3``, ...
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal

from pydantic import BaseModel

# What a case started before episodes carries: its keys and rows keep their old shape.
NO_EPISODE = ""


def delinquent_since(as_of: date, days_past_due: int) -> date:
    """The first day past due of a loan ``days_past_due`` days past due on ``as_of``."""
    return as_of - timedelta(days=max(0, days_past_due))


def episode_of(as_of: date, days_past_due: int) -> str:
    """The episode a loan ``days_past_due`` days past due on ``as_of`` is in."""
    return delinquent_since(as_of, days_past_due).isoformat()


def base_date(episode: str) -> date | None:
    """The delinquency date an episode is named by (None for a case from before episodes)."""
    if not episode:
        return None
    return date.fromisoformat(episode.split(".", 1)[0])


def _number(episode: str) -> int:
    head, _, tail = episode.partition(".")
    return int(tail) if tail.isdigit() else 1


def next_episode(candidate: str, previous: str | None) -> str:
    """The episode to start for a delinquency ``candidate`` when the loan's last case was ``previous``
    (closed): ``candidate`` itself unless that names the same delinquency, then the next number."""
    if not previous or base_date(previous) != base_date(candidate):
        return candidate
    return f"{previous.split('.', 1)[0]}.{_number(previous) + 1}"


def same_delinquency(episode: str | None, candidate: str) -> bool:
    """Whether a closed case of ``episode`` was about the delinquency ``candidate`` names."""
    return bool(episode) and base_date(episode) == base_date(candidate)  # type: ignore[arg-type]


def key_prefix(loan_id: str, episode: str) -> str:
    """What every idempotency key of the case starts with: the loan, and its episode when it has one."""
    return f"{loan_id}/{episode}" if episode else loan_id


class PriorPayment(BaseModel):
    """A payment the closed case had applied and that still counts: the reopened case may see it reversed too."""

    reference: str
    amount: Decimal
    paid_at: datetime
    posted_at: datetime
    to_arrears: Decimal
    to_outstanding: Decimal


class Reopening(BaseModel):
    """Why a closed case runs again as a new episode: a payment that cured it was reversed."""

    from_episode: str
    from_run_id: str | None = None
    reference: str  # the reversed payment
    amount: Decimal
    reason: str
    by: str | None = None
    payments: list[PriorPayment] = []  # the closed case's other payments, still counting


# The feature (workflows/inputs.py FEATURES) under which a case follows the loan: servicer updates,
# value-dated and reversible payments, a residual tolerance, promises judged after holds, bounded
# commands, and no event let go before the ledger has it.
FOLLOWS_LOAN = "case-follows-loan"
