"""The ``propose_arrangement`` command: a repayment arrangement, checked against the strategy's limits."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from pydantic import BaseModel, ConfigDict, Field

from domain import arrangement_rules
from domain.arrangements import Arrangement, ArrangementKind, Instalment
from domain.case import CaseState
from domain.command_base import AmountText, Command
from domain.errors import BeyondLimit, Rejected
from domain.money import parse_amount
from domain.strategy import Strategy


class ScheduledInstalment(BaseModel):
    model_config = ConfigDict(extra="forbid")
    due_date: date
    amount: AmountText


class ProposeArrangement(Command):
    """Agree a repayment arrangement; every kind becomes a schedule the workflow monitors."""

    name = "propose_arrangement"
    kind: ArrangementKind
    instalments: list[ScheduledInstalment] | None = None
    new_due_date: date | None = None
    settlement_amount: AmountText | None = None
    interest_waiver: AmountText | None = None
    fee_waiver: AmountText | None = None
    approved_by: str | None = Field(default=None, max_length=64)
    approver_role: str = Field(default="agent", max_length=32)

    def check(self, case, strategy, now):
        self.build(case, strategy, now)

    def apply(self, case, strategy, now):
        arrangement = self.build(case, strategy, now)
        arrangement_rules.agree(case, arrangement, now)
        case.record(now, self.name, "accepted", arrangement_kind=self.kind, instalments=len(arrangement.schedule),
                    total=str(sum((i.amount for i in arrangement.schedule), Decimal(0))),
                    waiver=str(arrangement.waiver), approved_by=self.approved_by, approver_role=self.approver_role)

    def build(self, case: CaseState, strategy: Strategy, now: datetime) -> Arrangement:
        """The arrangement this proposal describes, or :class:`Rejected` naming what breaks a rule."""
        policy, currency = strategy.arrangements, case.currency
        if case.arrangement_active:
            raise Rejected("", "the case already has an active repayment arrangement")
        for kind in ("dispute", "operator"):
            if case.hold(kind) is not None:
                raise Rejected("", f"the case is on a {kind} hold; resolve it before agreeing a plan")
        if case.amount_past_due == 0 and self.kind != "settlement":
            raise Rejected("", "nothing is past due: there are no arrears to arrange")
        self._only_fields_of_its_kind()
        if case.promise is not None and case.promise.state == "pending":
            raise Rejected("", f"a promise to pay is pending (due {case.promise.due_date}); "
                               "record its payment or let it fall due first")
        limit = policy.approval_limits.get(self.approver_role)
        if limit is None:
            raise Rejected("approver_role", f"{self.approver_role!r} is not one of "
                                            f"{', '.join(sorted(policy.approval_limits))}")
        if self.approver_role != "agent" and not self.approved_by:
            raise Rejected("approved_by", f"name the {self.approver_role} who approved it")
        # A proposal beyond the approver's limit is refused last, once everything else fits: what
        # remains is a question for someone with a higher limit (the desk's four-eyes approval).
        beyond: BeyondLimit | None = None
        waiver = Decimal(0)
        for field in ("interest_waiver", "fee_waiver"):
            value = getattr(self, field)
            if value is not None:
                waiver += parse_amount(value, currency, field, allow_zero=True)
        if self.kind == "settlement":
            if waiver:
                raise Rejected("interest_waiver", "a settlement already reduces the debt; put the reduction "
                                                  "in settlement_amount")
            if self.settlement_amount is None:
                raise Rejected("settlement_amount", "is required for a settlement")
            target = parse_amount(self.settlement_amount, currency, "settlement_amount")
            if target > case.outstanding:
                raise Rejected("settlement_amount", f"is more than the outstanding {case.outstanding} {currency}")
            beyond = _within_limit("settlement_amount", case.outstanding - target, case.outstanding, "balance",
                                   self.approver_role, limit)
        else:
            if waiver > case.amount_past_due:
                raise Rejected("interest_waiver", f"waivers exceed the arrears ({case.amount_past_due} {currency})")
            beyond = _within_limit("interest_waiver", waiver, case.amount_past_due, "arrears", self.approver_role,
                                   limit)
            target = case.amount_past_due - waiver
            if target <= 0:
                raise Rejected("interest_waiver", "waives the whole arrears: nothing is left to arrange; "
                                                  "close the case instead")
        schedule = self._schedule(target, currency)
        latest = now.date() + policy.max_term
        for index, item in enumerate(schedule):
            where = f"instalments.{index}.due_date" if self.instalments else "new_due_date"
            if item.due_date < now.date():
                raise Rejected(where, f"{item.due_date} is in the past")
            if item.due_date > latest:
                raise Rejected(where, f"{item.due_date} is beyond the strategy's longest term ({latest})")
            if index and item.due_date <= schedule[index - 1].due_date:
                raise Rejected(where, "instalment dates must be ascending")
        if len(schedule) > policy.max_instalments:
            raise Rejected("instalments", f"{len(schedule)} instalments; the strategy allows at most "
                                          f"{policy.max_instalments}")
        total = sum((item.amount for item in schedule), Decimal(0))
        if total != target:
            covers = "the settlement amount" if self.kind == "settlement" else "the arrears less waivers"
            raise Rejected("instalments", f"add up to {total} {currency}, not {covers} ({target} {currency})")
        if beyond is not None:
            raise beyond
        return Arrangement(kind=self.kind, agreed_at=now, approved_by=self.approved_by,
                           approver_role=self.approver_role, schedule=schedule, waiver=waiver,
                           settlement_amount=target if self.kind == "settlement" else None)

    def _only_fields_of_its_kind(self) -> None:
        unused = {
            "instalments": ["settlement_amount", "new_due_date"],
            "extension": ["settlement_amount", "instalments"],
            "settlement": ["new_due_date"] if self.instalments else [],
        }[self.kind]
        for field in unused:
            if getattr(self, field) is not None:
                raise Rejected(field, f"does not apply to {'an' if self.kind[0] in 'aei' else 'a'} {self.kind}")

    def _schedule(self, target: Decimal, currency: str) -> list[Instalment]:
        if self.kind == "extension" or (self.kind == "settlement" and not self.instalments):
            if self.instalments:
                raise Rejected("instalments", "an extension has one new due date; use new_due_date")
            if self.new_due_date is None:
                raise Rejected("new_due_date", f"is required for {'an' if self.kind == 'extension' else 'a'} "
                                               f"{self.kind} without instalments")
            return [Instalment(due_date=self.new_due_date, amount=target)]
        if not self.instalments:
            raise Rejected("instalments", "name at least one {due_date, amount}")
        return [Instalment(due_date=item.due_date,
                           amount=parse_amount(item.amount, currency, f"instalments.{index}.amount"))
                for index, item in enumerate(self.instalments)]


def _within_limit(field: str, given_up: Decimal, base: Decimal, of_what: str, role: str,
                  limit: Decimal) -> BeyondLimit | None:
    share = given_up / base if base else Decimal(0)
    if share <= limit:
        return None
    return BeyondLimit(field, f"gives up {share:.2%} of the {of_what}; approver role {role} may give up "
                              f"at most {limit:.0%}", share=share, limit=limit, role=role)
