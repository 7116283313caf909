"""The statutory commands at the desk: a breathing space, its end and a validation notice delivered by
another route are for compliance and supervisors only (compliance/roles.toml), through the API and the
case page's forms."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from starlette.datastructures import FormData

from desk.forms import command_forms, form_body
from desk.policy import Identity, load_policy
from tests.conftest import PROFILES, make_loan, start_case
from tests.desk_fixtures import PASSWORD, Desk, _Queue

ON_THE_DESK = pytest.mark.asyncio(loop_scope="module")  # the module's desk (tests/desk_fixtures.py)

STATUTORY = {
    "breathing_space": {"kind": "standard", "reference": "DRS-000123"},
    "breathing_space_ended": {"reason": "cancelled_by_adviser"},
    "notice_delivered": {"channel": "in_person", "at": (datetime.now(UTC) - timedelta(hours=1)).isoformat(),
                         "reference": "handed over at the branch, receipt 42"},
}
ALLOWED = {"compliance": "c1", "supervisor": "s1"}
REFUSED = {"agent": "a1", "field_agent": "f1", "payments": "p1", "admin": "ad"}


@pytest.mark.parametrize("command", sorted(STATUTORY))
def test_the_role_table_gives_the_statutory_commands_to_compliance_and_supervisors_only(command: str) -> None:
    policy = load_policy()
    for role in ALLOWED:
        assert policy.refuses_command(Identity("x", role), command) is None, role
    for role in REFUSED:
        assert policy.refuses_command(Identity("x", role), command) == f"role {role} may not send {command}"


@ON_THE_DESK
@pytest.mark.parametrize("command", sorted(STATUTORY))
async def test_compliance_and_supervisors_may_send_them_and_nobody_else(desk: Desk, command: str) -> None:
    loan_id, _ = await desk.case()
    assert (await desk.command("s1", loan_id, "assign", {"agent": "t1"})).status_code == 200
    for role, user in REFUSED.items():
        response = await desk.command(user, loan_id, command, STATUTORY[command])
        assert response.status_code == 403, f"{role}: {response.text}"
        assert response.json()["reason"] == f"role {role} may not send {command}"
    for role, user in ALLOWED.items():
        response = await desk.command(user, loan_id, command, STATUTORY[command])
        # Allowed through the desk; the case judges it (the demo profile has neither a breathing-space
        # scheme nor a validation notice, so it may refuse it, naming why).
        assert response.status_code in (200, 422), f"{role}: {response.text}"
        assert response.json().get("reason") != f"role {role} may not send {command}"
    events = (await desk.get("s1", f"/api/v1/cases/{loan_id}")).json()["events"]
    assert not [e for e in events if e["kind"] == command and e["actor"] in REFUSED.values()]


@ON_THE_DESK
async def test_a_breathing_space_recorded_by_compliance_is_ended_by_a_supervisor_with_the_reason(desk: Desk) -> None:
    loan = make_loan(jurisdiction="UK", currency="GBP", timezone="Europe/London", phone="+447700900123",
                     days_past_due=5)
    await start_case(desk.env.client, _Queue(desk.task_queue), loan, compliance=PROFILES["UK"])
    started = await desk.command("c1", loan.loan_id, "breathing_space", STATUTORY["breathing_space"])
    assert started.status_code == 200, started.text
    refused = await desk.command("a1", loan.loan_id, "breathing_space_ended", {"reason": "debtor_request"})
    assert refused.status_code == 403
    ended = await desk.command("s1", loan.loan_id, "breathing_space_ended", {"reason": "debt_solution_entered"})
    assert ended.status_code == 200, ended.text
    sent = [(e["kind"], e["actor"]) for e in ended.json()["status"]["events"]
            if e["kind"] in STATUTORY and e["status"] == "accepted"]
    assert sent == [("breathing_space", "c1"), ("breathing_space_ended", "s1")]


@ON_THE_DESK
async def test_the_desk_stamps_who_sent_a_statutory_command(desk: Desk) -> None:
    loan_id, _ = await desk.case()
    response = await desk.command("c1", loan_id, "breathing_space", {**STATUTORY["breathing_space"], "by": "c2"})
    assert response.status_code == 400 and response.json()["field"] == "by"


def test_the_case_page_has_a_form_for_each_with_its_choices() -> None:
    forms = {form.command: {f.name: f for f in form.fields} for form in command_forms(set(STATUTORY))}
    assert forms["breathing_space"]["kind"].kind == "select"
    assert forms["breathing_space"]["kind"].choices == ("standard", "mental_health_crisis")
    assert forms["breathing_space_ended"]["reason"].choices == (
        "cancelled_by_adviser", "debt_solution_entered", "crisis_treatment_ended", "debtor_request", "other")
    assert forms["notice_delivered"]["channel"].choices == ("email", "letter", "in_person", "other")
    assert forms["notice_delivered"]["at"].kind == "datetime" and forms["notice_delivered"]["at"].required
    [notice] = command_forms({"notice_delivered"})
    body = form_body(notice, FormData([("channel", "letter"), ("at", "2026-03-02T14:05"), ("reference", "RM-1")]))
    assert body == {"channel": "letter", "at": "2026-03-02T14:05:00+00:00", "reference": "RM-1"}


@ON_THE_DESK
async def test_a_compliance_officer_finds_the_statutory_forms_on_the_case_page(desk: Desk) -> None:
    loan_id, _ = await desk.case()
    async with _browser(desk, "c1") as browser:
        page = (await browser.get(f"/cases/{loan_id}")).text
        for command, label in (("breathing_space", "Breathing space (statutory moratorium)"),
                               ("breathing_space_ended", "End the breathing space"),
                               ("notice_delivered", "Validation notice delivered by another route")):
            assert f'id="command-{command}"' in page and label in page
        assert '<option value="mental_health_crisis">Mental health crisis</option>' in page
        assert '<option value="in_person">In person</option>' in page
        assert "Delivery reference" in page and "Scheme reference" in page
        csrf = (await browser.get("/api/v1/me")).json()["csrf_token"]
        sent = await browser.post(f"/cases/{loan_id}/commands/notice_delivered", data={
            "csrf_token": csrf, "channel": "letter", "at": "2026-03-02T14:05", "reference": "RM-1"})
        # The demo profile owes no validation notice: the case refuses it, and the form says why.
        assert sent.status_code == 422 and "requires no validation notice" in sent.text, re.findall(r"Not sent: [^<]*", sent.text)
    async with _browser(desk, "s1") as browser:
        assert 'id="command-breathing_space"' in (await browser.get(f"/cases/{loan_id}")).text


@asynccontextmanager
async def _browser(desk: Desk, user: str) -> AsyncIterator[httpx.AsyncClient]:
    """A browser session of ``user``, logged in through the form."""
    async with httpx.AsyncClient(transport=desk.http._transport, base_url="http://desk") as browser:  # type: ignore[attr-defined]
        await browser.get("/login")
        logged = await browser.post("/login", data={"username": user, "password": PASSWORD,
                                                    "csrf_token": browser.cookies["arrears_login_csrf"]})
        assert logged.status_code == 303, logged.text
        yield browser

