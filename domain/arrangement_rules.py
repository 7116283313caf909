"""What an arrangement does to its case: agreed, paid into, judged, suspended, completed or broken."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING

from domain.arrangements import Arrangement
from domain.stages import Outcome
from domain.strategy import Strategy

if TYPE_CHECKING:
    from domain.case import CaseState


def agree(case: CaseState, arrangement: Arrangement, now: datetime) -> None:
    case.arrangement = arrangement
    if case.hold("hardship") is not None:
        # An arrangement is the usual way out of hardship: it replaces the hardship pause.
        case.release_hold("hardship", now)
        case.record(now, "hardship_ended", "info", reason="repayment arrangement agreed")
    case.hold_for("arrangement", f"{arrangement.kind} arrangement", now)


def pay(case: CaseState, amount: Decimal, strategy: Strategy, now: datetime) -> Decimal:
    """Count a payment toward the active arrangement; return what the plan did not take."""
    left = amount
    if case.arrangement_active:
        left = case.arrangement.allocate(amount)  # type: ignore[union-attr]
        _complete_if_paid(case, now)
    return left


def judge(case: CaseState, strategy: Strategy, now: datetime) -> None:
    """Judge every instalment whose due date plus grace has passed: paid, late (tolerated) or missed."""
    arrangement = case.arrangement
    if arrangement is None or arrangement.state != "active" or case.commitments_suspended:
        return
    policy = strategy.arrangements
    for index, instalment in enumerate(arrangement.schedule):
        if instalment.state != "pending" or now < arrangement.deadline(instalment, policy.grace):
            continue
        following = next((i for i in arrangement.schedule[index + 1:] if i.state == "pending"), None)
        if instalment.remaining == 0:
            instalment.state = "paid"
        elif following is not None and arrangement.late_count < policy.tolerated_late:
            shortfall = instalment.remaining
            instalment.carried_forward, instalment.state = shortfall, "late"
            following.amount += shortfall
            arrangement.late_count += 1
            case.record(now, "instalment_late", "info", due_date=instalment.due_date.isoformat(),
                        carried_forward=str(shortfall), late_count=arrangement.late_count)
        else:
            instalment.state = "missed"
            arrangement.end("broken")
            arrangement.ended_at = now
            case.arrangements_broken += 1
            case.release_hold("arrangement", now)
            case.record(now, "arrangement_broken", "info", arrangement_kind=arrangement.kind,
                        due_date=instalment.due_date.isoformat(), unpaid=str(instalment.remaining),
                        broken_total=case.arrangements_broken)
            if case.amount_past_due == 0:
                # Nothing is past due any more (a settlement's early instalments paid the arrears):
                # there is nothing to collect, and the settlement's discount is lost.
                case.close(Outcome.CURED, "past-due amount paid; the arrangement broke on the rest", now)
            return
    _complete_if_paid(case, now)


def suspend(case: CaseState, now: datetime) -> None:
    """A hardship, dispute or operator hold began while the plan runs."""
    if case.arrangement_active and case.arrangement.suspended_since is None:  # type: ignore[union-attr]
        case.arrangement.suspended_since = now  # type: ignore[union-attr]


def resume(case: CaseState, now: datetime) -> None:
    """The last suspending hold ended: the remaining schedule moves on by the days it lasted."""
    arrangement = case.arrangement
    if arrangement is None or arrangement.state != "active" or arrangement.suspended_since is None:
        return
    days = (now.date() - arrangement.suspended_since.date()).days  # calendar days the hold spanned
    arrangement.suspended_since = None
    if days > 0 and arrangement.open:
        arrangement.postpone(days)
        case.record(now, "arrangement_rescheduled", "info", days=days,
                    next_due_date=arrangement.open[0].due_date.isoformat())


def cancel(case: CaseState, now: datetime) -> None:
    """The case closes while a plan runs (written off, dispute upheld, operator)."""
    if case.arrangement_active:
        case.arrangement.end("cancelled")  # type: ignore[union-attr]
        case.release_hold("arrangement", now)
        case.record(now, "arrangement_cancelled", "info", reason="case closed")


def _complete_if_paid(case: CaseState, now: datetime) -> None:
    arrangement = case.arrangement
    if arrangement is None or arrangement.state != "active" or not arrangement.fully_paid:
        return
    arrangement.end("completed")
    for instalment in arrangement.schedule:
        if instalment.state == "pending":
            instalment.state = "paid"
    case.release_hold("arrangement", now)
    case.record(now, "arrangement_completed", "info", arrangement_kind=arrangement.kind)
    if arrangement.kind == "settlement":
        written_down = case.outstanding
        case.amount_past_due = Decimal(0).quantize(case.amount_past_due)  # zero, in the currency's decimals
        case.outstanding = Decimal(0).quantize(case.outstanding)
        case.close(Outcome.SETTLED, f"settlement of {arrangement.settlement_amount} {case.currency} paid; "
                                    f"{written_down} {case.currency} written down", now)
        return
    if arrangement.waiver:
        waived = min(arrangement.waiver, case.amount_past_due)
        case.amount_past_due -= waived
        case.outstanding = max(Decimal(0), case.outstanding - waived)
    if case.amount_past_due == 0:
        case.close(Outcome.CURED, f"{arrangement.kind} arrangement completed", now)


def paid_in_time(case: CaseState, amount: Decimal, value_date: datetime, strategy: Strategy,
                 now: datetime) -> Decimal:
    """A payment valued by an instalment's deadline but posted after it was judged (within the posting
    lag): the instalment was met after all. A late one's shortfall comes back from the next instalment;
    a plan the missed one broke is in force again once that instalment is paid. Nothing is judged
    twice: only what the judging got wrong for want of the posting is set right. Returns what is left
    of the payment for the plan's open instalments."""
    arrangement, grace = case.arrangement, strategy.arrangements.grace
    if arrangement is None or amount <= 0:
        return amount
    if arrangement.state == "active":
        for index, instalment in enumerate(arrangement.schedule):
            if instalment.state != "late" or value_date > arrangement.deadline(instalment, grace) or amount <= 0:
                continue
            take = min(amount, instalment.carried_forward)
            if take <= 0:
                continue
            instalment.carried_forward -= take
            instalment.paid += take
            amount -= take
            # Where the shortfall went: onto the next instalment, and on from there while those were late too.
            moved = take
            for following in (i for i in arrangement.schedule[index + 1:] if i.state in ("pending", "late", "paid")):
                following.amount -= moved
                if following.state == "late":
                    moved = min(moved, following.carried_forward)
                    following.carried_forward -= moved
                    if moved > 0:
                        continue
                    break
                if following.paid > following.amount:  # paid with what is now the earlier one's
                    amount += following.paid - following.amount
                    following.paid = following.amount
                break
            if instalment.carried_forward == 0:
                instalment.state = "paid"
                arrangement.late_count = max(0, arrangement.late_count - 1)
            case.record(now, "instalment_paid_in_time", "info", due_date=instalment.due_date.isoformat(),
                        paid=str(take), reason="valued by its deadline, posted after it was judged late")
        return amount
    missed = next((i for i in arrangement.schedule if i.state == "missed"), None)
    if (arrangement.state != "broken" or missed is None or arrangement.ended_at is None
            or value_date > arrangement.deadline(missed, grace) or amount < missed.remaining
            or case.outcome is not None):
        return amount
    arrangement.state, arrangement.ended_at = "active", None
    for instalment in arrangement.schedule:
        if instalment.state in ("missed", "cancelled"):
            instalment.state = "pending"
    case.arrangements_broken -= 1
    case.hold_for("arrangement", f"{arrangement.kind} arrangement", now)
    case.record(now, "arrangement_reinstated", "info", arrangement_kind=arrangement.kind,
                due_date=missed.due_date.isoformat(),
                reason="the missed instalment was paid by its deadline and posted after the plan was judged broken")
    return amount
