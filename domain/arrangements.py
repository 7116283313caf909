"""Repayment arrangements: instalment plans, extensions and settlements, with waivers.

Every kind becomes a schedule of instalments: an extension is one instalment of the
arrears on the new date; a settlement is the reduced amount, on one date or in
instalments. Payments go to the oldest open instalment first, so an early or partial
payment is carried forward. Each instalment is judged at the end of its due date
(UTC) plus the strategy's grace; while another hold applies (hardship, dispute,
operator) nothing is judged, and grace starts again when it ends.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel

ArrangementKind = Literal["instalments", "extension", "settlement"]


class Instalment(BaseModel):
    due_date: date
    amount: Decimal
    paid: Decimal = Decimal(0)
    # What a tolerated late instalment left unpaid, moved onto the next one.
    carried_forward: Decimal = Decimal(0)
    state: Literal["pending", "paid", "late", "missed", "cancelled"] = "pending"
    reminded: bool = False

    @property
    def remaining(self) -> Decimal:
        return max(Decimal(0), self.amount - self.paid - self.carried_forward)


class Arrangement(BaseModel):
    kind: ArrangementKind
    # active | completed | broken as in the contract; cancelled when the case closes under a plan.
    state: Literal["active", "completed", "broken", "cancelled"] = "active"
    agreed_at: datetime
    approved_by: str | None = None
    approver_role: str = "agent"
    schedule: list[Instalment]
    waiver: Decimal = Decimal(0)
    settlement_amount: Decimal | None = None
    late_count: int = 0
    # Since when a hardship, dispute or operator hold has suspended the plan; when the last such
    # hold ends, the remaining schedule moves on by as many days (a payment holiday).
    suspended_since: datetime | None = None
    ended_at: datetime | None = None  # when it completed, broke or was cancelled (the case follows the loan)

    @property
    def open(self) -> list[Instalment]:
        return [i for i in self.schedule if i.state == "pending"]

    @property
    def amount_remaining(self) -> Decimal:
        return sum((i.remaining for i in self.schedule if i.state in ("pending", "late")), Decimal(0))

    @property
    def key(self) -> str:
        """Tells this plan's reminders from another plan's on the same case."""
        return self.agreed_at.strftime("%Y%m%dT%H%M%S%f")

    def deadline(self, instalment: Instalment, grace: timedelta) -> datetime:
        end_of_day = datetime.combine(instalment.due_date + timedelta(days=1), time.min, tzinfo=timezone.utc)
        return end_of_day + grace

    def postpone(self, days: int) -> None:
        for instalment in self.open:
            instalment.due_date += timedelta(days=days)
            instalment.reminded = False

    def end(self, state: Literal["completed", "broken", "cancelled"]) -> None:
        self.state = state
        for instalment in self.open:
            if state != "completed":
                instalment.state = "cancelled"

    def allocate(self, amount: Decimal) -> Decimal:
        """Apply a payment to the open instalments, oldest first; return what is left over."""
        for instalment in self.schedule:
            if amount <= 0:
                break
            if instalment.state in ("pending", "late") and instalment.remaining > 0:
                applied = min(amount, instalment.remaining)
                instalment.paid += applied
                amount -= applied
                if instalment.remaining == 0 and instalment.state == "pending":
                    instalment.state = "paid"
        return amount

    def deallocate(self, amount: Decimal) -> list[str]:
        """Take back a reversed payment from the instalments it paid, newest first; return the due
        dates of instalments open again (judged anew at their deadline, or at once if it has passed)."""
        reopened: list[str] = []
        for instalment in reversed(self.schedule):
            if amount <= 0:
                break
            if instalment.paid <= 0 or instalment.state in ("missed", "cancelled"):
                continue
            taken = min(amount, instalment.paid)
            instalment.paid -= taken
            amount -= taken
            if instalment.state == "paid" and instalment.remaining > 0:
                instalment.state = "pending"
                reopened.append(instalment.due_date.isoformat())
        return sorted(reopened)

    @property
    def fully_paid(self) -> bool:
        return all(i.remaining == 0 for i in self.schedule)

    def view(self, grace: timedelta) -> dict:
        upcoming = self.open[0] if self.open and self.state == "active" else None
        return {
            "kind": self.kind, "state": self.state, "agreed_at": self.agreed_at.isoformat(),
            "approved_by": self.approved_by, "approver_role": self.approver_role,
            "waiver": str(self.waiver),
            "settlement_amount": str(self.settlement_amount) if self.settlement_amount is not None else None,
            "schedule": [{"due_date": i.due_date.isoformat(), "amount": str(i.amount),
                          "paid": str(i.paid.quantize(i.amount)),
                          "carried_forward": str(i.carried_forward.quantize(i.amount)), "state": i.state}
                         for i in self.schedule],
            "next_due_date": upcoming.due_date.isoformat() if upcoming else None,
            "next_amount": str(upcoming.remaining) if upcoming else None,
            "next_judged_at": self.deadline(upcoming, grace).isoformat() if upcoming else None,
            "amount_remaining": str(self.amount_remaining) if self.state == "active" else "0",
            "late_count": self.late_count,
        }
