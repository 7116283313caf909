"""Properties of a case under any sequence of elapsed time and commands, valid or not."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from domain.case import CallTask, CaseState, FieldVisit, open_case, tick
from domain.commands import handle
from domain.decide import Act, Advance, Block, Finish, Wait, decide, mark_done
from domain.stages import Channel, Stage
from tests.conftest import make_loan, strategy

T0 = datetime(2025, 3, 3, 9, 0, tzinfo=timezone.utc)
STRATEGY = strategy()
ORDER = list(Stage)

# Relative dates are resolved against the case's "now" when the command is sent.
_days = st.integers(min_value=-3, max_value=120)
_amounts = st.one_of(
    st.sampled_from(["0.01", "10", "50.00", "100.50", "450.00", "6000", "0", "-5", "abc", "1.001", "", " 20 "]),
    st.decimals(min_value=Decimal("0.01"), max_value=Decimal("700"), places=2).map(str),
    st.sampled_from([1.5, 100.0, True, None, [], {"x": 1}, 7]),
)
_references = st.sampled_from(["r1", "r2", "r3", "", "x" * 70])
_channels = st.one_of(st.none(), st.lists(st.sampled_from(["sms", "email", "call", "visit", "letter",
                                                           "legal_handoff", "pigeon"]), max_size=3))

_command = st.one_of(
    st.tuples(st.just("payment_received"),
              st.fixed_dictionaries({"amount": _amounts, "reference": _references})),
    st.tuples(st.just("promise_to_pay"),
              st.fixed_dictionaries({"amount": _amounts, "due_date": st.integers(-2, 20).map(lambda d: ("rel", d))})),
    st.tuples(st.just("hardship"), st.fixed_dictionaries(
        {"reason": st.sampled_from(["lost job", ""])},
        optional={"until": _days.map(lambda d: ("rel", d))})),
    st.tuples(st.just("hardship_resolved"), st.just({})),
    st.tuples(st.just("dispute"), st.fixed_dictionaries({"reason": st.just("not mine")})),
    st.tuples(st.just("dispute_resolved"), st.fixed_dictionaries({"upheld": st.sampled_from([False, False, False, True, "x"])})),
    st.tuples(st.just("cease_contact"), _channels.map(lambda c: {} if c is None else {"channels": c})),
    st.tuples(st.just("call_outcome"), st.fixed_dictionaries(
        {"outcome": st.sampled_from(["reached", "no_answer", "wrong_number", "refused", "left_message", "??"])})),
    st.tuples(st.just("field_visit_report"), st.fixed_dictionaries({"outcome": st.sampled_from(["met", "moved"])})),
    st.tuples(st.just("escalate"), st.just({})),
    st.tuples(st.just("hold"), st.fixed_dictionaries({"reason": st.just("review")},
                                                     optional={"until": _days.map(lambda d: ("rel", d))})),
    st.tuples(st.just("release"), st.just({})),
    st.tuples(st.just("close"), st.fixed_dictionaries({"outcome": st.sampled_from(["settled", "nope", "nope", "nope"]),
                                                       "note": st.just("n")})),
    st.tuples(st.just("assign"), st.fixed_dictionaries({"agent": st.sampled_from(["a1", ""])})),
    st.tuples(st.just("propose_arrangement"), st.one_of(
        st.fixed_dictionaries({"kind": st.just("instalments"), "instalments": st.lists(st.fixed_dictionaries(
            {"due_date": st.integers(-1, 60).map(lambda d: ("rel", d)), "amount": _amounts}), max_size=4)}),
        st.fixed_dictionaries({"kind": st.just("extension"), "new_due_date": st.integers(-1, 60).map(lambda d: ("rel", d))}),
        st.fixed_dictionaries({"kind": st.just("settlement"), "settlement_amount": _amounts,
                               "new_due_date": st.integers(0, 30).map(lambda d: ("rel", d)),
                               "approver_role": st.sampled_from(["agent", "supervisor"])}),
    )),
    st.tuples(st.sampled_from(["bogus", "payment_received", "hold"]),
              st.sampled_from([None, [], "text", 3, {"unexpected": 1}])),
)
_elapse = st.one_of(
    st.integers(min_value=1, max_value=72).map(lambda h: timedelta(hours=h)),
    st.integers(min_value=1, max_value=40).map(lambda d: timedelta(days=d)),
)
_operation = st.one_of(_elapse.map(lambda e: ("elapse", e)), _command.map(lambda c: ("command", c)))
_loan = st.fixed_dictionaries({
    "days_past_due": st.sampled_from([1, 5, 29, 45, 70, 95, 130]),
    "risk_grade": st.sampled_from(["A", "B", "E"]),
    "outstanding_amount": st.sampled_from(["200.00", "5000.00", "60000.00"]),
    "amount_past_due": st.sampled_from(["150.00", "199.99"]),  # at most the smallest balance
})


def _resolve(payload: Any, now: datetime) -> Any:
    """Turn ("rel", days) placeholders into dates relative to ``now``, at any depth."""
    if isinstance(payload, tuple) and len(payload) == 2 and payload[0] == "rel":
        day: date = now.date() + timedelta(days=payload[1])
        return day.isoformat()
    if isinstance(payload, dict):
        return {key: _resolve(value, now) for key, value in payload.items()}
    if isinstance(payload, list):
        return [_resolve(value, now) for value in payload]
    return payload


class Observer:
    """Checks the invariants after every change, against what it saw before."""

    def __init__(self, case: CaseState, now: datetime) -> None:
        self.case = case
        self.last_amount = case.amount_past_due
        self.last_stage = ORDER.index(case.stage)
        self.last_entered = case.stage_entered_at
        self.last_clock = case.stage_clock(now)

    def check(self, now: datetime) -> None:
        case = self.case
        assert case.amount_past_due >= 0
        assert case.amount_past_due <= self.last_amount, "amount past due increased"
        assert case.outstanding >= 0
        stage = ORDER.index(case.stage)
        assert stage >= self.last_stage, "stage moved backwards"
        clock = case.stage_clock(now)
        if case.stage_entered_at == self.last_entered:
            assert clock >= self.last_clock, "stage clock went back"
        self.last_amount, self.last_stage = case.amount_past_due, stage
        self.last_entered, self.last_clock = case.stage_entered_at, clock


def carry_out(case: CaseState, step: Advance | Act | Block, now: datetime) -> None:
    """What the workflow does with a step that is not a wait: a stage entered, a contact made (a call
    task opened, a visit started), a contact blocked."""
    if isinstance(step, Advance):
        assert ORDER.index(step.to) == ORDER.index(case.stage) + 1
        case.enter_stage(step.to, now, step.reason)
        return
    assert isinstance(step, (Act, Block))
    if isinstance(step, Act) and step.channel is Channel.CALL:
        case.calls.append(CallTask(task_id=f"call-{case.seq}", created_at=now))
        case.seq += 1
    if isinstance(step, Act) and step.channel is Channel.VISIT:
        case.visit = FieldVisit(visit_id=f"visit-{case.seq}", started_at=now, treatment_key=step.key)
    mark_done(case, step.key)


def _drive(case: CaseState, now: datetime, seen: Observer) -> datetime | None:
    """Run the workflow loop at ``now`` until the case waits; return when it wants to wake."""
    for _ in range(100):
        tick(case, STRATEGY, now)
        seen.check(now)
        step = decide(case, STRATEGY, now)
        if isinstance(step, Finish):
            assert case.outcome is not None
            return None
        if isinstance(step, Wait):
            assert step.until is None or step.until > now, f"Wait until {step.until} is not after {now}"
            return step.until
        carry_out(case, step, now)
        seen.check(now)
    raise AssertionError("decide never settled on a Wait")


def _elapse_to(case: CaseState, now: datetime, target: datetime, seen: Observer) -> datetime:
    """Let time pass as a durable timer would: waking at each Wait.until on the way."""
    while True:
        wake = _drive(case, now, seen)
        if case.outcome is not None:
            return target
        nxt = min(wake, target) if wake is not None else target
        paused, clock = case.paused, case.stage_clock(now)
        entered = case.stage_entered_at
        if paused:
            assert case.stage_clock(nxt) == clock, "stage clock ran while paused"
        now = nxt
        tick(case, STRATEGY, now)
        if paused and case.stage_entered_at == entered:
            assert case.stage_clock(now) == clock, "stage clock ran while paused"
        seen.check(now)
        if now >= target:
            return now


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(loan=_loan, operations=st.lists(_operation, min_size=1, max_size=25))
def test_case_invariants_hold_under_any_sequence_of_time_and_commands(loan, operations):
    case = open_case(make_loan(**loan), STRATEGY, T0)
    now = T0
    seen = Observer(case, now)
    _drive(case, now, seen)
    for kind, operation in operations:
        if kind == "elapse":
            now = _elapse_to(case, now, now + operation, seen)
            continue
        name, payload = operation
        events_before = len(case.events) + case.events_dropped
        result = handle(name, _resolve(payload, now), case, STRATEGY, now)  # never raises
        assert isinstance(result, bool)
        assert len(case.events) + case.events_dropped > events_before, "every command leaves an event"
        if not result:
            assert case.events[-1].status == "rejected" and case.events[-1].reason
        seen.check(now)
        _drive(case, now, seen)
