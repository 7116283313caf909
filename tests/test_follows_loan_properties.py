"""Properties of a case that follows the loan (issue 15), under any sequence of time and commands:
payments with value dates, reversals, the servicer's figures, holds, promises and plans, valid or not."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from domain.case import CaseState, open_case, tick
from domain.commands import handle
from domain.decide import Finish, Wait, decide
from domain.episodes import FOLLOWS_LOAN
from domain.stages import Stage
from tests.conftest import make_loan, strategy
from tests.test_case_properties import _resolve, carry_out

T0 = datetime(2025, 3, 3, 9, 0, tzinfo=timezone.utc)
STRATEGY = strategy()
ORDER = list(Stage)
TOLERANCE = STRATEGY.payments.tolerance("USD")

_amounts = st.one_of(st.sampled_from(["0.01", "0.50", "10", "99.99", "150.00", "149.50", "0", "-5", "abc"]),
                     st.decimals(min_value=Decimal("0.01"), max_value=Decimal("400"), places=2).map(str))
_refs = st.sampled_from(["p1", "p2", "p3", "p4"])
_value_hours = st.integers(min_value=-24 * 9, max_value=2)  # up to nine days back, a little ahead
_command = st.one_of(
    st.tuples(st.just("payment_received"), st.fixed_dictionaries(
        {"amount": _amounts, "reference": _refs}, optional={"paid_at": _value_hours.map(lambda h: ("hours", h))})),
    st.tuples(st.just("payment_reversed"), st.fixed_dictionaries({"reference": _refs, "reason": st.just("returned")})),
    st.tuples(st.just("loan_update"), st.one_of(
        st.fixed_dictionaries({"as_of": st.integers(-3, 0).map(lambda d: ("rel", d)), "amount_past_due": _amounts,
                               "outstanding": st.sampled_from(["5000.00", "400.00", "0"]),
                               "days_past_due": st.integers(0, 130)}),
        st.fixed_dictionaries({"as_of": st.integers(-1, 0).map(lambda d: ("rel", d)), "current": st.just(True),
                               "reason": st.just("absent from the file")}))),
    st.tuples(st.just("promise_to_pay"), st.fixed_dictionaries(
        {"amount": st.sampled_from(["40.00", "150.00"]), "due_date": st.integers(0, 12).map(lambda d: ("rel", d))})),
    st.tuples(st.sampled_from(["hardship", "dispute", "hold"]), st.just({"reason": "r"})),
    st.tuples(st.sampled_from(["hardship_resolved", "release"]), st.just({})),
    st.tuples(st.just("dispute_resolved"), st.just({"upheld": False})),
    st.tuples(st.just("propose_arrangement"), st.fixed_dictionaries({"kind": st.just("instalments"), "instalments":
              st.lists(st.fixed_dictionaries({"due_date": st.integers(1, 50).map(lambda d: ("rel", d)),
                                              "amount": st.sampled_from(["50.00", "75.00"])}), min_size=1, max_size=3)
              .map(lambda xs: sorted(xs, key=lambda x: x["due_date"][1]))})),
)
_elapse = st.one_of(st.integers(1, 72).map(lambda h: timedelta(hours=h)), st.integers(1, 20).map(lambda d: timedelta(days=d)))
_operation = st.one_of(_elapse.map(lambda e: ("elapse", e)), _command.map(lambda c: ("command", c)))


def _at(payload, now: datetime):
    """("hours", h) placeholders: a value date ``h`` hours from ``now``; ("rel", d): a date."""
    if isinstance(payload, dict):
        return {k: _at(v, now) for k, v in payload.items()}
    if isinstance(payload, tuple) and payload[0] == "hours":
        return (now + timedelta(hours=payload[1])).isoformat()
    return _resolve(payload, now)


def _check(case: CaseState, last_stage: int) -> int:
    assert case.amount_past_due >= 0 and case.outstanding >= 0
    assert case.paid_total == sum((p.amount for p in case.payments if not p.reversed), Decimal(0))
    stage = ORDER.index(case.stage)
    assert stage >= last_stage, "stage moved backwards"
    if case.outcome is None and not case.arrangement_active:
        assert not (0 < case.amount_past_due < TOLERANCE), "a residual below the tolerance left the case open"
    return stage


def _tick(case: CaseState, now: datetime) -> None:
    """Time passes: no promise breaks while a hardship, dispute or operator hold applies."""
    suspended = case.commitments_suspended
    broken = case.promises_broken
    tick(case, STRATEGY, now)
    if suspended and case.commitments_suspended:
        assert case.promises_broken <= broken, "a promise broke while the case was on hold"


def _drive(case: CaseState, now: datetime, stage: int) -> tuple[datetime | None, int]:
    for _ in range(100):
        _tick(case, now)
        stage = _check(case, stage)
        step = decide(case, STRATEGY, now)
        if isinstance(step, Finish):
            return None, stage
        if isinstance(step, Wait):
            assert step.until is None or step.until > now, f"Wait until {step.until} is not after {now}"
            return step.until, stage
        carry_out(case, step, now)
    raise AssertionError("decide never settled on a Wait")


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(dpd=st.sampled_from([3, 29, 45, 95]), operations=st.lists(_operation, min_size=1, max_size=25))
def test_a_case_following_the_loan_keeps_its_invariants(dpd, operations):
    case = open_case(make_loan(days_past_due=dpd, amount_past_due="150.00", outstanding_amount="5000.00"),
                     STRATEGY, T0, features=[FOLLOWS_LOAN], episode="2025-02-28")
    now, stage = T0, 0
    _, stage = _drive(case, now, stage)
    for kind, operation in operations:
        if case.outcome is not None:
            break
        if kind == "elapse":
            target = now + operation
            while now < target and case.outcome is None:
                wake, stage = _drive(case, now, stage)
                now = min(wake, target) if wake is not None else target
            _, stage = _drive(case, now, stage)
            continue
        name, payload = operation
        before = case.total_events
        assert isinstance(handle(name, _at(payload, now), case, STRATEGY, now), bool)  # never raises
        assert case.total_events > before, "every command leaves an event"
        assert all(k.startswith(f"{case.loan_id}/2025-02-28/") for k in [case.next_key(case.stage, "probe")])
        case.seq -= 1
        _, stage = _drive(case, now, stage)
