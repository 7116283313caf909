"""A collection strategy is data: segmentation to an entry stage, and the ladder.

Strategies are TOML files validated by these models. The starter resolves one at
intake and passes it whole in the workflow input, so a running case keeps the
strategy it started with.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from domain.compliance import Tightening
from domain.durations import Duration
from domain.loan import Loan
from domain.stages import Channel, Stage

CALL_OUTCOMES = ("reached", "no_answer", "wrong_number", "refused", "left_message")
VISIT_OUTCOMES = ("met", "not_home", "moved", "refused", "paid")
# A visit whose report does not arrive by its deadline ends as "overdue".
VISIT_RESULTS = VISIT_OUTCOMES + ("overdue",)
_TEMPLATED = (Channel.SMS, Channel.EMAIL, Channel.LETTER)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Treatment(_Model):
    """One channel action, repeated at offsets on the stage clock (which stops while paused)."""

    channel: Channel
    template: str | None = None
    at: list[Duration] = Field(min_length=1)

    @model_validator(mode="after")
    def _template_where_needed(self) -> "Treatment":
        if self.channel in _TEMPLATED and not self.template:
            raise ValueError(f"a {self.channel.value} treatment needs a template")
        if self.at != sorted(self.at):
            raise ValueError("offsets in 'at' must be ascending")
        return self


class VisitPlan(_Model):
    """How a field visit is organised: lead time, staff, report deadline, revisits."""

    lead_time: Duration = timedelta(days=3)
    staff: int = Field(default=2, ge=1)
    report_within: Duration = timedelta(days=3)
    max_visits: int = Field(default=2, ge=1)


class StageConfig(_Model):
    """One rung of the ladder. A stage ends when days past due reach ``leave_at_dpd`` (after at
    least ``min_dwell`` on the stage clock), or after ``dwell`` on the stage clock, whichever
    comes first; or early on an ``exit_on`` outcome. The stage clock stops while a case is on
    hold, so a long pause compresses the following stages to their minimum, never skips them."""

    dwell: Duration | None = None
    leave_at_dpd: int | None = Field(default=None, ge=1)
    min_dwell: Duration = timedelta(0)
    treatments: list[Treatment] = []
    missed_call_sms: str | None = None
    visit: VisitPlan | None = None
    exit_on: list[str] = []

    @model_validator(mode="after")
    def _consistent(self) -> "StageConfig":
        if self.dwell is not None and self.dwell <= timedelta(0):
            raise ValueError("dwell must be positive")
        if self.dwell is not None and self.min_dwell > self.dwell:
            raise ValueError("min_dwell must not exceed dwell")
        has_visit = any(t.channel is Channel.VISIT for t in self.treatments)
        if has_visit and self.visit is None:
            raise ValueError("a visit treatment needs a [visit] plan in the same stage")
        unknown = set(self.exit_on) - set(CALL_OUTCOMES) - set(VISIT_RESULTS)
        if unknown:
            raise ValueError(f"exit_on has unknown outcomes {sorted(unknown)}")
        return self


class Segment(_Model):
    """A rule matching loans; the first matching rule with ``enter`` picks the entry stage,
    and every matching rule's ``skip`` applies."""

    name: str
    min_dpd: int | None = None
    max_dpd: int | None = None
    grades: list[str] | None = None
    products: list[str] | None = None
    # Amount bands are per currency: a band only matches loans in a currency it lists.
    min_outstanding: dict[str, Decimal] | None = None
    max_outstanding: dict[str, Decimal] | None = None
    enter: Stage | None = None
    skip: list[Stage] = []

    def matches(self, loan: Loan) -> bool:
        if self.min_dpd is not None and loan.days_past_due < self.min_dpd:
            return False
        if self.max_dpd is not None and loan.days_past_due > self.max_dpd:
            return False
        if self.grades is not None and loan.risk_grade not in self.grades:
            return False
        if self.products is not None and loan.product not in self.products:
            return False
        if self.min_outstanding is not None:
            floor = self.min_outstanding.get(loan.currency)
            if floor is None or loan.outstanding_amount < floor:
                return False
        if self.max_outstanding is not None:
            ceiling = self.max_outstanding.get(loan.currency)
            if ceiling is None or loan.outstanding_amount >= ceiling:
                return False
        return True


class PaymentPolicy(_Model):
    """How the case reads payments and the servicer's figures."""

    # A payment is posted at most this long after its value date (``paid_at``): a promise or an
    # instalment a payment valued in time met is kept, even when the payment is posted after it was judged.
    posting_lag: Duration = timedelta(days=5)
    # A past-due residual below this, per currency (in the currency's unit), does not escalate: the case
    # cures. Currencies not named use ``default_tolerance``.
    residual_tolerance: dict[str, Decimal] = {}
    default_tolerance: Decimal = Field(default=Decimal("1.00"), ge=0)

    def tolerance(self, currency: str) -> Decimal:
        return self.residual_tolerance.get(currency, self.default_tolerance)


class PromisePolicy(_Model):
    horizon: Duration = timedelta(days=14)
    # A promise must cover at least this share of the past-due amount, so a stream of token
    # promises cannot hold escalation off indefinitely.
    min_share: Decimal = Field(default=Decimal("0.2"), ge=0, le=1)
    grace: Duration = timedelta(days=2)
    reminder_before: Duration | None = timedelta(days=1)
    reminder_template: str | None = "promise_reminder"
    broken_to_escalate: int = Field(default=2, ge=1)


class ArrangementPolicy(_Model):
    """Limits on repayment arrangements, and how they are monitored."""

    max_instalments: int = Field(default=12, ge=1)
    max_term: Duration = timedelta(days=365)
    grace: Duration = timedelta(days=3)
    reminder_before: Duration | None = timedelta(days=2)
    reminder_template: str | None = "arrangement_reminder"
    # Late instalments tolerated (their shortfall moves onto the next one) before a miss breaks the plan.
    tolerated_late: int = Field(default=0, ge=0)
    # The largest share of the arrears (waivers) or of the balance (settlement discount) each
    # approver role may give up.
    approval_limits: dict[str, Decimal] = {"agent": Decimal("0.10"), "supervisor": Decimal("0.50")}

    @model_validator(mode="after")
    def _limits_are_shares(self) -> "ArrangementPolicy":
        for role, share in self.approval_limits.items():
            if not Decimal(0) <= share <= Decimal(1):
                raise ValueError(f"approval_limits.{role} must be a share between 0 and 1")
        return self


class Strategy(_Model):
    name: str
    description: str = ""
    hardship_max: Duration = timedelta(days=90)
    # Days past due at which a case wakes to refresh its DaysPastDue search attribute, so
    # supervisors' bucket filters stay right without a daily wake-up.
    dpd_buckets: list[int] = [31, 61, 91, 121, 151, 181, 361]
    promise: PromisePolicy = PromisePolicy()
    payments: PaymentPolicy = PaymentPolicy()
    arrangements: ArrangementPolicy = ArrangementPolicy()
    segments: list[Segment] = []
    stages: dict[Stage, StageConfig]
    # Stricter contact rules than the loan's jurisdiction profile (never looser); see compliance/.
    compliance: Tightening | None = None

    @model_validator(mode="after")
    def _whole_ladder(self) -> "Strategy":
        missing = [s.value for s in Stage if s not in self.stages]
        if missing:
            raise ValueError(f"stages: missing {', '.join(missing)}")
        for stage in Stage:
            if stage is not Stage.LITIGATION and self.stages[stage].dwell is None:
                raise ValueError(f"stages.{stage.value}.dwell is required (only litigation waits without one)")
        if any(Stage.LITIGATION in seg.skip for seg in self.segments):
            raise ValueError("segments: litigation cannot be skipped")
        return self

    def template_channels(self) -> dict[str, set[Channel]]:
        """Each template this strategy sends, and the channels it goes out on (reminders of a
        promise or a plan, and the text after a missed call, go by SMS)."""
        used: dict[str, set[Channel]] = {}
        for config in self.stages.values():
            for treatment in config.treatments:
                if treatment.template:
                    used.setdefault(treatment.template, set()).add(treatment.channel)
            if config.missed_call_sms:
                used.setdefault(config.missed_call_sms, set()).add(Channel.SMS)
        for reminder in (self.promise.reminder_template, self.arrangements.reminder_template):
            if reminder:
                used.setdefault(reminder, set()).add(Channel.SMS)
        return used

    def templates(self) -> set[str]:
        return set(self.template_channels())

    def entry_segment(self, loan: Loan) -> Segment | None:
        """The segment whose ``enter`` picks the loan's entry stage (the first matching one that has
        an ``enter``), or None when the ladder's first stage applies."""
        return next((seg for seg in self.segments if seg.enter is not None and seg.matches(loan)), None)

    def entry(self, loan: Loan) -> tuple[Stage, frozenset[Stage]]:
        """The stage a new case starts in, and the stages its segment skips."""
        matching = [seg for seg in self.segments if seg.matches(loan)]
        skip = frozenset(stage for seg in matching for stage in seg.skip)
        chooser = self.entry_segment(loan)
        stage = chooser.enter if chooser is not None and chooser.enter is not None else Stage.REMINDER
        while stage in skip and stage.following() is not None:
            stage = stage.following()
        return stage, skip
