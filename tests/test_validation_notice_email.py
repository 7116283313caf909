"""The validation notice by e-mail (Reg F 1006.42, where letters are ceased and the borrower gave
e-sign consent): the e-mail channel renders the notice with its content and subject, and with the
opt-out every e-mail must carry (1006.6(e)); the letter of the same notice carries no e-mail opt-out."""

from __future__ import annotations

import io
import uuid
from pathlib import Path

import pytest
from pypdf import PdfReader

from activities.models import CaseFacts, ContactRequest
from infra.compliance import load_wording
from infra.settings import Settings
from tests.conftest import make_loan
from tests.mail_server import Mailbox
from worker import build_activities

FACTS = CaseFacts(stage="reminder", days_past_due=35, amount_past_due="450.00", outstanding="5000.00")
WORDING = load_wording()


@pytest.fixture
async def activities(smtp_url: str, data_dir: Path):
    built = build_activities(Settings(data_dir=data_dir, smtp_url=smtp_url, letter_processes=0))
    try:
        yield built
    finally:
        await built.aclose()


def _request(channel: str, **loan) -> ContactRequest:
    return ContactRequest(idempotency_key=f"{uuid.uuid4().hex[:8]}/00001/validation_notice/{channel}",
                          loan=make_loan(esign_consent="yes", **loan), template="validation_notice", facts=FACTS)


async def test_the_validation_notice_goes_by_email_with_its_content_and_the_opt_out(
        activities, mailbox: Mailbox) -> None:
    request = _request("email")
    receipt = await activities.send_email(request)
    [message] = mailbox.messages
    assert message["To"] == "ada@example.com"
    assert message["Subject"] == f"Information about your personal loan account ending {request.loan.loan_id[-4:]}"
    body = message.get_content()
    for content in ("You may dispute all or part of this debt", "within 30 days of receiving this notice",
                    "Amount past due:        USD 450.00", "Outstanding balance:    USD 5,000.00",
                    "name and address of the original creditor", "Arrears Demo Bank"):
        assert content in body, content
    assert WORDING.has_opt_out(body, "en") and "UNSUBSCRIBE" in body
    assert not body.startswith("Subject:"), "the subject line went into the header"
    attempt = [a for a in await activities.ledger.attempts() if a["idempotency_key"] == request.idempotency_key]
    assert [(a["channel"], a["template"], a["state"]) for a in attempt] == [("email", "validation_notice", "sent")]
    assert receipt.channel == "email"


async def test_the_chinese_validation_notice_by_email_carries_the_chinese_opt_out(activities, mailbox: Mailbox) -> None:
    await activities.send_email(_request("email", jurisdiction="CN", currency="CNY", timezone="Asia/Shanghai",
                                         phone="+8613800138000"))
    [message] = mailbox.messages
    body = message.get_content()
    assert "30日内提出异议" in body and WORDING.has_opt_out(body, "zh")


async def test_the_validation_notice_by_letter_has_no_email_opt_out(activities, mailbox: Mailbox) -> None:
    receipt = await activities.issue_letter(_request("letter"))
    text = "".join(p.extract_text() for p in PdfReader(io.BytesIO(Path(receipt.location).read_bytes())).pages)
    assert "You may dispute all or part of this debt" in text.replace("\n", " ")
    assert "UNSUBSCRIBE" not in text and mailbox.messages == []
