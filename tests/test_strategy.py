"""Strategy files: the shipped ladders load, segmentation picks entry stages, bad files are refused."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from activities.templates import TemplateBook
from domain.durations import parse_duration
from domain.stages import Stage
from domain.strategy import Strategy
from infra.strategies import StrategyError, load_strategy
from tests.conftest import ROOT, make_loan, strategy

STRATEGIES = ROOT / "strategies"
TEMPLATES = TemplateBook(ROOT / "templates")
LADDER = (Stage.REMINDER, Stage.CONTACT, Stage.FIELD_VISIT, Stage.LEGAL_LETTER)

# A small, valid strategy that the bad-file tests break one key at a time.
VALID = """
name = "tiny"

[stages.reminder]
dwell = "30s"
treatments = [{ channel = "sms", template = "reminder_soft", at = ["0s", "10s"] }]

[stages.contact]
dwell = "30s"
treatments = [{ channel = "call", at = ["0s"] }]

[stages.field_visit]
dwell = "30s"
treatments = [{ channel = "visit", at = ["1s"] }]
visit = { lead_time = "5s" }

[stages.legal_letter]
dwell = "20s"
treatments = [{ channel = "letter", template = "legal_letter", at = ["0s"] }]

[stages.litigation]
treatments = [{ channel = "legal_handoff", at = ["0s"] }]
"""


def _load_text(tmp_path: Path, text: str) -> Strategy:
    (tmp_path / "candidate.toml").write_text(text, encoding="utf-8")
    return load_strategy("candidate", tmp_path, TEMPLATES)


def _refusal(tmp_path: Path, text: str) -> str:
    with pytest.raises(StrategyError) as caught:
        _load_text(tmp_path, text)
    message = str(caught.value)
    assert "candidate.toml" in message, "the message names the file"
    return message


def _total_dwell(strat: Strategy) -> timedelta:
    return sum((strat.stages[s].dwell for s in LADDER), timedelta(0))


# -- the shipped strategies ----------------------------------------------------------

@pytest.mark.parametrize("name", ["default", "demo"])
def test_each_shipped_strategy_loads_with_its_templates(name):
    strat = load_strategy(name, STRATEGIES, TEMPLATES)
    assert strat.name == name
    assert set(strat.stages) == set(Stage)
    for language in TEMPLATES.languages():
        assert strat.templates() <= TEMPLATES.names(language)


def test_the_valid_test_strategy_loads(tmp_path):
    strat = _load_text(tmp_path, VALID)
    assert strat.name == "tiny" and strat.stages[Stage.LITIGATION].dwell is None


def test_the_demo_ladder_walks_all_stages_within_three_minutes():
    demo = load_strategy("demo", STRATEGIES, TEMPLATES)
    assert _total_dwell(demo) <= timedelta(seconds=180)
    # every treatment fires inside its stage, or the demo would skip it
    for stage in LADDER:
        config = demo.stages[stage]
        assert all(offset < config.dwell for t in config.treatments for offset in t.at)


def test_the_default_ladder_follows_the_dpd_buckets_within_four_to_six_months():
    default = load_strategy("default", STRATEGIES, TEMPLATES)
    assert timedelta(days=105) <= _total_dwell(default) <= timedelta(days=200)
    leave = [default.stages[stage].leave_at_dpd for stage in LADDER[:3]]
    assert leave == [31, 61, 91]
    assert default.promise.broken_to_escalate == 2


def test_a_strategy_survives_a_json_round_trip_into_a_workflow_input():
    default = strategy()
    again = Strategy.model_validate_json(default.model_dump_json())
    assert again == default


def test_a_strategy_name_ending_in_toml_is_read_as_a_path(tmp_path):
    path = tmp_path / "elsewhere.toml"
    path.write_text(VALID, encoding="utf-8")
    assert load_strategy(str(path), STRATEGIES, TEMPLATES).name == "tiny"


def test_an_unknown_strategy_name_lists_the_available_ones():
    with pytest.raises(StrategyError) as caught:
        load_strategy("nope", STRATEGIES, TEMPLATES)
    assert "no such strategy" in str(caught.value)
    assert "default" in str(caught.value) and "demo" in str(caught.value)


# -- segmentation with the default strategy ---------------------------------------------

@pytest.mark.parametrize(("overrides", "expected"), [
    ({"days_past_due": 5, "risk_grade": "B"}, Stage.REMINDER),
    ({"days_past_due": 30}, Stage.REMINDER),
    ({"days_past_due": 31}, Stage.CONTACT),
    ({"days_past_due": 45}, Stage.CONTACT),
    ({"days_past_due": 61}, Stage.FIELD_VISIT),
    ({"days_past_due": 70}, Stage.FIELD_VISIT),
    ({"days_past_due": 91}, Stage.LEGAL_LETTER),
    ({"days_past_due": 95}, Stage.LEGAL_LETTER),
    ({"days_past_due": 400}, Stage.LEGAL_LETTER),
    ({"days_past_due": 3, "risk_grade": "E"}, Stage.CONTACT),
    ({"days_past_due": 3, "risk_grade": "D"}, Stage.CONTACT),
    ({"days_past_due": 3, "risk_grade": "C"}, Stage.REMINDER),
    ({"days_past_due": 3, "outstanding_amount": "60000.00"}, Stage.CONTACT),
    ({"days_past_due": 3, "outstanding_amount": "50000.00"}, Stage.CONTACT),
    ({"days_past_due": 3, "outstanding_amount": "49999.99"}, Stage.REMINDER),
])
def test_the_default_strategy_segments_loans_to_their_entry_stage(overrides, expected):
    stage, _ = strategy().entry(make_loan(**overrides))
    assert stage is expected


def test_a_high_balance_in_another_currency_uses_that_currency_band():
    # 60000 JPY is small; the high-balance band lists no JPY, so it does not match.
    small_yen = make_loan(days_past_due=3, currency="JPY", outstanding_amount="60000", amount_past_due="4500")
    assert strategy().entry(small_yen)[0] is Stage.REMINDER
    big_yuan = make_loan(days_past_due=3, currency="CNY", outstanding_amount="350000.00")
    assert strategy().entry(big_yuan)[0] is Stage.CONTACT


def test_a_small_balance_at_dpd_70_skips_field_visit_and_enters_legal_letter():
    loan = make_loan(days_past_due=70, outstanding_amount="200.00", amount_past_due="100.00")
    stage, skip = strategy().entry(loan)
    assert stage is Stage.LEGAL_LETTER
    assert skip == frozenset({Stage.FIELD_VISIT})


def test_a_small_balance_early_on_starts_with_reminders_but_remembers_to_skip_the_visit():
    loan = make_loan(days_past_due=5, outstanding_amount="200.00", amount_past_due="100.00")
    stage, skip = strategy().entry(loan)
    assert stage is Stage.REMINDER and skip == frozenset({Stage.FIELD_VISIT})


def test_a_balance_at_the_visit_cost_threshold_does_not_skip_the_visit():
    loan = make_loan(days_past_due=70, outstanding_amount="300.00", amount_past_due="100.00")
    assert strategy().entry(loan) == (Stage.FIELD_VISIT, frozenset())


# -- durations -------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "expected"), [
    ("30s", timedelta(seconds=30)), ("15m", timedelta(minutes=15)), ("12h", timedelta(hours=12)),
    ("14d", timedelta(days=14)), ("2w", timedelta(weeks=2)), (" 3 d ", timedelta(days=3)),
    (90, timedelta(seconds=90)), ("86400.0", timedelta(days=1)),
])
def test_durations_are_read_as_strategy_files_write_them(text, expected):
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["3 days", "d3", "", "1y", True, None])
def test_a_duration_in_another_form_is_refused_with_examples(text):
    with pytest.raises(ValueError) as caught:
        parse_duration(text)
    assert "'30s'" in str(caught.value)


# -- bad strategy files -------------------------------------------------------------------

def test_a_missing_stage_is_refused_naming_it(tmp_path):
    text = VALID.replace('[stages.litigation]\ntreatments = [{ channel = "legal_handoff", at = ["0s"] }]\n', "")
    message = _refusal(tmp_path, text)
    assert "stages: missing litigation" in message


def test_a_non_litigation_stage_without_dwell_is_refused(tmp_path):
    text = VALID.replace('[stages.contact]\ndwell = "30s"\n', "[stages.contact]\n")
    message = _refusal(tmp_path, text)
    assert "stages.contact.dwell is required" in message


def test_a_zero_dwell_is_refused(tmp_path):
    message = _refusal(tmp_path, VALID.replace('dwell = "20s"', 'dwell = "0s"'))
    assert "stages.legal_letter" in message and "dwell must be positive" in message


def test_an_unknown_channel_is_refused_naming_the_key(tmp_path):
    message = _refusal(tmp_path, VALID.replace('channel = "call"', 'channel = "pigeon"'))
    assert "stages.contact.treatments.0.channel" in message and "'sms'" in message


def test_an_sms_treatment_without_a_template_is_refused(tmp_path):
    text = VALID.replace('{ channel = "sms", template = "reminder_soft",', '{ channel = "sms",')
    message = _refusal(tmp_path, text)
    assert "stages.reminder.treatments.0" in message and "sms treatment needs a template" in message


def test_a_duration_written_in_words_is_refused(tmp_path):
    message = _refusal(tmp_path, VALID.replace('dwell = "20s"', 'dwell = "3 days"'))
    assert "stages.legal_letter.dwell" in message and "'3 days' is not a duration" in message


def test_descending_offsets_are_refused(tmp_path):
    message = _refusal(tmp_path, VALID.replace('at = ["0s", "10s"]', 'at = ["10s", "0s"]'))
    assert "stages.reminder.treatments.0" in message and "must be ascending" in message


def test_an_empty_offset_list_is_refused(tmp_path):
    message = _refusal(tmp_path, VALID.replace('at = ["0s", "10s"]', "at = []"))
    assert "stages.reminder.treatments.0.at" in message


def test_a_template_that_does_not_exist_is_refused_per_language(tmp_path):
    message = _refusal(tmp_path, VALID.replace('template = "legal_letter"', 'template = "threatening_letter"'))
    assert "templates missing in en: threatening_letter" in message


def test_a_file_that_is_not_toml_is_refused(tmp_path):
    message = _refusal(tmp_path, VALID + "\n[stages.reminder\n")
    assert "not valid TOML" in message


def test_an_unknown_top_level_key_is_refused(tmp_path):
    message = _refusal(tmp_path, 'colour = "red"\n' + VALID)
    assert "colour" in message and "Extra inputs are not permitted" in message


def test_an_unknown_stage_is_refused(tmp_path):
    message = _refusal(tmp_path, VALID + '\n[stages.prayer]\ndwell = "1d"\n')
    assert "stages.prayer" in message


def test_a_visit_treatment_without_a_visit_plan_is_refused(tmp_path):
    message = _refusal(tmp_path, VALID.replace('visit = { lead_time = "5s" }\n', ""))
    assert "stages.field_visit" in message and "needs a [visit] plan" in message


def test_an_unknown_exit_outcome_is_refused(tmp_path):
    text = VALID.replace('visit = { lead_time = "5s" }', 'visit = { lead_time = "5s" }\nexit_on = ["vanished"]')
    message = _refusal(tmp_path, text)
    assert "exit_on has unknown outcomes ['vanished']" in message


def test_a_segment_that_skips_litigation_is_refused(tmp_path):
    text = '[[segments]]\nname = "never sue"\nskip = ["litigation"]\n'
    message = _refusal(tmp_path, VALID.replace('name = "tiny"\n', 'name = "tiny"\n' + text))
    assert "litigation cannot be skipped" in message


@pytest.mark.parametrize("dwell", ["99999999999w", "inf", "1e15"])
def test_an_absurd_duration_is_refused_as_a_strategy_error(tmp_path, dwell):
    # timedelta() raises OverflowError for these, which pydantic does not turn into a
    # ValidationError, so it escapes load_strategy instead of naming the key.
    message = _refusal(tmp_path, VALID.replace('dwell = "20s"', f'dwell = "{dwell}"'))
    assert "stages.legal_letter.dwell" in message
