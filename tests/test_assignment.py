"""Champion/challenger assignment (domain/assignment.py): each loan's arm drawn from a hash of the
experiment and the loan id, at the plan's shares (per segment too), the same on every rerun, order and
process; plans that cannot be used refused with the key that is wrong; intake's choice of strategies;
the arm and the entry segment in the case's opening record."""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from domain.assignment import Arm, Plan, PlanError, draw, parse_plan
from domain.case import open_case
from infra.settings import Settings
from infra.strategies import StrategyError, load_plan
from starter import StrategyChoice, choose_strategies, main
from tests.conftest import ROOT, make_loan, strategy
from workflows.inputs import CaseInput, new_case, reopened_case
from workflows.search_attributes import ALL_KEYS, STRATEGY, case_values, opening

NOW = datetime(2026, 3, 2, 9, tzinfo=UTC)
LOAN = make_loan()


def plan(**fields) -> Plan:
    return parse_plan({"experiment": "trial-1", "champion": "default", **fields})


def loans(count: int, **overrides):
    """``count`` loans with distinct ids (copies of one validated loan: 100k rows in a second)."""
    base = make_loan(**overrides)
    return [base.model_copy(update={"loan_id": f"L{n:06d}"}) for n in range(count)]


def shares(drawn: list[Arm]) -> dict[str, float]:
    counts = Counter(arm.strategy for arm in drawn)
    return {name: count / len(drawn) for name, count in counts.items()}


def expected_position(experiment: str, loan_id: str) -> float:
    """The rule as documented, worked out here on its own: the first 16 hex digits of sha256 over 2**64."""
    return int(hashlib.sha256(f"{experiment}:{loan_id}".encode()).hexdigest()[:16], 16) / 2 ** 64


# -- drawing ---------------------------------------------------------------------------------------


def test_the_shares_hold_within_a_point_on_100k_loans():
    trial = plan(challengers=[{"strategy": "early_contact", "share": "0.20"}, {"strategy": "demo", "share": 0.05}])
    observed = shares([draw(trial, loan) for loan in loans(100_000)])
    for name, share in (("early_contact", 0.20), ("demo", 0.05), ("default", 0.75)):
        assert abs(observed[name] - share) < 0.01, (name, observed)


def test_each_loan_falls_where_the_hash_of_experiment_and_loan_id_puts_it():
    trial = plan(challengers=[{"strategy": "early_contact", "share": "0.3"}, {"strategy": "demo", "share": "0.1"}])
    for loan in loans(2_000):
        at = expected_position("trial-1", loan.loan_id)
        expected = "early_contact" if at < 0.3 else "demo" if at < 0.4 else "default"
        arm = draw(trial, loan)
        assert (arm.strategy, arm.role, arm.experiment) == (
            expected, "champion" if expected == "default" else "challenger", "trial-1")


def test_the_arm_does_not_depend_on_the_order_of_the_file():
    trial = plan(challengers=[{"strategy": "early_contact", "share": "0.5"}])
    portfolio = loans(5_000)
    first = {loan.loan_id: draw(trial, loan) for loan in portfolio}
    random.Random(7).shuffle(portfolio)
    again = {loan.loan_id: draw(trial, loan) for loan in portfolio}
    assert again == first
    # ... nor on the loan's other facts when no segment looks at them: a later file's figures differ.
    moved = {loan.loan_id: draw(trial, loan.model_copy(update={"days_past_due": 40})) for loan in portfolio}
    assert moved == first


def test_another_process_reading_the_file_draws_the_same_arms(tmp_path: Path):
    """Another worker, another interpreter, another hash seed: the same arms (no Python hash(), no RNG)."""
    path = tmp_path / "assignment.toml"
    path.write_text('experiment = "cross-process"\nchampion = "default"\n'
                    '[[challengers]]\nstrategy = "early_contact"\nshare = "0.4"\n')
    ids = [f"X-{n}" for n in range(3_000)]
    script = ("import json, sys\nfrom domain.assignment import draw\nfrom infra.strategies import load_plan\nfrom domain.loan import Loan\n"
              "plan = load_plan(sys.argv[1]); base = Loan.model_validate_json(sys.argv[2])\n"
              "ids = json.loads(sys.stdin.read())\n"
              "print(json.dumps([draw(plan, base.model_copy(update={'loan_id': i})).strategy for i in ids]))\n")
    there = []
    for seed in ("1", "2"):
        run = subprocess.run([sys.executable, "-c", script, str(path), LOAN.model_dump_json()], input=json.dumps(ids),
                             cwd=ROOT,
                             capture_output=True, text=True, env={**os.environ, "PYTHONHASHSEED": seed}, timeout=120)
        assert run.returncode == 0, run.stderr
        there.append(json.loads(run.stdout))
    here = [draw(load_plan(path), LOAN.model_copy(update={"loan_id": i})).strategy for i in ids]  # type: ignore[arg-type]
    assert there[0] == there[1] == here
    assert 0.35 < here.count("early_contact") / len(here) < 0.45


def test_a_new_experiment_name_reshuffles_the_portfolio():
    first = plan(challengers=[{"strategy": "early_contact", "share": "0.5"}])
    second = first.model_copy(update={"experiment": "trial-2"})
    portfolio = loans(20_000)
    same = sum(draw(first, loan).strategy == draw(second, loan).strategy for loan in portfolio) / len(portfolio)
    assert abs(same - 0.5) < 0.02  # independent draws agree half the time, not always


def test_segments_have_shares_of_their_own_and_the_rest_get_the_plans():
    trial = plan(challengers=[{"strategy": "early_contact", "share": "0.1"}], segments=[
        {"name": "high balance", "min_outstanding": {"USD": "10000"},
         "challengers": [{"strategy": "early_contact", "share": "0.5"}]},
        {"name": "late: champion only", "min_dpd": 31, "challengers": []},
        {"name": "grade E: another champion", "grades": ["E"], "champion": "demo",
         "challengers": [{"strategy": "early_contact", "share": "0.25"}]},
    ])
    high = shares([draw(trial, loan) for loan in loans(50_000, outstanding_amount="20000.00")])
    low = shares([draw(trial, loan) for loan in loans(50_000, outstanding_amount="5000.00")])
    late = shares([draw(trial, loan) for loan in loans(5_000, days_past_due=45)])
    graded = shares([draw(trial, loan) for loan in loans(50_000, risk_grade="E")])
    assert abs(high["early_contact"] - 0.5) < 0.01 and abs(high["default"] - 0.5) < 0.01
    assert abs(low["early_contact"] - 0.1) < 0.01 and abs(low["default"] - 0.9) < 0.01
    assert late == {"default": 1.0}
    assert abs(graded["early_contact"] - 0.25) < 0.01 and abs(graded["demo"] - 0.75) < 0.01
    # A band in another currency does not match: a CNY loan of 20000 is not "high balance".
    cny = shares([draw(trial, loan) for loan in loans(20_000, outstanding_amount="20000.00", currency="CNY")])
    assert abs(cny["early_contact"] - 0.1) < 0.01
    assert trial.strategies() == ["default", "early_contact", "demo"]


def test_challengers_sharing_everything_leave_the_champion_nothing():
    trial = plan(challengers=[{"strategy": "early_contact", "share": "0.5"}, {"strategy": "demo", "share": "0.5"}])
    assert {draw(trial, loan).strategy for loan in loans(2_000)} == {"early_contact", "demo"}
    assert {draw(plan(), loan).role for loan in loans(100)} == {"champion"}


# -- plans that cannot be used -----------------------------------------------------------------------


@pytest.mark.parametrize("text, names", [
    ('champion = "default"', "experiment: Field required"),
    ('experiment = ""\nchampion = "default"', "experiment: String should have at least 1 character"),
    ('experiment = "x"\nchampion = "default"\n[[challengers]]\nstrategy = "a"\nshare = 1.5',
     "challengers.0.share: Input should be less than or equal to 1"),
    ('experiment = "x"\nchampion = "default"\n[[challengers]]\nstrategy = "a"\nshare = 0',
     "challengers.0.share: Input should be greater than 0"),
    ('experiment = "x"\nchampion = "default"\n[[challengers]]\nstrategy = "a"\nshare = "a fifth"',
     "challengers.0.share: Input should be a valid decimal"),
    ('experiment = "x"\nchampion = "default"\n[[challengers]]\nstrategy = "a"\nshare = 0.6\n'
     '[[challengers]]\nstrategy = "b"\nshare = 0.5', "challengers: the shares sum to 1.1, more than 1"),
    ('experiment = "x"\nchampion = "default"\n[[challengers]]\nstrategy = "default"\nshare = 0.2',
     "challengers: 'default' is the champion"),
    ('experiment = "x"\nchampion = "default"\n[[segments]]\nname = "s"\nmin_dpd = 31\n'
     '[[segments.challengers]]\nstrategy = "a"\nshare = 0.7\n[[segments.challengers]]\nstrategy = "b"\nshare = 0.7',
     "segments.0.challengers: the shares sum to 1.4"),
    ('experiment = "x"\nchampion = "default"\n[[segments]]\nname = "s"\nenter = "contact"',
     "segments.0: 'enter' and 'skip' belong in a strategy's segments"),
    ('experiment = "x"\nchampion = "default"\n[[segments]]\nname = "s"\nmin_dpd = "soon"',
     "segments.0.min_dpd: Input should be a valid integer"),
    ('experiment = "x"\nchampoin = "default"', "champoin: Extra inputs are not permitted"),
    ('experiment = "x"\nchampion = "default"\nshare = 0.2', "share: Extra inputs are not permitted"),
    ('experiment = "x"\nchampion = [', "not valid TOML"),
])
def test_a_file_that_cannot_be_used_is_refused_naming_the_key(tmp_path: Path, text: str, names: str):
    path = tmp_path / "assignment.toml"
    path.write_text(text)
    with pytest.raises(PlanError) as refused:
        load_plan(path)
    assert str(refused.value).startswith(f"{path}: ") and names in str(refused.value)


def test_no_file_means_no_experiment(tmp_path: Path):
    assert load_plan(tmp_path / "assignment.toml") is None


# -- intake's choice ---------------------------------------------------------------------------------


def active_root(tmp_path: Path) -> Path:
    """A project root whose experiment is the shipped one, switched on."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    root = strategies_root(tmp_path, "default", "early_contact")
    shipped = (ROOT / "strategies" / "assignment.toml").read_text(encoding="utf-8")
    assert "\nactive = false\n" in shipped
    (root / "strategies" / "assignment.toml").write_text(shipped.replace("\nactive = false\n", "\nactive = true\n"))
    return root


def test_the_shipped_experiment_is_written_down_switched_off_so_every_loan_starts_on_the_champion():
    choice = choose_strategies(None, Settings())
    assert choice.plan is None and choice.fixed is not None and choice.fixed.name == "default"
    assert {(s.name, arm) for s, arm in map(choice.for_loan, loans(50))} == {("default", None)}


def test_the_shipped_experiment_switched_on_draws_a_fifth_of_the_loans_into_early_contact(tmp_path: Path):
    choice = choose_strategies(None, Settings(root=active_root(tmp_path)))
    assert choice.plan is not None and choice.fixed is None
    assert choice.plan.champion == "default" and [(c.strategy, c.share) for c in choice.plan.challengers] == [
        ("early_contact", Decimal("0.20"))]
    assert {name: s.name for name, s in choice.arms.items()} == {"default": "default", "early_contact": "early_contact"}
    chosen = [choice.for_loan(loan) for loan in loans(20_000)]
    early = [arm for s, arm in chosen if s.name == "early_contact"]
    assert abs(len(early) / len(chosen) - 0.2) < 0.01
    assert all(arm is not None and arm.role == "challenger" for arm in early)
    assert all(choice.arms[arm.strategy] is s for s, arm in chosen)  # each strategy loaded once, shared


def test_the_challenger_calls_from_dpd_16_and_is_otherwise_the_default():
    default, early = strategy("default"), strategy("early_contact")
    assert early.stages["reminder"].leave_at_dpd == 16 and default.stages["reminder"].leave_at_dpd == 31
    assert early.entry(make_loan(days_past_due=20))[0].value == "contact"
    assert default.entry(make_loan(days_past_due=20))[0].value == "reminder"
    same = ("promise", "payments", "arrangements", "compliance", "dpd_buckets", "hardship_max")
    assert all(getattr(early, name) == getattr(default, name) for name in same)
    for stage in ("field_visit", "legal_letter", "litigation"):
        assert early.stages[stage] == default.stages[stage]


def test_a_named_strategy_is_used_for_every_loan_as_before():
    choice = choose_strategies("demo", Settings())
    assert choice.plan is None and choice.fixed is not None and choice.fixed.name == "demo"
    assert {(s.name, arm) for s, arm in map(choice.for_loan, loans(50))} == {("demo", None)}
    assert StrategyChoice.of(strategy()).for_loan(LOAN) == (strategy(), None)


def strategies_root(tmp_path: Path, *names: str) -> Path:
    """A project root of its own: the named strategies, the real templates."""
    (tmp_path / "strategies").mkdir()
    for name in names:
        shutil.copy(ROOT / "strategies" / f"{name}.toml", tmp_path / "strategies")
    (tmp_path / "templates").symlink_to(ROOT / "templates")
    return tmp_path


def test_without_an_assignment_file_every_loan_gets_default(tmp_path: Path):
    choice = choose_strategies(None, Settings(root=strategies_root(tmp_path, "default")))
    assert choice.plan is None and choice.fixed is not None and choice.fixed.name == "default"


def test_an_experiment_naming_a_missing_strategy_fails_before_any_case_starts(tmp_path: Path):
    root = strategies_root(tmp_path, "default")
    (root / "strategies" / "assignment.toml").write_text(
        'experiment = "x"\nchampion = "default"\n[[challengers]]\nstrategy = "bolder"\nshare = 0.1\n')
    with pytest.raises(StrategyError, match=r"assignment.toml: experiment x: strategy 'bolder': .*no such strategy"):
        choose_strategies(None, Settings(root=root))


def test_strategy_and_assignment_together_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    portfolio = tmp_path / "loans.csv"
    portfolio.write_text("loan_id\n")
    assert main(["--file", str(portfolio), "--strategy", "default", "--assignment",
                 str(ROOT / "strategies" / "assignment.toml")]) == 2
    assert "--strategy and --assignment: choose one" in capsys.readouterr().err
    assert main(["--file", str(portfolio), "--assignment", str(tmp_path / "nowhere.toml")]) == 2
    assert f"--assignment: {tmp_path / 'nowhere.toml'}: no such file" in capsys.readouterr().err


def test_the_sync_draws_when_its_strategy_is_unset_and_uses_the_one_it_names(tmp_path: Path):
    from sync.activity import SyncActivities
    from sync.settings import SyncSettings

    assert SyncSettings.from_env({}).strategy is None
    assert SyncSettings.from_env({"ARREARS_SYNC_STRATEGY": " demo "}).strategy == "demo"
    on = Settings(root=active_root(tmp_path))
    drawn = SyncActivities(None, on, SyncSettings(), None)._strategy()  # type: ignore[arg-type]
    assert drawn.plan is not None and drawn.plan.experiment == "early-contact-2026"
    named = SyncActivities(None, Settings(), SyncSettings(strategy="demo"), None)._strategy()  # type: ignore[arg-type]
    assert named.plan is None and named.fixed is not None and named.fixed.name == "demo"


# -- what the case carries ---------------------------------------------------------------------------


ARM = Arm(experiment="trial-1", strategy="early_contact", role="challenger")


def test_the_opening_record_names_the_segment_that_chose_the_stage_and_the_arm():
    opened = open_case(make_loan(days_past_due=40), strategy(), NOW, assignment=ARM).events[0]
    assert opened.kind == "case_opened"
    assert (opened.detail["stage"], opened.detail["segment"]) == ("contact", "M2: agent contact")
    assert (opened.detail["experiment"], opened.detail["arm"], opened.detail["strategy"]) == (
        "trial-1", "challenger", "default")
    # The ladder's first stage: no segment chose it; a segment that only skips does not count.
    plain = open_case(make_loan(days_past_due=5, outstanding_amount="200.00", amount_past_due="150.00"), strategy(), NOW).events[0]
    assert plain.detail["stage"] == "reminder" and plain.detail["skip"] == ["field_visit"]
    assert (plain.detail["segment"], plain.detail["experiment"], plain.detail["arm"]) == (None, None, None)


def test_the_arm_rides_in_the_input_and_a_reopened_episode_keeps_it():
    started = new_case(LOAN, strategy(), None, episode="2026-02-25", assignment=ARM)
    assert CaseInput.model_validate_json(started.model_dump_json()).assignment == ARM
    assert new_case(LOAN, strategy(), None).assignment is None
    closed = {"outcome": "cured", "outstanding": "4550.00", "amount_past_due": "0", "episode": "2026-02-25",
              "delinquent_since": "2026-02-25",
              "payments": [{"reference": "P1", "amount": "450.00", "to_arrears": "450.00", "to_outstanding": "450.00",
                            "paid_at": "2026-03-01T00:00:00+00:00", "reversed": False}]}
    again = reopened_case(started, closed, "P1", "returned unpaid", None, "2026-02-25.2", "run-1", now=NOW)
    assert again.assignment == ARM and again.strategy == started.strategy


def test_the_strategy_attribute_is_set_at_the_start_and_never_upserted():
    case = open_case(LOAN, strategy(), NOW)
    started = opening(case, LOAN, NOW, strategy="early_contact")
    assert started.get(STRATEGY) == "early_contact" and STRATEGY in ALL_KEYS
    assert STRATEGY not in case_values(case, LOAN, NOW)  # a case never changes it, so replay never upserts it
    assert opening(case, LOAN, NOW).get(STRATEGY) is None
