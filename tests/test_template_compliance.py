"""Template wording: no template that threatens, impersonates, shames or abuses can ship; every
SMS and e-mail carries the opt-out its profile requires; every template names the sender."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

import worker
from activities.templates import TemplateBook
from infra.compliance import ComplianceError, lint_templates, load_wording, template_problems
from infra.settings import Settings
from infra.strategies import load_strategy
from starter import intake
from tests.conftest import ROOT

TEMPLATES = TemplateBook(ROOT / "templates")
WORDING = load_wording()
SHIPPED = sorted((language, name) for language in TEMPLATES.languages() for name in TEMPLATES.names(language))


def _copy_tree(tmp_path: Path) -> Path:
    for folder in ("templates", "strategies"):
        shutil.copytree(ROOT / folder, tmp_path / folder)
    return tmp_path


# -- every shipped template -----------------------------------------------------------------

def test_templates_exist_in_more_than_one_language():
    assert {"en", "zh"} <= set(TEMPLATES.languages())
    assert len(SHIPPED) >= 16


@pytest.mark.parametrize(("language", "name"), SHIPPED, ids=[f"{lang}/{name}" for lang, name in SHIPPED])
def test_a_shipped_template_says_nothing_forbidden_and_names_the_sender(language, name):
    text = TEMPLATES.source(name, language)
    assert WORDING.findings(text, language) == []
    assert WORDING.names_sender(text)


@pytest.mark.parametrize("language", ["en", "zh"])
def test_the_rules_cover_every_category_in_every_template_language(language):
    assert language in WORDING.languages()
    for name, category in WORDING.categories.items():
        assert category.patterns.get(language), f"{name} has no {language} patterns"
    assert WORDING.opt_out.get(language), f"no opt-out phrasing for {language}"


@pytest.mark.parametrize("name", ["default", "demo"])
def test_the_shipped_strategies_templates_may_go_out_in_every_jurisdiction(name):
    strategy = load_strategy(name, ROOT / "strategies", TEMPLATES)
    assert template_problems(strategy, TEMPLATES) == []


@pytest.mark.parametrize("name", ["default", "demo"])
def test_every_sms_and_email_of_the_shipped_strategies_carries_an_opt_out(name):
    strategy = load_strategy(name, ROOT / "strategies", TEMPLATES)
    texted = {t for t, channels in strategy.template_channels().items() if {c.value for c in channels} & {"sms", "email"}}
    assert {"reminder_soft", "reminder_how_to_pay", "promise_reminder"} <= texted
    for template in texted:
        assert "Reply STOP" in TEMPLATES.source(template, "en") or "UNSUBSCRIBE" in TEMPLATES.source(template, "en")
        assert "退订" in TEMPLATES.source(template, "zh")


# -- the linter catches what it must and lets lawful text through -------------------------------

FORBIDDEN = [
    ("en", "threats", "Pay today or you will be arrested."),
    ("en", "threats", "We will start criminal proceedings against you."),
    ("en", "threats", "We know where you live."),
    ("en", "threats", "We will seize your house and car."),
    ("en", "threats", "This is your final warning."),
    ("en", "impersonation", "This is a court order to pay $amount_past_due."),
    ("en", "impersonation", "A warrant has been issued in your name."),
    ("en", "impersonation", "The police have been informed."),
    ("en", "impersonation", "We write on behalf of the court."),
    ("en", "shaming", "We will tell your employer about this debt."),
    ("en", "shaming", "We will contact your family and neighbours."),
    ("en", "shaming", "Deadbeat customers like you are listed on social media."),
    ("en", "abuse", "Only an idiot ignores our letters."),
    ("en", "pressure", "Borrow from a friend to pay this."),
    ("zh", "threats", "再不还款就让你坐牢。"),
    ("zh", "threats", "我们将追究您的刑事责任。"),
    ("zh", "threats", "后果自负。"),
    ("zh", "impersonation", "这是法院传票，请立即处理。"),
    ("zh", "impersonation", "我们已通知公安机关。"),
    ("zh", "shaming", "我们将通知您的家人和单位。"),
    ("zh", "shaming", "不还款将爆通讯录，把您曝光为老赖。"),
    ("zh", "abuse", "你这个骗子。"),
    ("zh", "pressure", "请借钱还款，这是最后机会。"),
]


@pytest.mark.parametrize(("language", "category", "text"), FORBIDDEN, ids=[t for _, _, t in FORBIDDEN])
def test_the_linter_catches_a_forbidden_phrasing_in_its_category(language, category, text):
    findings = WORDING.findings(text, language)
    assert category in {f.category for f in findings}
    assert all(f.line == 1 and f.phrase for f in findings)


LAWFUL = [
    ("en", "If we do not hear from you, we may refer the account to our legal partner, who may ask a court "
           "to decide the matter."),
    ("en", "You may dispute this debt, in whole or in part. Write to us or call us."),
    ("en", "Your account is in arrears. Options may include an extension or a payment plan."),
    ("en", "Hello, we tried to call you about your account. Reply STOP to opt out of texts."),
    ("en", "You may ask us to communicate only in writing."),
    ("zh", "如届时未获您的回复，我们可能将账户移交合作律师事务所，并依法通过诉讼程序解决。"),
    ("zh", "如不希望继续接收此类邮件，请回复\"退订\"。"),
    ("zh", "如您对本债务全部或部分有异议，可书面提出，核实期间我们将暂停催收。"),
]


@pytest.mark.parametrize(("language", "text"), LAWFUL, ids=[t[:40] for _, t in LAWFUL])
def test_lawful_wording_passes(language, text):
    assert WORDING.findings(text, language) == []


def test_a_finding_names_the_line_the_category_and_why():
    findings = WORDING.findings("Dear customer,\nYou will be arrested.\n", "en")
    assert [(f.line, f.category, f.phrase.lower()) for f in findings] == [(2, "threats", "arrested")]
    assert "line 2: threats" in str(findings[0]) and "arrest" in str(findings[0])


def test_opt_out_phrasing_is_recognised_per_language():
    assert WORDING.has_opt_out("Reply stop to opt out.", "en")
    assert WORDING.has_opt_out("To stop these e-mails, reply UNSUBSCRIBE.", "en")
    assert not WORDING.has_opt_out("Call us to stop.", "en")
    assert WORDING.has_opt_out("回复TD退订", "zh")
    assert not WORDING.has_opt_out("Reply STOP", "zh"), "a Chinese borrower needs the Chinese instruction"


# -- a bad template stops the worker and the intake -------------------------------------------

def test_a_threatening_template_is_named_by_the_lint(tmp_path):
    root = _copy_tree(tmp_path)
    (root / "templates" / "zh" / "reminder_soft.txt").write_text(
        "【{{ lender }}】您已逾期，再不还款我们将通知您的单位。回复TD退订。", encoding="utf-8")
    problems = lint_templates(TemplateBook(root / "templates"), WORDING)
    assert len(problems) == 1
    assert problems[0].startswith("templates/zh/reminder_soft.txt: line 1: shaming")


def test_a_template_without_the_sender_is_named(tmp_path):
    root = _copy_tree(tmp_path)
    path = root / "templates" / "en" / "missed_call.txt"
    path.write_text(path.read_text(encoding="utf-8").replace("{{ lender }}: ", ""), encoding="utf-8")
    assert lint_templates(TemplateBook(root / "templates"), WORDING) == [
        "templates/en/missed_call.txt: does not identify the sender ({{ lender }})"]


def test_an_sms_template_without_its_opt_out_is_refused_for_the_profiles_that_require_one(tmp_path):
    root = _copy_tree(tmp_path)
    path = root / "templates" / "zh" / "reminder_soft.txt"
    path.write_text(path.read_text(encoding="utf-8").replace("回复TD退订。", ""), encoding="utf-8")
    book = TemplateBook(root / "templates")
    problems = template_problems(load_strategy("default", root / "strategies", book), book)
    assert problems == ["templates/zh/reminder_soft.txt: no opt-out instruction, which the CN profile "
                        "requires on sms"]


def test_an_email_template_without_its_opt_out_is_refused_for_us_and_uk_but_not_cn(tmp_path):
    root = _copy_tree(tmp_path)
    path = root / "templates" / "en" / "repayment_options.txt"
    path.write_text(path.read_text(encoding="utf-8").replace("To stop receiving these e-mails, reply with "
                                                             "UNSUBSCRIBE.", ""), encoding="utf-8")
    book = TemplateBook(root / "templates")
    problems = template_problems(load_strategy("default", root / "strategies", book), book)
    assert problems == [f"templates/en/repayment_options.txt: no opt-out instruction, which the {p} profile "
                        "requires on email" for p in ("UK", "US")]


def test_the_intake_refuses_a_strategy_whose_templates_threaten_before_starting_anything(tmp_path):
    root = _copy_tree(tmp_path)
    path = root / "templates" / "en" / "reminder_soft.txt"
    path.write_text(path.read_text(encoding="utf-8") + "Pay now or face arrest.\n", encoding="utf-8")
    portfolio = tmp_path / "portfolio.csv"
    shutil.copy(ROOT / "examples" / "portfolio.csv", portfolio)
    with pytest.raises(ComplianceError, match=r"templates/en/reminder_soft.txt: line 2: threats"):
        # No client is given and none is reachable: the refusal comes before any connection.
        asyncio.run(intake(portfolio, "default", Settings(root=root, temporal_address="127.0.0.1:1")))


def test_the_worker_refuses_to_start_with_a_threatening_template(tmp_path, monkeypatch):
    root = _copy_tree(tmp_path)
    path = root / "templates" / "en" / "legal_letter.txt"
    path.write_text(path.read_text(encoding="utf-8").replace("Dear customer,", "Dear customer, police notice."),
                    encoding="utf-8")
    monkeypatch.setattr(worker.Settings, "from_env", classmethod(
        lambda cls, env=None: Settings(root=root, temporal_address="127.0.0.1:1")))
    with pytest.raises(SystemExit) as stopped:
        asyncio.run(worker.main())
    assert stopped.value.code == 2


def test_a_rules_file_with_a_broken_pattern_is_refused_naming_it(tmp_path):
    bad = tmp_path / "phrases.toml"
    bad.write_text('[categories.threats]\nwhy = "x"\nen = ["(unclosed"]\n', encoding="utf-8")
    with pytest.raises(ComplianceError, match=r"categories.threats.*\(unclosed.*not a valid regular expression"):
        load_wording(bad)


# -- templates render: Jinja2, strict -----------------------------------------------------------

def test_a_template_with_an_unknown_placeholder_or_a_syntax_error_is_named(tmp_path):
    root = _copy_tree(tmp_path)
    (root / "templates" / "en" / "missed_call.txt").write_text(
        "{{ lender }}: we tried to call you about {{ balance }}. Reply STOP to opt out.\n", encoding="utf-8")
    (root / "templates" / "zh" / "missed_call.txt").write_text(
        "【{{ lender }}】{% if days_past_due %}您已逾期。回复TD退订。\n", encoding="utf-8")
    problems = lint_templates(TemplateBook(root / "templates"), WORDING)
    assert problems[0] == "templates/en/missed_call.txt: unknown placeholder {{ balance }}"
    assert problems[1].startswith("templates/zh/missed_call.txt: line 1: Unexpected end of template")


def test_every_value_a_template_may_use_is_given_when_a_message_is_sent():
    from activities.channels import Sender, _values
    from activities.models import CaseFacts
    from activities.templates import VARIABLES
    from tests.conftest import make_loan

    facts = CaseFacts(stage="reminder", days_past_due=3, amount_past_due="10.00", outstanding="100.00")
    sender = Sender("Bank", "+1 555", "c@bank.example")
    assert set(_values(make_loan(), facts, sender, TEMPLATES, channel="sms")) == VARIABLES


def test_products_are_named_in_the_borrowers_language():
    assert TEMPLATES.product_name("credit_card", "CN") == "信用卡"
    assert TEMPLATES.product_name("credit_card", "US") == "credit card"
    assert TEMPLATES.product_name("boat_loan", "CN") == "boat loan"  # unlisted: its code
    import csv

    shipped = {row["product"] for row in csv.DictReader((ROOT / "examples" / "portfolio.csv").open())}
    untranslated = sorted(p for p in shipped if TEMPLATES.product_name(p, "CN") == p.replace("_", " "))
    assert untranslated == [], "every sample product has a Chinese name"


def test_a_value_missing_at_render_time_is_an_error_not_a_gap():
    import jinja2

    with pytest.raises(jinja2.UndefinedError, match="amount_past_due"):
        TEMPLATES.render("reminder_soft", "US", {"lender": "Bank", "loan_tail": "1234", "product": "card"})
