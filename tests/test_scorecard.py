"""The risk scorecard: points and grades by hand, cards that name their bad key, intake grading a
blank grade, the case re-scoring itself, and a card fitted from a ledger with a known signal."""

from __future__ import annotations

import asyncio
import copy
import tomllib
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from domain.case import open_case
from domain.commands import handle
from domain.errors import Rejected
from domain.loan import Loan
from domain.scorecard import Features, parse_scorecard
from infra.scorecards import ScorecardError, configured_scorecard, load_scorecard, to_toml
from lab.scorecard import NotEnoughHistory, fit, main, training_rows
from lab.synthetic_outcomes import synthetic_events, write_synthetic_ledger
from tests.conftest import ROOT, make_loan, strategy
from tests.ledger_fixtures import BACKENDS, scratch_database
from workflows.inputs import new_case

CARD = {
    "base": 500,
    "days_past_due": [{"from": 0, "points": 40}, {"from": 31, "points": 20}, {"from": 91, "points": 0}],
    "amount": {"relative": [{"from": 0, "points": 20}, {"from": "0.25", "points": 10}, {"from": "0.5", "points": 0}],
               "bands": {"CNY": [{"from": 0, "points": 15}, {"from": 5000, "points": 0}]}},
    "product": {"levels": {"personal_loan": 10, "credit_card": 4}, "other": 0},
    "payments": [{"from": 0, "points": 0}, {"from": 1, "points": 30}],
    "promises_broken": [{"from": 0, "points": 30}, {"from": 1, "points": 10}, {"from": 2, "points": 5}],
    "contact_reached": {"yes": 20, "no": 0},
    "grades": {"A": 640, "B": 620, "C": 590, "D": 570},
}
NOW = datetime(2026, 3, 2, 10, tzinfo=UTC)


def _features(**overrides) -> Features:
    values = dict(days_past_due=5, currency="USD", amount_past_due=Decimal("450"), outstanding=Decimal("5000"),
                  product="personal_loan")
    values.update(overrides)
    return Features(**values)


def _row(**overrides) -> dict[str, str]:
    row = {"loan_id": "L-1", "borrower_name": "Ada Example", "phone": "+15555550123", "email": "ada@example.com",
           "address": "1 Test Street", "timezone": "America/New_York", "jurisdiction": "US", "currency": "USD",
           "outstanding_amount": "5000.00", "amount_past_due": "450.00", "days_past_due": "5",
           "product": "personal_loan", "risk_grade": ""}
    row.update(overrides)
    return row


# -- points and grades, by hand --------------------------------------------------------------------------
def test_a_score_is_the_base_plus_each_attributes_bin_worked_out_by_hand():
    card = parse_scorecard(CARD)
    scoring = card.explain(_features())
    # DPD 5 -> 0-30: 40; 450/5000 = 0.09 of the balance -> 20; personal loan 10; no payment 0;
    # no promise broken 30; not reached 0: 500 + 100 = 600, C (590 <= 600 < 620).
    assert [(p.attribute, p.bin, p.points) for p in scoring.points] == [
        ("base", "", 500), ("days_past_due", "0-30", 40), ("amount", "0 to under 0.25 of the balance", 20),
        ("product", "personal_loan", 10), ("payments", "0", 0), ("promises_broken", "0", 30),
        ("contact_reached", "no", 0)]
    assert (scoring.score, scoring.grade) == (600, "C")
    assert card.score(_features()) == 600
    assert scoring.why().endswith("= 600")
    # DPD 95 (0), 3000 of 5000 (0.6: 0), an unknown product (0), a payment (30), two broken (5), reached (20).
    worse = _features(days_past_due=95, amount_past_due=Decimal("3000"), product="boat_loan", payments=1,
                      promises_broken=2, contact_reached=True)
    assert card.score(worse) == 500 + 0 + 0 + 0 + 30 + 5 + 20
    assert [p.bin for p in card.explain(worse).points][1:] == ["91+", "0.5+ of the balance", "other", "1+", "2+", "yes"]


def test_a_currency_with_bands_is_scored_in_its_own_money():
    card = parse_scorecard(CARD)
    small, large = _features(currency="CNY", amount_past_due=Decimal("4999.99")), _features(
        currency="CNY", amount_past_due=Decimal("5000"), outstanding=Decimal("90000"))
    assert [p for p in card.explain(small).points if p.attribute == "amount"][0].points == 15
    assert [(p.bin, p.points) for p in card.explain(large).points if p.attribute == "amount"] == [("5000+ CNY", 0)]


@pytest.mark.parametrize(("score", "grade"), [(640, "A"), (639, "B"), (620, "B"), (619, "C"), (590, "C"),
                                              (589, "D"), (570, "D"), (569, "E"), (-100, "E")])
def test_each_grade_starts_at_its_cut_off(score, grade):
    assert parse_scorecard(CARD).grade(score) == grade


def test_the_shipped_card_loads_and_grades_a_typical_new_case_c():
    card = load_scorecard("scorecard", ROOT / "strategies")
    assert card.explain(Features.at_intake(make_loan())).grade == "C"
    assert card.grade(card.score(Features.at_intake(make_loan(days_past_due=95)))) == "E"


def test_a_card_written_as_toml_reads_back_the_same():
    card = parse_scorecard(CARD)
    assert parse_scorecard(tomllib.loads(to_toml(card, "a header\nof two lines"))) == card


# -- a bad card names the key ------------------------------------------------------------------------------
def _broken(path: str, value) -> dict:
    data = copy.deepcopy(CARD)
    *parents, last = path.split(".")
    target = data
    for key in parents:
        target = target[key]
    if value is None:
        del target[last]
    else:
        target[last] = value
    return data


@pytest.mark.parametrize(("path", "value", "named", "why"), [
    ("days_past_due", [{"from": 0, "points": 1}, {"from": 0, "points": 2}], "days_past_due", "bins must rise"),
    ("payments", [{"from": 1, "points": 1}], "payments", "must start from 0"),
    ("grades", {"A": 640, "B": 620, "D": 570}, "grades", "name the least score of A, B, C, D"),
    ("grades", {"A": 640, "B": 650, "C": 590, "D": 570}, "grades", "B (650) must be below A (640)"),
    ("contact_reached", None, "contact_reached", "Field required"),
    ("contact_reachd", {"yes": 1, "no": 0}, "contact_reachd", "Extra inputs"),
    ("amount.bands", {"usd": [{"from": 0, "points": 1}]}, "amount.bands", "'usd' is not an ISO 4217"),
    ("amount.relative", [{"from": 0, "points": 1}, {"from": 2, "points": 0}], "amount.relative", "from 0 to 1"),
    ("base", "many", "base", "valid integer"),
    ("product.levels", {"Credit_Card": 3}, "product.levels", "lower case"),
])
def test_a_bad_card_is_refused_naming_the_key(path, value, named, why):
    with pytest.raises(ValueError) as refused:
        parse_scorecard(_broken(path, value))
    assert f"{named}:" in str(refused.value) and why in str(refused.value)


def test_a_bad_card_file_names_the_file_and_the_key(tmp_path: Path):
    path = tmp_path / "card.toml"
    path.write_text(to_toml(parse_scorecard(CARD)).replace("[grades]\nA = 640", "[grades]\nA = 600"))
    with pytest.raises(ScorecardError) as refused:
        load_scorecard(path)
    assert str(refused.value).startswith(f"{path}: grades: B (620) must be below A (600)")
    with pytest.raises(ScorecardError, match="no such scorecard"):
        load_scorecard(tmp_path / "missing.toml")


def test_intake_has_a_card_only_when_one_is_named(tmp_path: Path):
    assert configured_scorecard(ROOT / "strategies", env={}) is None
    assert configured_scorecard(ROOT / "strategies", env={"ARREARS_SCORECARD": "scorecard"}).name == "default"
    assert configured_scorecard(ROOT / "strategies", "scorecard", env={}).base == 505


# -- intake ------------------------------------------------------------------------------------------------
def test_a_blank_grade_is_missing_without_a_card_and_graded_by_one():
    with pytest.raises(Rejected) as refused:
        Loan.from_row(_row())
    assert (refused.value.field, refused.value.reason) == ("risk_grade", "is missing")
    card = parse_scorecard(CARD)
    loan = Loan.from_row(_row(), scorecard=card)
    assert (loan.risk_grade, loan.grade_source, loan.score) == ("C", "scorecard", 600)
    lender = Loan.from_row(_row(risk_grade="a"), scorecard=card)
    assert (lender.risk_grade, lender.grade_source, lender.score) == ("A", "lender", None)
    with pytest.raises(Rejected, match="'Q' is not one of"):
        Loan.from_row(_row(risk_grade="Q"), scorecard=card)


def test_intake_grades_the_rows_without_a_grade_with_the_named_card_and_rejects_them_without_one(tmp_path: Path):
    from starter import case_input, main, read_portfolio

    header = list(_row())
    lines = [",".join(header)] + [",".join(f'"{v}"' for v in _row(loan_id=f"SC-{n}", risk_grade=grade).values())
                                  for n, grade in ((1, ""), (2, "b"))]
    portfolio = tmp_path / "portfolio.csv"
    portfolio.write_text("\n".join(lines) + "\n", encoding="utf-8")
    loans, rejected = read_portfolio(portfolio)
    assert [loan.loan_id for _, loan in loans] == ["SC-2"] and rejected == [(2, "risk_grade: is missing")]
    card = load_scorecard("scorecard", ROOT / "strategies")
    loans, rejected = read_portfolio(portfolio, card)
    assert rejected == [] and [(loan.grade_source, loan.risk_grade) for _, loan in loans] == [
        ("scorecard", card.grade(card.score(Features.at_intake(loans[0][1])))), ("lender", "B")]
    graded = case_input(loans[0][1], strategy(), "2026-11-01", scorecard=card)
    assert graded.scorecard == card and case_input(loans[1][1], strategy(), "2026-11-01", scorecard=card).scorecard is None
    assert main(["--file", str(portfolio), "--strategy", "default", "--scorecard", "no-such-card"]) == 2


def test_the_card_rides_in_the_input_only_of_a_loan_it_graded():
    card = parse_scorecard(CARD)
    graded = Loan.from_row(_row(), scorecard=card)
    assert new_case(graded, strategy(), None, scorecard=card).scorecard == card
    assert new_case(make_loan(), strategy(), None, scorecard=card).scorecard is None


def test_case_opened_says_who_graded_the_loan():
    loan = Loan.from_row(_row(), scorecard=parse_scorecard(CARD))
    opened = open_case(loan, strategy(), NOW).events[0]
    assert (opened.kind, opened.detail["grade_source"], opened.detail["score"]) == ("case_opened", "scorecard", 600)


# -- the case re-scores itself --------------------------------------------------------------------------------
def test_a_case_regrades_on_payments_broken_promises_and_the_borrower_reached():
    card = parse_scorecard(CARD)
    loan = Loan.from_row(_row(), scorecard=card)
    case = open_case(loan, strategy(), NOW, features=["case-follows-loan"])
    assert not case.regrade(card, loan, NOW) and case.score == 600
    case.promises_broken = 1  # as tick breaks one
    assert case.regrade(card, loan, NOW) and (case.risk_grade, case.score) == ("D", 580)
    case.promises_broken = 2  # 575: still D
    assert not case.regrade(card, loan, NOW) and case.score == 575
    assert handle("payment_received", {"amount": "50.00", "reference": "P-1"}, case, strategy(), NOW)
    assert case.regrade(card, loan, NOW) and (case.risk_grade, case.score) == ("C", 605)
    assert handle("payment_reversed", {"reference": "P-1", "reason": "returned unpaid"}, case, strategy(), NOW)
    assert case.regrade(card, loan, NOW) and case.risk_grade == "D"  # a reversed payment does not count
    case.open_call_task("call-1", NOW)
    assert handle("call_outcome", {"outcome": "reached"}, case, strategy(), NOW)
    assert case.regrade(card, loan, NOW) and (case.risk_grade, case.score) == ("C", 595)
    changes = [(e.detail["from"], e.detail["to"], e.detail["score"]) for e in case.events
               if e.kind == "risk_grade_changed"]
    assert changes == [("C", "D", 580), ("D", "C", 605), ("C", "D", 575), ("D", "C", 595)]
    assert case.right_party_contact


# -- fitting -----------------------------------------------------------------------------------------------------
def _event(loan_id: str, seq: int, day: float, kind: str, status: str = "info", **detail) -> dict:
    return {"loan_id": loan_id, "episode": "2026-01-01", "seq": seq, "at": NOW + timedelta(days=day), "kind": kind,
            "status": status, "detail": detail}


def test_training_rows_read_entry_and_the_first_days_and_leave_out_what_closed_inside_them():
    opened = {"days_past_due": 40, "currency": "USD", "amount_past_due": "300.00", "outstanding": "1000.00",
              "product": "credit_card"}
    events = [
        _event("A", 0, 0, "case_opened", **opened),
        _event("A", 1, 2, "call_outcome", "accepted", outcome="no_answer"),
        _event("A", 2, 3, "payment_received", "accepted", amount="10"),
        _event("A", 3, 4, "payment_received", "accepted", amount="10"),
        _event("A", 4, 5, "payment_reversed", "accepted", reference="x"),
        _event("A", 5, 6, "promise_broken"),
        _event("A", 6, 12, "field_visit_report", "accepted", outcome="met"),  # after the 10-day window
        _event("A", 7, 40, "case_closed", outcome="cured"),
        _event("B", 0, 0, "case_opened", **opened),
        _event("B", 1, 1, "call_outcome", "accepted", outcome="reached"),
        _event("B", 2, 15, "case_closed", outcome="written_off"),
        _event("C", 0, 0, "case_opened", **opened),
        _event("C", 1, 5, "case_closed", outcome="cured"),  # inside the window
        _event("D", 0, 0, "case_opened", **opened),  # still open
    ]
    rows, skipped = training_rows(reversed(events), window_days=10)
    assert [(r.loan_id, r.cured, r.features.payments, r.features.promises_broken, r.features.contact_reached)
            for r in rows] == [("A", True, 1, 1, False), ("B", False, 0, 0, True)]
    assert rows[0].features.share_past_due == Decimal("0.3") and rows[0].features.product == "credit_card"
    assert skipped == {"still open": 1, "closed within the window": 1}


def test_a_card_fitted_on_a_known_signal_ranks_held_out_cases_better_than_chance():
    rows, _ = training_rows(synthetic_events(2500, seed=11))
    template = load_scorecard("scorecard", ROOT / "strategies")
    result = fit(rows, template, seed=5)
    assert result.auc > 0.6 and 0 < result.ks <= 1
    assert abs(result.held_out - 0.3 * result.rows) <= 1 and result.train + result.held_out == result.rows
    card = result.card
    # The signal's directions come back: reached beats not, paying beats not, breaking promises and age hurt.
    assert card.contact_reached.yes > card.contact_reached.no
    assert card.payments[-1].points > card.payments[0].points
    assert card.promises_broken[0].points > card.promises_broken[-1].points
    assert card.days_past_due[0].points > card.days_past_due[-1].points
    assert card.product.levels["personal_loan"] > card.product.levels["bnpl"]
    # Better grades cure more often on the held-out cases.
    rates = [cured / n for n, cured in result.by_grade.values() if n >= 20]
    assert rates == sorted(rates, reverse=True) and len(rates) >= 3
    assert card.fitted is not None and card.fitted.auc == round(result.auc, 4)
    assert fit(rows, template, seed=5).card == card  # seeded: the same card again


def test_too_little_history_is_refused_saying_how_much_there_is():
    rows, _ = training_rows(synthetic_events(60, seed=1))
    with pytest.raises(NotEnoughHistory) as refused:
        fit(rows, load_scorecard("scorecard", ROOT / "strategies"), min_cases=50)
    assert "not enough history" in str(refused.value) and "at least 50 of each" in str(refused.value)


@pytest.mark.parametrize("backend", BACKENDS)
async def test_the_command_fits_from_a_ledger_writes_a_card_and_refuses_a_thin_one(backend, tmp_path: Path, capsys):
    async with scratch_database(backend, tmp_path) as url:
        await write_synthetic_ledger(url, 1500, seed=3)
        out = tmp_path / "fitted.toml"

        async def command(*argv: str) -> int:
            return await asyncio.to_thread(main, ["--ledger", url, *argv])  # it runs an event loop of its own

        assert await command("--out", str(out), "--seed", "2") == 0
        printed = capsys.readouterr().out
        assert "AUC" in printed and "KS" in printed and f"wrote {out}" in printed
        card = load_scorecard(out)
        assert card.fitted is not None and card.fitted.auc > 0.6 and card.fitted.seed == 2
        assert await command("--out", str(tmp_path / "thin.toml"), "--min-cases", "5000") == 1
        assert "not enough history" in capsys.readouterr().err and not (tmp_path / "thin.toml").exists()
        assert await command("--out", str(out), "--min-cases", "1") == 2
        assert "--min-cases" in capsys.readouterr().err
    empty = f"sqlite:///{tmp_path / 'empty.db'}"
    assert await asyncio.to_thread(main, ["--ledger", empty, "--out", str(out)]) == 2
    assert "--ledger: cannot read case events" in capsys.readouterr().err


def test_the_held_out_cases_are_whole_loans_never_one_episode_of_a_loan_trained_on():
    from lab.scorecard import TrainingRow, _split_by_loan

    rows = [TrainingRow(f"L-{n // 3}", f"2026-01-0{n % 3 + 1}", _features(), n % 2 == 0) for n in range(300)]
    train, held = _split_by_loan(rows, seed=5)
    assert len(train) + len(held) == 300 and 0.2 < len(held) / 300 < 0.4
    assert not {row.loan_id for row in train} & {row.loan_id for row in held}
    assert _split_by_loan(rows, seed=5) == (train, held)  # seeded
