"""The collection KPIs on a hand-built ledger: a dozen cases written out as their events, each
metric's right answer worked out by hand in the comments beside it.

The window is November 2026 (``[2026-11-01, 2026-12-01)``), money in USD unless a case says CNY. The
unit costs are round numbers (``PRICES``) so the cost can be added up by hand. Who's who: ann, bob and
dan are agents (teams north, north, field), gus an agent without a team, carl an agent whose plan
broke, sup a supervisor, core the bank's payments system, sync the servicer's daily file.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from domain.dpd import DPD_BUCKETS, bucket_of
from reports.costs import CostsError, load_costs, parse_costs
from reports.kpis import (
    METRIC_NAMES, METRICS, UNITS, AgentRow, Event, Ratio, Report, agent_performance, compute, metrics_markdown,
    period_key,
)

NOV, DEC = date(2026, 11, 1), date(2026, 12, 1)
D = Decimal
PRICES = parse_costs({
    "actions_per_case": 10, "actions_per_command": 1,
    "currencies": {
        "USD": {"action": "0.01", "sms": "0.10", "email": "0.05", "letter": "2.00", "call": "1.00", "visit": "20.00"},
        "CNY": {"action": "0.1", "sms": "1", "email": "0.5", "letter": "20", "call": "10", "visit": "200"},
    }})
TEAMS = {"ann": "north", "bob": "north", "dan": "field"}


def at(when: str) -> datetime:
    """``"11-02 09:00"``: that moment of 2026, UTC (``"2027-01-02 09:00"`` for another year)."""
    year, rest = (2026, when) if when.count("-") == 1 else (int(when[:4]), when[5:])
    month, day, hour, minute = (int(part) for part in re.split(r"[- :]", rest))
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def ev(when: str, kind: str, status: str = "info", actor: str | None = None, reason: str | None = None,
       **detail: Any) -> tuple[Any, ...]:
    return (at(when), kind, status, actor, reason, detail)


def case(loan_id: str, episode: str, *steps: tuple[Any, ...]) -> list[Event]:
    """A case's events, numbered in the order written."""
    return [Event(loan_id, episode, seq, when, kind, status, reason, actor, detail)
            for seq, (when, kind, status, actor, reason, detail) in enumerate(steps)]


def opened(when: str, *, stage: str, dpd: int, past_due: str, outstanding: str, grade: str, currency: str = "USD",
           strategy: str = "default", **more: Any) -> tuple[Any, ...]:
    return ev(when, "case_opened", stage=stage, strategy=strategy, days_past_due=dpd, currency=currency,
              amount_past_due=past_due, outstanding=outstanding, risk_grade=grade, product="card",
              jurisdiction=more.pop("jurisdiction", "US"), episode=None, skip=[], **more)


CONTACT_HOURS = "outside contact hours 08:00-21:00 in America/New_York"
VALIDATION = ("validation period until 2026-11-20: no legal notice or enforcement may overshadow the borrower's "
              "right to dispute (12 CFR 1006.38)")
CEASED = "borrower asked to cease contact on this channel"

LEDGER: list[list[Event]] = [
    # C01 enters 11-02 at DPD 10 (1-30), assigned to hal; ann reaches the borrower, takes a promise of 200, the
    # borrower pays it on 11-09 (ann's, not hal's) and the case closes cured: 7 days 1 hour after it opened = 7.04.
    case("C01", "2026-10-23",
         opened("11-02 09:00", stage="reminder", dpd=10, past_due="200.00", outstanding="2000.00", grade="B"),
         ev("11-02 10:00", "sms_sent", "sent", template="reminder_1"),
         ev("11-03 09:00", "assign", "accepted", "sup", agent="hal"),
         ev("11-04 14:00", "call_outcome", "accepted", "ann", outcome="reached", agent="ann", dials=1, task_id="t1"),
         ev("11-04 14:05", "promise_to_pay", "accepted", "ann", amount="200.00", due_date="2026-11-10"),
         ev("11-09 10:00", "payment_received", "accepted", "core", amount="200.00", reference="C01-1",
            amount_past_due="0.00", outstanding="1800.00"),
         ev("11-09 10:00", "promise_kept", amount="200.00", paid="200.00"),
         ev("11-09 10:00", "case_closed", reason="past-due amount paid", outcome="cured", amount_past_due="0.00",
            outstanding="1800.00")),
    # C02 entered 10-15 at DPD 20: first day past due 09-25, so DPD 37 (31-60) on 11-01 and 67 (61-90) on
    # 12-01: it rolls forward. bob calls twice (3 dials, then 1), takes a promise of 300 that breaks on 11-14.
    # Its payment of 12-03 is after the window and counts nowhere.
    case("C02", "2026-09-25",
         opened("10-15 09:00", stage="reminder", dpd=20, past_due="300.00", outstanding="3000.00", grade="C"),
         ev("10-16 09:00", "email_sent", "sent", template="reminder_email"),
         ev("10-20 09:00", "assign", "accepted", "sup", agent="bob"),
         ev("11-05 11:00", "call_outcome", "accepted", "bob", outcome="no_answer", dials=3),
         ev("11-06 11:00", "call_outcome", "accepted", "bob", outcome="reached", dials=1),
         ev("11-06 11:05", "promise_to_pay", "accepted", "bob", amount="300.00", due_date="2026-11-12"),
         ev("11-14 00:00", "promise_broken", amount="300.00", paid="0", due_date="2026-11-12", broken_total=1),
         ev("11-15 09:00", "stage_entered", reason="dwell over", stage="contact", previous="reminder"),
         ev("12-03 09:00", "payment_received", "accepted", "core", amount="100.00", reference="C02-1",
            amount_past_due="200.00")),
    # C03 enters 11-03 at DPD 40 (31-60); ann agrees a plan of two instalments, both paid (credited to ann:
    # the plan was running), the plan completes and the case closes cured on 11-20: 17.00 days.
    case("C03", "2026-09-24",
         opened("11-03 09:00", stage="contact", dpd=40, past_due="500.00", outstanding="5000.00", grade="C"),
         ev("11-04 09:00", "assign", "accepted", "sup", agent="ann"),
         ev("11-05 09:00", "propose_arrangement", "accepted", "ann", arrangement_kind="instalments", instalments=2,
            total="500.00", waiver="0", approved_by=None, approver_role="agent"),
         ev("11-10 09:00", "payment_received", "accepted", "core", amount="250.00", reference="C03-1",
            amount_past_due="250.00"),
         ev("11-20 09:00", "payment_received", "accepted", "core", amount="250.00", reference="C03-2",
            amount_past_due="0.00"),
         ev("11-20 09:00", "arrangement_completed", arrangement_kind="instalments"),
         ev("11-20 09:00", "case_closed", outcome="cured", amount_past_due="0.00", outstanding="4500.00")),
    # C04 entered 10-01 at DPD 65: first day past due 07-28, DPD 96 (91-120) on 11-01, 126 (121-180) on
    # 12-01: forward. carl's plan of 10-10 breaks on 11-10; a letter goes, the next one is deferred.
    case("C04", "2026-07-28",
         opened("10-01 09:00", stage="legal_letter", dpd=65, past_due="800.00", outstanding="4000.00", grade="D"),
         ev("10-02 09:00", "assign", "accepted", "sup", agent="carl"),
         ev("10-10 09:00", "propose_arrangement", "accepted", "carl", arrangement_kind="instalments", instalments=3),
         ev("11-10 00:00", "arrangement_broken", arrangement_kind="instalments", due_date="2026-11-05", unpaid="200"),
         ev("11-11 09:00", "letter_sent", "sent", template="legal_letter"),
         ev("11-12 09:00", "letter_deferred", "deferred", reason=VALIDATION, treatment="legal_letter:1",
            until="2026-11-20T00:00:00+00:00")),
    # C05 enters 11-05 at DPD 5 (first day past due 10-31): a payment of 60 comes back on 11-12, so nothing
    # is collected; DPD 31 (31-60) on 12-01: forward. A text is deferred to the borrower's hours, then sent.
    case("C05", "2026-10-31",
         opened("11-05 09:00", stage="reminder", dpd=5, past_due="100.00", outstanding="900.00", grade="A"),
         ev("11-06 09:00", "sms_sent", "sent", template="reminder_1"),
         ev("11-07 09:00", "payment_received", "accepted", "core", amount="60.00", reference="C05-1",
            amount_past_due="40.00"),
         ev("11-12 09:00", "payment_reversed", "accepted", "core", reference="C05-1", amount="60.00",
            amount_past_due="100.00", outstanding="900.00"),
         ev("11-13 06:00", "sms_deferred", "deferred", reason=CONTACT_HOURS, treatment="reminder_2",
            until="2026-11-13T13:00:00+00:00"),
         ev("11-13 13:00", "sms_sent", "sent", template="reminder_2")),
    # C06: a loan cured on 11-08 (7.00 days after it entered, DPD 7), whose payment of 150 comes back on
    # 11-18: the next episode reopens at DPD 24 (first day past due 10-25), DPD 37 (31-60) on 12-01. The
    # reversal undoes the first episode's collection: each episode collected 0 in the end.
    case("L06", "2026-10-25",
         opened("11-01 10:00", stage="reminder", dpd=7, past_due="150.00", outstanding="1500.00", grade="B"),
         ev("11-08 10:00", "payment_received", "accepted", "core", amount="150.00", reference="C06-1",
            amount_past_due="0.00"),
         ev("11-08 10:00", "case_closed", outcome="cured", amount_past_due="0.00", outstanding="1350.00")),
    case("L06", "2026-10-25.2",
         opened("11-18 10:00", stage="reminder", dpd=24, past_due="150.00", outstanding="1500.00", grade="B"),
         ev("11-18 10:00", "case_reopened", reason="a payment that cured the case was reversed",
            from_episode="2026-10-25", reference="C06-1"),
         ev("11-18 10:00", "payment_reversed", "accepted", "core", reference="C06-1", amount="150.00",
            amount_past_due="150.00", outstanding="1500.00")),
    # C07 entered 10-20 at DPD 70 (first day past due 08-11): DPD 82 (61-90) on 11-01. dan visits twice
    # (not home, then met); the servicer then says 30 DPD as of 11-09 (first day past due 10-10), so DPD 52
    # (31-60) on 12-01: it rolls back.
    case("C07", "2026-08-11",
         opened("10-20 09:00", stage="field_visit", dpd=70, past_due="1000.00", outstanding="8000.00", grade="E"),
         ev("10-21 09:00", "assign", "accepted", "sup", agent="dan"),
         ev("11-02 09:00", "field_visit_started", visit_id="v1"),
         ev("11-03 15:00", "field_visit_report", "accepted", "dan", outcome="not_home", agents=["dan", "eve"],
            visit_id="v1"),
         ev("11-08 15:00", "field_visit_report", "accepted", "dan", outcome="met", agents=["dan", "eve"],
            visit_id="v1"),
         ev("11-08 15:00", "field_visit_completed", outcome="met", visit_id="v1", attempts=2),
         ev("11-09 06:00", "loan_update", "accepted", "sync", as_of="2026-11-09", amount_past_due="400.00",
            outstanding="7000.00", days_past_due=30, current=False, previous_amount_past_due="1000.00",
            previous_days_past_due=90, days_past_due_now=30)),
    # C08 entered 09-01 at DPD 150 (first day past due 04-04): DPD 211 (181+) on 11-01; written off 11-25.
    # carl's plan of September broke in October: not November's.
    case("C08", "2026-04-04",
         opened("09-01 09:00", stage="litigation", dpd=150, past_due="2000.00", outstanding="10000.00", grade="E"),
         ev("09-05 09:00", "propose_arrangement", "accepted", "carl", arrangement_kind="extension", instalments=1),
         ev("10-01 00:00", "arrangement_broken", arrangement_kind="extension", due_date="2026-09-30", unpaid="2000"),
         ev("11-25 09:00", "close", "accepted", "sup", outcome="written_off"),
         ev("11-25 09:00", "case_closed", outcome="written_off", amount_past_due="2000.00",
            outstanding="10000.00")),
    # C09 cured in October, keeping gus's promise: nothing of it is November's.
    case("C09", "2026-09-01",
         opened("09-10 09:00", stage="reminder", dpd=9, past_due="90.00", outstanding="900.00", grade="A"),
         ev("09-20 09:00", "promise_to_pay", "accepted", "gus", amount="90.00", due_date="2026-10-05"),
         ev("10-05 09:00", "promise_kept", amount="90.00", paid="90.00"),
         ev("10-05 09:00", "payment_received", "accepted", "core", amount="90.00", reference="C09-1",
            amount_past_due="0.00"),
         ev("10-05 09:00", "case_closed", outcome="cured")),
    # C10, the challenger's: enters 11-20 at DPD 3, stays in 1-30 (DPD 14 on 12-01). The borrower ceases
    # texts, so the next one is blocked; frank's promise is refused (it costs, it counts nowhere else).
    case("C10", "2026-11-17",
         opened("11-20 09:00", stage="reminder", dpd=3, past_due="50.00", outstanding="500.00", grade="A",
                strategy="early_contact", experiment="x1", arm="challenger", segment="small"),
         ev("11-21 09:00", "cease_contact", "accepted", "comp", channels=["sms"]),
         ev("11-22 09:00", "sms_blocked", "blocked", reason=CEASED, treatment="reminder_2"),
         ev("11-23 09:00", "promise_to_pay", "rejected", "frank", reason="amount: is below 50% of the past-due amount"),
         ev("11-24 09:00", "email_sent", "sent", template="reminder_email")),
    # C11 entered 10-25 at DPD 15 (first day past due 10-10): DPD 22 (1-30) on 11-01. gus's promise of
    # 10-28 is judged broken on 11-05, then kept after all by a payment valued in time and posted on 11-06:
    # the payment counts for gus (not ann, the assigned agent), the promise as kept in November.
    case("C11", "2026-10-10",
         opened("10-25 09:00", stage="reminder", dpd=15, past_due="120.00", outstanding="1200.00", grade="B"),
         ev("10-26 09:00", "assign", "accepted", "sup", agent="ann"),
         ev("10-28 09:00", "promise_to_pay", "accepted", "gus", amount="120.00", due_date="2026-11-03"),
         ev("11-05 00:00", "promise_broken", amount="120.00", paid="0", due_date="2026-11-03", broken_total=1),
         ev("11-06 09:00", "payment_received", "accepted", "core", amount="120.00", reference="C11-1",
            amount_past_due="0.00", paid_at="2026-11-03T12:00:00+00:00"),
         ev("11-06 09:00", "promise_kept", amount="120.00", paid="120.00"),
         ev("11-06 09:00", "case_closed", outcome="cured", amount_past_due="0.00")),
    # C12, in CNY: enters 11-10 at DPD 35 (31-60), DPD 56 (31-60) on 12-01; 1000 of 3000 paid.
    case("C12", "2026-10-06",
         opened("11-10 09:00", stage="contact", dpd=35, past_due="3000.00", outstanding="20000.00", grade="C",
                currency="CNY", jurisdiction="CN"),
         ev("11-11 09:00", "sms_sent", "sent", template="contact_sms"),
         ev("11-12 09:00", "payment_received", "accepted", "core", amount="1000.00", reference="C12-1",
            amount_past_due="2000.00")),
]


def events(ledger: Iterable[list[Event]] = LEDGER) -> list[Event]:
    """All of the ledger's events, in an order no case wrote them in (compute sorts them itself)."""
    return [e for case_events in ledger for e in case_events][::-1]


def only_row(report: Report) -> Any:
    assert len(report.rows) == 1
    return report.rows[0]


def row_of(report: Report, **key: str) -> Any:
    found = [row for row in report.rows if row.key == key]
    assert len(found) == 1, f"no row {key} in {[row.key for row in report.rows]}"
    return found[0]


def ratio(numerator: Any, denominator: Any) -> Ratio:
    return Ratio(D(numerator), D(denominator))


# Every metric's right answer for the whole portfolio in November. The cases worked in November are the
# twelve open on 11-01 or entering during it: all but C09. The cohort is the seven that entered: C01, C03,
# C05, C06 (both episodes), C10, C12.
PORTFOLIO: dict[str, Any] = {
    "cases_entered": 7,
    # Open on 12-01: C02, C04, C05, C06's second episode, C07, C10, C12.
    "cases_open": 7,
    # From the bucket on 11-01 (or at entry) to the one on 12-01, of the 12 worked: forward C02 (31-60 ->
    # 61-90), C04 (91-120 -> 121-180), C05 and C06.2 (1-30 -> 31-60); back C07 (61-90 -> 31-60); cured C01,
    # C03, C06.1, C11. C08 went to written_off, C10 and C12 stayed.
    "roll_forward": ratio(4, 12),
    "roll_back": ratio(1, 12),
    "roll_cured": ratio(4, 12),
    # Of the cohort of 7, cured by 12-01: C01, C03, C06.1 (C11 cured but entered in October).
    "cure_rate": ratio(3, 7),
    # (7.04 + 17.00 + 7.00) / 3 = 10.3466... -> 10.35; the middle one is 7.04.
    "time_to_cure_days": D("10.35"),
    "time_to_cure_median_days": D("7.04"),
    # Cases worked with an accepted promise made in November: C01, C02 (C10's was refused, C11's made in October).
    "promise_rate": ratio(2, 12),
    # Judged in November: C01 kept, C02 broken, C11 kept after all.
    "promise_kept_rate": ratio(2, 3),
    "amount_kept": {"USD": D("320.00")},  # 200 (C01) + 120 (C11)
    # Call and visit outcomes: C01 reached; C02 no_answer, reached; C07 not_home, met.
    "right_party_contact_rate": ratio(3, 5),
    # The cohort's contacts by 12-01 over its 3 cures: texts C01 1, C05 2, C12 1 (C10's was blocked);
    # e-mails C10 1; calls C01 1; no letter, no visit.
    "contacts_per_cure_sms": ratio(4, 3),
    "contacts_per_cure_email": ratio(1, 3),
    "contacts_per_cure_letter": ratio(0, 3),
    "contacts_per_cure_call": ratio(1, 3),
    "contacts_per_cure_visit": ratio(0, 3),
    "arrangements_agreed": 1,   # C03's (C04's was agreed in October)
    "arrangements_kept": 1,     # C03's
    "arrangements_broken": 1,   # C04's
    # 200 (C01) + 250 + 250 (C03) + 60 - 60 (C05) + 150 - 150 (C06) + 120 (C11); C12's 1000 CNY.
    "amount_collected": {"CNY": D("1000.00"), "USD": D("820.00")},
    # The USD cohort: collected C01 200, C03 500, C05 0, C06.1 150 - 150, C06.2 0, C10 0 = 700, of past due
    # 200 + 500 + 100 + 150 + 150 + 50 = 1150 and outstanding 2000 + 5000 + 900 + 1500 + 1500 + 500 = 11400.
    "recovery_rate": {"CNY": ratio("1000.00", "3000.00"), "USD": ratio("700.00", "1150.00")},
    "liquidation_rate": {"CNY": ratio("1000.00", "20000.00"), "USD": ratio("700.00", "11400.00")},
    # USD: 6 cases entering x 10 actions x 0.01 = 0.60; 22 commands in November x 0.01 = 0.22 (C01 assign,
    # call, promise, payment 4; C02 two calls, promise 3; C03 assign, plan, two payments 4; C05 payment,
    # reversal 2; C06 payment 1, reversal 1; C07 two reports, loan_update 3; C08 close 1; C10 cease, refused
    # promise 2; C11 payment 1); texts 3 x 0.10 = 0.30 (C01 1, C05 2); e-mail 0.05 (C10); letter 2.00 (C04);
    # calls 3 x 1.00 (C01 1, C02 2); visits 2 x 20.00 (C07). 0.60 + 0.22 + 0.30 + 0.05 + 2.00 + 3.00 + 40.00.
    # CNY: C12 entering 10 x 0.1 = 1.0, its payment 0.1, its text 1.
    "cost": {"CNY": D("2.10"), "USD": D("46.17")},
    # Over the cases worked: 11 in USD, 1 in CNY.
    "cost_per_case": {"CNY": ratio("2.10", 1), "USD": ratio("46.17", 11)},
    "cost_per_unit_recovered": {"CNY": ratio("2.10", "1000.00"), "USD": ratio("46.17", "820.00")},
    "compliance_deferred": {CONTACT_HOURS: 1, "validation period until …: no legal notice or enforcement may "
                            "overshadow the borrower's right to dispute (12 CFR 1006.38)": 1},
    "compliance_blocked": {CEASED: 1},
}


def test_every_metric_of_the_portfolio_is_as_worked_out_by_hand():
    assert set(PORTFOLIO) == set(METRIC_NAMES), "every metric has its hand-worked answer"
    row = only_row(compute(events(), NOV, DEC, costs=PRICES))
    assert row.key == {}
    for name in METRIC_NAMES:
        assert row.values[name] == PORTFOLIO[name], name


def test_rates_say_what_they_are_made_of_and_none_without_a_denominator():
    row = only_row(compute(events(), NOV, DEC, costs=PRICES))
    assert row.values["cure_rate"].value == D(3) / D(7)
    assert row.values["recovery_rate"]["USD"].value == D(700) / D(1150)
    assert ratio(0, 0).value is None


def test_the_roll_rate_matrix_counts_each_case_from_its_bucket_to_where_it_ended():
    report = compute(events(), NOV, DEC, costs=PRICES)
    assert report.roll_matrix == {(): {
        "1-30": {"cured": 3, "31-60": 2, "1-30": 1},      # C01, C06.1, C11 | C05, C06.2 | C10
        "31-60": {"61-90": 1, "cured": 1, "31-60": 1},    # C02 | C03 | C12
        "61-90": {"31-60": 1},                            # C07, after the servicer's figures
        "91-120": {"121-180": 1},                         # C04
        "181+": {"written_off": 1},                       # C08
    }}


def test_samples_are_each_cohort_case_own_ratio():
    row = only_row(compute(events(), NOV, DEC, costs=PRICES))
    # recovery: C01 200/200, C03 500/500, C05 0, C06.1 0 (reversed), C06.2 0, C10 0, C12 1000/3000.
    assert sorted(row.samples["recovery_rate"]) == sorted([D(1), D(1), D(0), D(0), D(0), D(0), D(1000) / D(3000)])
    # liquidation: 200/2000, 500/5000, 0, 0, 0, 0, 1000/20000.
    assert sorted(row.samples["liquidation_rate"]) == sorted([D("0.1"), D("0.1"), D(0), D(0), D(0), D(0),
                                                               D("0.05")])
    assert sorted(row.samples["time_to_cure_days"]) == [D("7.00"), D("7.04"), D("17.00")]


def test_by_agent_events_count_for_who_sent_them_and_payments_for_whose_promise_or_plan_they_met():
    report = compute(events(), NOV, DEC, by=("agent",), costs=PRICES, teams=TEAMS)
    ann, bob, dan, gus = (row_of(report, agent=name) for name in ("ann", "bob", "dan", "gus"))
    # ann: C01's payment met her promise; C03's two instalments her plan. C11's payment was for gus's promise.
    assert ann.values["amount_collected"] == {"USD": D("700.00")}
    assert gus.values["amount_collected"] == {"USD": D("120.00")}
    assert gus.values["promise_kept_rate"] == ratio(1, 1)       # made in October, judged in November
    assert bob.values["promise_kept_rate"] == ratio(0, 1)
    assert bob.values["right_party_contact_rate"] == ratio(1, 2)
    assert dan.values["right_party_contact_rate"] == ratio(1, 2)
    assert ann.values["arrangements_agreed"] == 1 and ann.values["arrangements_kept"] == 1
    assert row_of(report, agent="carl").values["arrangements_broken"] == 1
    # The cohort under the last agent assigned: C01 hal, C03 ann; C05, C06 (both), C10, C12 nobody's.
    assert [(row.key["agent"], row.values["cases_entered"]) for row in report.rows if row.values["cases_entered"]] == [
        ("ann", 1), ("hal", 1), ("(none)", 5)]
    # Open on 12-01 under the agent assigned then: C02 bob, C04 carl, C07 dan; C05, C06.2, C10, C12 nobody's.
    assert [(row.key["agent"], row.values["cases_open"]) for row in report.rows if row.values["cases_open"]] == [
        ("bob", 1), ("carl", 1), ("dan", 1), ("(none)", 4)]
    # Cost: frank's refused promise is his (0.01); C07's loan_update is dan's, as the assigned agent (0.01),
    # with his two reports (0.02) and visits (40.00).
    assert row_of(report, agent="frank").values["cost"] == {"USD": D("0.01")}
    assert dan.values["cost"] == {"USD": D("40.03")}
    # C05 and C06 were nobody's: their payments and reversals net to zero there.
    assert row_of(report, agent="(none)").values["amount_collected"] == {"CNY": D("1000.00"), "USD": D("0.00")}


def test_by_team_adds_up_the_team_agents_and_leaves_agents_without_one_under_none():
    report = compute(events(), NOV, DEC, by=("team",), costs=PRICES, teams=TEAMS)
    north, field, none = (row_of(report, team=name) for name in ("north", "field", "(none)"))
    assert north.values["amount_collected"] == {"USD": D("700.00")}        # ann's; bob collected nothing
    assert north.values["right_party_contact_rate"] == ratio(2, 3)        # ann 1 of 1, bob 1 of 2
    assert field.values["right_party_contact_rate"] == ratio(1, 2)
    assert none.values["amount_collected"] == {"CNY": D("1000.00"), "USD": D("120.00")}  # gus has no team
    assert [row.values["cases_open"] for row in (north, field, none)] == [1, 1, 5]


def test_agent_performance_is_what_each_agent_did_in_the_window():
    rows = agent_performance(events(), NOV, DEC, teams=TEAMS)
    assert rows == [
        # ann: one call reported (1 dial, reached), one promise taken and kept (200); collected C01's 200 and
        # C03's 500.
        AgentRow("ann", "north", worked_items=1, contacts=1, right_party_contacts=1, promises=1, promises_kept=1,
                 amount_kept={"USD": D("200.00")}, amount_collected={"USD": D("700.00")}),
        # bob: two calls reported, 3 + 1 dials, one reached; a promise taken, broken.
        AgentRow("bob", "north", worked_items=2, contacts=4, right_party_contacts=1, promises=1, promises_kept=0,
                 amount_kept={}, amount_collected={}),
        # dan: two visits reported, one met.
        AgentRow("dan", "field", worked_items=2, contacts=2, right_party_contacts=1, promises=0, promises_kept=0,
                 amount_kept={}, amount_collected={}),
        # gus: his October promise kept in November, and the payment that kept it.
        AgentRow("gus", None, worked_items=0, contacts=0, right_party_contacts=0, promises=0, promises_kept=1,
                 amount_kept={"USD": D("120.00")}, amount_collected={"USD": D("120.00")}),
    ]  # carl (a plan broke), frank (a refused promise), sup and core did no agent's work that counts


def test_by_strategy_and_arm_the_challenger_case_is_its_own_row():
    report = compute(events(), NOV, DEC, by=("strategy", "arm", "experiment", "segment"), costs=PRICES)
    assert [row.key for row in report.rows] == [
        {"strategy": "default", "arm": "(none)", "experiment": "(none)", "segment": "(none)"},
        {"strategy": "early_contact", "arm": "challenger", "experiment": "x1", "segment": "small"}]
    default, challenger = report.rows
    assert (default.values["cases_entered"], challenger.values["cases_entered"]) == (6, 1)
    assert challenger.values["cure_rate"] == ratio(0, 1)
    assert default.values["cure_rate"] == ratio(3, 6)
    # C10: entering 0.10, cease and the refused promise 0.02, its e-mail 0.05.
    assert challenger.values["cost"] == {"USD": D("0.17")}
    assert challenger.values["recovery_rate"] == {"USD": ratio(0, "50.00")}


def test_by_currency_jurisdiction_and_product():
    report = compute(events(), NOV, DEC, by=("currency", "jurisdiction", "product"), costs=PRICES)
    assert [row.key for row in report.rows] == [{"currency": "CNY", "jurisdiction": "CN", "product": "card"},
                                                {"currency": "USD", "jurisdiction": "US", "product": "card"}]
    assert [row.values["cases_entered"] for row in report.rows] == [1, 6]


def test_by_stage_cohort_counts_the_entry_stage_flows_the_stage_then_and_stock_the_stage_at_period_end():
    report = compute(events(), NOV, DEC, by=("stage",), costs=PRICES)
    assert [row.key["stage"] for row in report.rows] == ["reminder", "contact", "field_visit", "legal_letter",
                                                        "litigation"]
    reminder, contact = row_of(report, stage="reminder"), row_of(report, stage="contact")
    # Entered in reminder: C01, C05, C06 twice, C10; in contact: C03, C12.
    assert (reminder.values["cases_entered"], contact.values["cases_entered"]) == (5, 2)
    # C02 broke its promise in reminder (made there) and was in contact on 12-01.
    assert reminder.values["promise_kept_rate"] == ratio(2, 3)
    assert contact.values["cases_open"] == 2   # C02, C12
    # Worked in reminder on 11-01 or at entry: C01, C02, C05, C06.1, C06.2, C10, C11; C02 rolled forward.
    assert reminder.values["roll_forward"] == ratio(3, 7)   # C02, C05, C06.2


def test_by_grade_a_grade_changed_by_the_scorecard_counts_from_then_on():
    refreshed = [case("G1", "2026-10-30",
                      opened("11-02 09:00", stage="reminder", dpd=3, past_due="10.00", outstanding="100.00",
                             grade="B"),
                      ev("11-03 09:00", "sms_sent", "sent"),
                      ev("11-10 09:00", "risk_grade_changed", **{"from": "B", "to": "D", "score": 410}),
                      ev("11-11 09:00", "sms_sent", "sent"))]
    report = compute(events(refreshed), NOV, DEC, by=("grade",), costs=PRICES)
    b, d = row_of(report, grade="B"), row_of(report, grade="D")
    assert (b.values["cases_entered"], d.values["cases_entered"]) == (1, 0)   # the cohort: the grade at entry
    assert (b.values["cases_open"], d.values["cases_open"]) == (0, 1)         # the stock: the grade at 12-01
    # Flow: entering 0.10 and a text 0.10 while B, a text 0.10 once D.
    assert (b.values["cost"], d.values["cost"]) == ({"USD": D("0.20")}, {"USD": D("0.10")})


def test_by_week_cases_enter_in_their_iso_week_cut_at_the_window_ends():
    report = compute(events(), NOV, DEC, by=("period",), period="week", costs=PRICES)
    entered = {row.key["period"]: row.values["cases_entered"] for row in report.rows}
    # 11-01 is a Sunday (W44, a one-day cut); C01, C03, C05 in W45; C12 in W46; C06.2, C10 in W47.
    assert entered == {"2026-W44": 1, "2026-W45": 3, "2026-W46": 1, "2026-W47": 2, "2026-W48": 0, "2026-W49": 0}
    # Open at each week's end: W48 ends 11-30 00:00, after C08 was written off; W49 ends with the window.
    assert row_of(report, period="2026-W49").values["cases_open"] == 7
    assert row_of(report, period="2026-W48").values["cases_open"] == 7
    # Collected per week: W45 (11-02..08) C05 60, C06.1 150, C11 120 = 330; W46 (11-09..15) C01 200, C03 250,
    # C05 -60 = 390; W47 (11-16..22) C03 250, C06 -150 = 100.
    collected = {row.key["period"]: row.values["amount_collected"].get("USD") for row in report.rows}
    assert collected == {"2026-W44": None, "2026-W45": D("330.00"), "2026-W46": D("390.00"),
                         "2026-W47": D("100.00"), "2026-W48": None, "2026-W49": None}


def test_by_month_each_month_rolls_from_its_own_start():
    two_months = compute(events(), NOV, date(2027, 1, 1), by=("period",), period="month", costs=PRICES)
    november, december = two_months.rows
    assert (november.key, december.key) == ({"period": "2026-11"}, {"period": "2026-12"})
    assert november.values["roll_forward"] == ratio(4, 12)
    # December starts with the 7 open on 12-01. By 01-01: C02 61-90 -> 91-120 (DPD 98; its 12-03 payment
    # left 200 past due), C04 121-180 -> 121-180 (DPD 157), C05 31-60 -> 61-90 (62), C06.2 31-60 -> 61-90
    # (68), C07 31-60 -> 61-90 (83), C10 1-30 -> 31-60 (45), C12 31-60 -> 61-90 (87).
    assert december.values["roll_forward"] == ratio(6, 7)
    assert two_months.roll_matrix[("2026-12",)] == {"61-90": {"91-120": 1}, "121-180": {"121-180": 1},
                                                   "31-60": {"61-90": 4}, "1-30": {"31-60": 1}}
    assert december.values["amount_collected"] == {"USD": D("100.00")}     # C02's of 12-03
    assert december.values["cases_entered"] == 0


def test_without_period_in_the_breakdown_the_whole_window_is_one_period():
    whole = only_row(compute(events(), NOV, date(2027, 1, 1), costs=PRICES))
    # From 11-01 (or entry) to 01-01: C02, C04, C05, C06.2 as in November, and now C10 (1-30 -> 31-60) and
    # C12 (31-60 -> 61-90); C07 ends in 61-90 as it began (DPD 83).
    assert whole.values["roll_forward"] == ratio(6, 12)
    assert whole.values["roll_back"] == ratio(0, 12)
    assert whole.values["amount_collected"] == {"CNY": D("1000.00"), "USD": D("920.00")}


def test_by_day_the_roll_population_is_what_was_open_that_day():
    report = compute(events(), date(2026, 11, 9), date(2026, 11, 10), by=("period",), period="day", costs=PRICES)
    row = only_row(report)
    # Open at 11-09 00:00: C01, C02, C03, C04, C05, C07, C08 (C06.1 and C11 cured before; none entered that day).
    assert row.values["roll_cured"] == ratio(1, 7)   # C01, at 10:00
    assert row.values["cases_open"] == 6


def test_an_agent_command_without_the_desk_stamp_counts_for_the_agent_its_payload_names():
    unstamped = [case("U1", "2026-10-30",
                      opened("11-02 09:00", stage="contact", dpd=3, past_due="10.00", outstanding="100.00", grade="B"),
                      ev("11-03 09:00", "call_outcome", "accepted", None, outcome="reached", agent="hal"),
                      ev("11-04 09:00", "field_visit_report", "accepted", None, outcome="paid", agents=["ida", "hal"]))]
    rows = agent_performance(events(unstamped), NOV, DEC)
    assert [(r.agent, r.worked_items, r.right_party_contacts) for r in rows] == [("hal", 1, 1), ("ida", 1, 1)]


def test_events_that_cannot_be_read_add_nothing_and_never_stop_the_report():
    broken = [
        case("X1", "2026-10-30",
             opened("11-02 09:00", stage="reminder", dpd="many", past_due="lots", outstanding=None, grade="B"),
             ev("11-03 09:00", "payment_received", "accepted", "core", amount=12.5, reference="X1-1"),
             ev("11-04 09:00", "payment_received", "accepted", "core", amount="1e999999", reference="X1-2"),
             ev("11-05 09:00", "loan_update", "accepted", "sync", as_of="yesterday", days_past_due=10 ** 9),
             ev("11-06 09:00", "promise_kept"),
             ev("11-07 09:00", "arrangement_broken"),
             ev("11-08 09:00", "call_outcome", "accepted", "ann", outcome=["reached"]),  # no outcome a desk sends
             ev("11-08 10:00", "field_visit_report", "accepted", "fay", outcome={"met": True})),
        [Event("X2", "", 0, at("11-02 09:00"), "case_opened", "info", None, None,
               "not an object"),  # type: ignore[arg-type]
         Event("X2", "", 1, at("11-03 09:00"), "sms_sent", "sent", None, None, {})],
        case("X3", "", ev("11-02 09:00", "sms_sent", "sent")),   # a case the trail never opened
    ]
    row = only_row(compute(events(broken), NOV, DEC, costs=PRICES))
    assert row.values["cases_entered"] == 1          # X1 (X2's opening could not be read, X3 has none)
    assert row.values["amount_collected"] == {}       # neither a float nor a number no ledger holds is an amount
    assert row.values["roll_forward"] == ratio(0, 0)  # no DPD was ever readable
    assert row.values["recovery_rate"] == {}
    assert row.values["promise_kept_rate"] == ratio(0, 0)
    assert row.values["right_party_contact_rate"] == ratio(0, 2)  # reported, but never a right party


def test_naive_times_are_read_as_utc():
    naive = [Event(e.loan_id, e.episode, e.seq, e.at.replace(tzinfo=None), e.kind, e.status, e.reason, e.actor,
                   e.detail) for e in LEDGER[0]]
    assert only_row(compute(naive, NOV, DEC, costs=PRICES)).values["cure_rate"] == ratio(1, 1)


def test_times_in_another_zone_count_in_utc_days():
    hawaii = timezone(timedelta(hours=-10))
    # Opened 11-01 05:00 UTC at DPD 1 (first day past due 10-31, UTC), written as 10-31 19:00 in Hawaii.
    # On 11-30 00:00 UTC its DPD is 30: still 1-30. Read as a Hawaiian date it would be 31 (31-60).
    written = [Event(e.loan_id, e.episode, e.seq, e.at.astimezone(hawaii), e.kind, e.status, e.reason, e.actor,
                     e.detail)
               for e in case("H1", "2026-10-31", opened("11-01 05:00", stage="reminder", dpd=1, past_due="10.00",
                                                        outstanding="100.00", grade="A"))]
    report = compute(written, NOV, date(2026, 11, 30))
    assert report.roll_matrix == {(): {"1-30": {"1-30": 1}}}
    assert only_row(report).values["cases_entered"] == 1


def test_without_costs_there_are_no_cost_figures():
    row = only_row(compute(events(), NOV, DEC))
    assert (row.values["cost"], row.values["cost_per_case"], row.values["cost_per_unit_recovered"]) == ({}, {}, {})


def test_a_currency_the_cost_file_does_not_price_gets_no_cost():
    usd_only = parse_costs({"actions_per_case": 10, "actions_per_command": 1,
                            "currencies": {"USD": {"action": "0.01", "sms": "0.10", "email": "0.05",
                                                   "letter": "2.00", "call": "1.00", "visit": "20.00"}}})
    row = only_row(compute(events(), NOV, DEC, costs=usd_only))
    assert row.values["cost"] == {"USD": D("46.17")}
    assert set(row.values["cost_per_case"]) == {"USD"}


def test_events_after_the_window_change_nothing():
    later = [*LEDGER, case("Z1", "2026-11-28",
                           opened("12-02 09:00", stage="reminder", dpd=4, past_due="10.00", outstanding="100.00",
                                  grade="A"))]
    assert compute(events(later), NOV, DEC, costs=PRICES).rows == compute(events(), NOV, DEC, costs=PRICES).rows


def test_the_report_says_its_window_and_breakdown_and_whether_it_was_simulated():
    report = compute(events(), NOV, DEC, by=("strategy",), period="week", simulated=True)
    assert (report.start, report.end, report.by, report.period, report.simulated) == (
        NOV, DEC, ("strategy",), "week", True)
    assert compute(events(), NOV, DEC).simulated is False


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"by": ("region",)}, "by: 'region' is not one of"),
    ({"by": ("agent", "agent")}, "by: names a dimension twice"),
    ({"period": "quarter"}, "period: 'quarter' is not one of day, week, month"),
])
def test_a_breakdown_or_period_it_does_not_know_is_refused_by_name(kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        compute(events(), NOV, DEC, **kwargs)


def test_an_empty_window_is_refused():
    with pytest.raises(ValueError, match="to: 2026-11-01 is not after from"):
        compute(events(), NOV, NOV)


def test_period_names():
    day = date(2026, 11, 30)
    assert (period_key(day, "day"), period_key(day, "week"), period_key(day, "month")) == (
        "2026-11-30", "2026-W49", "2026-11")
    assert period_key(date(2027, 1, 1), "week") == "2026-W53"   # ISO: the week of the year's first Thursday


def test_dpd_buckets_start_at_one_and_current_is_nothing_past_due():
    assert [bucket_of(dpd) for dpd in (-3, 0, 1, 30, 31, 60, 61, 90, 91, 120, 121, 180, 181, 10_000)] == [
        "current", "current", "1-30", "1-30", "31-60", "31-60", "61-90", "61-90", "91-120", "91-120", "121-180",
        "121-180", "181+", "181+"]
    assert DPD_BUCKETS[0] == ("1-30", 1, 30) and DPD_BUCKETS[-1] == ("181+", 181, None)


def test_every_metric_has_a_formula_a_label_and_a_known_unit():
    assert len(set(METRIC_NAMES)) == len(METRICS)
    for metric in METRICS:
        assert metric.unit in UNITS, metric.name
        assert metric.label and len(metric.formula) > 20, metric.name


def test_docs_kpis_md_says_what_metrics_says():
    docs = Path(__file__).resolve().parents[1] / "docs" / "kpis.md"
    assert docs.read_text(encoding="utf-8") == metrics_markdown(), (
        "docs/kpis.md is generated: .venv/bin/python -c 'from reports.kpis import metrics_markdown; "
        "print(metrics_markdown(), end=\"\")' > docs/kpis.md")
    for metric in METRICS:
        assert f"`{metric.name}`" in docs.read_text(encoding="utf-8")


def test_the_default_costs_load_and_price_the_currencies_the_engine_is_used_in():
    costs = load_costs()
    assert costs.actions_per_case == 48          # bench/cost.py, the default ladder over 180 days
    assert {"USD", "EUR", "GBP", "CNY"} <= set(costs.currencies)
    assert all(price.action > 0 and price.visit > price.call > price.sms for price in costs.currencies.values())


def test_costs_named_by_the_environment_are_read(tmp_path, monkeypatch):
    mine = tmp_path / "costs.toml"
    mine.write_text('actions_per_case = 5\nactions_per_command = 0\n[currencies.JPY]\naction = "0.007"\n'
                    'sms = "8"\nemail = "0.1"\nletter = "200"\ncall = "150"\nvisit = "6000"\n', encoding="utf-8")
    monkeypatch.setenv("ARREARS_COSTS", str(mine))
    costs = load_costs()
    assert (costs.actions_per_case, list(costs.currencies), costs.currencies["JPY"].visit) == (5, ["JPY"], D(6000))


@pytest.mark.parametrize(("data", "message"), [
    ({"actions_per_case": -1, "actions_per_command": 1}, "actions_per_case must be a whole number"),
    ({"actions_per_case": 1, "actions_per_command": 1,
      "currencies": {"USD": {"action": "1", "sms": 0.1, "email": "1", "letter": "1", "call": "1", "visit": "1"}}},
     "currencies.USD.sms: write the amount as a decimal string"),
    ({"actions_per_case": 1, "actions_per_command": 1, "currencies": {"USD": {"sms": "0.1"}}},
     "currencies.USD.action: missing"),
    ({"actions_per_case": 1, "actions_per_command": 1, "currencies": {"USD": {"fax": "1"}}}, "unknown unit 'fax'"),
    ({"actions_per_case": 1, "actions_per_command": 1,
      "currencies": {"USD": {"action": "x", "sms": "1", "email": "1", "letter": "1", "call": "1", "visit": "1"}}},
     "currencies.USD.action: 'x' is not an amount"),
])
def test_a_cost_file_that_does_not_fit_is_refused_naming_the_key(data, message):
    with pytest.raises(CostsError, match=re.escape(message)):
        parse_costs(data, "costs.toml")
