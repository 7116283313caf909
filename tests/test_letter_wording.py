"""Letter wording follows the case's actual history: "Despite our earlier reminders" (and its Chinese)
only when the borrower had some; otherwise a neutral opening. Read back from the PDF the letter
activity issues, and from the template as rendered."""

from __future__ import annotations

import io
import uuid
from pathlib import Path

import pytest
from pypdf import PdfReader

from activities.models import CaseFacts, ContactRequest
from activities.templates import TemplateBook
from infra.settings import Settings
from tests.conftest import ROOT, make_loan
from worker import build_activities

BOOK = TemplateBook(ROOT / "templates")
# (jurisdiction, loan fields, the sentence that claims earlier reminders, the neutral opening)
LANGUAGES = {
    "en": ("US", {}, "Despite our earlier reminders", "Your account is in arrears."),
    "zh": ("CN", {"jurisdiction": "CN", "currency": "CNY", "timezone": "Asia/Shanghai", "phone": "+8613800138000"},
           "经我方多次提醒", "您的账户目前处于逾期状态。"),
}


@pytest.fixture
async def letters(data_dir: Path):
    built = build_activities(Settings(data_dir=data_dir, letter_processes=0))
    try:
        yield built
    finally:
        await built.aclose()


async def _letter_text(letters, language: str, reminders_sent: int | None) -> str:
    _, loan, _, _ = LANGUAGES[language]
    facts = CaseFacts(stage="legal_letter", days_past_due=95, amount_past_due="450.00", outstanding="5000.00",
                      response_days=15, reminders_sent=reminders_sent)
    receipt = await letters.issue_letter(ContactRequest(
        idempotency_key=f"{uuid.uuid4().hex[:8]}/00012/legal_letter/letter", loan=make_loan(**loan),
        template="legal_letter", facts=facts))
    reader = PdfReader(io.BytesIO(Path(receipt.location).read_bytes()))
    return "".join(page.extract_text() for page in reader.pages).replace("\n", "")


@pytest.mark.parametrize("language", sorted(LANGUAGES))
@pytest.mark.parametrize("reminders_sent", [None, 0])
async def test_a_letter_to_a_borrower_never_reminded_does_not_claim_earlier_reminders(
        letters, language: str, reminders_sent: int | None) -> None:
    _, _, claim, neutral = LANGUAGES[language]
    text = await _letter_text(letters, language, reminders_sent)
    assert claim not in text
    assert neutral in text


@pytest.mark.parametrize("language", sorted(LANGUAGES))
async def test_a_letter_after_reminders_says_so(letters, language: str) -> None:
    _, _, claim, neutral = LANGUAGES[language]
    text = await _letter_text(letters, language, 3)
    assert claim in text
    assert neutral not in text


@pytest.mark.parametrize("language", sorted(LANGUAGES))
def test_a_caller_that_does_not_say_gets_the_neutral_opening(language: str) -> None:
    jurisdiction, _, claim, neutral = LANGUAGES[language]
    values = {"lender": "Bank", "contact_point": "+1 555", "product": "loan", "loan_tail": "1234",
              "days_past_due": "95", "response_days": "15", "today": "2026-03-02", "amount_past_due": "USD 1.00",
              "outstanding": "USD 2.00"}
    body = BOOK.render("legal_letter", jurisdiction, values).body
    assert neutral in body and claim not in body
    assert claim in BOOK.render("legal_letter", jurisdiction, {**values, "earlier_reminders": True}).body
