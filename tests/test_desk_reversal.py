"""A payment that comes back, at the desk (issue 15), against a real worker on the Temporal dev server:
on a live case it stops counting; on a case it cured and that has closed, the case is reopened as a
new episode (a new run of ``loan-<id>``) while the closed run stays as it was; the servicer's figures
(``loan_update``) and reversals come from the payments system and supervisors only."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from temporalio.client import WorkflowHandle

from desk.forms import command_forms
from infra.episodes import last_run
from starter import admit
from tests.conftest import make_loan, strategy
from tests.desk_fixtures import PASSWORD, Desk
from workflows.inputs import case_workflow_id

pytestmark = pytest.mark.asyncio(loop_scope="module")
TODAY = datetime.now(UTC).date()
ROLES = {"agent": "a1", "field_agent": "f1", "supervisor": "s1", "compliance": "c1", "admin": "ad", "payments": "p1"}
MAY = {"loan_update": {"supervisor", "payments"}, "payment_reversed": {"supervisor", "payments"}}


async def admitted_case(desk: Desk, **loan: Any) -> tuple[str, str, WorkflowHandle]:
    """A case started as intake starts one (its episode in its memo): loan id, episode, handle."""
    made = make_loan(**{"days_past_due": 5, **loan})
    admitted = await admit(desk.env.client, made, strategy(), desk.task_queue, as_of=TODAY)
    assert admitted.status == "started"
    response = await desk.command("s1", made.loan_id, "assign", {"agent": "t1"})
    assert response.status_code == 200, response.text
    return made.loan_id, admitted.episode, admitted.handle


async def paid(desk: Desk, loan_id: str, amount: str = "450.00") -> str:
    """The payments system posts a payment; its reference."""
    reference = f"PAY-{uuid.uuid4().hex[:8]}"
    response = await desk.post("p1", "/api/v1/payments", {"payments": [
        {"loan_id": loan_id, "reference": reference, "amount": amount, "currency": "USD"}]})
    assert response.json()["results"][0]["result"] == "applied", response.text
    return reference


async def closed_run(desk: Desk, loan_id: str) -> str:
    run = await last_run(desk.env.client, loan_id)
    assert run is not None
    handle = desk.env.client.get_workflow_handle(case_workflow_id(loan_id), run_id=run.run_id, result_type=dict)
    assert (await handle.result(follow_runs=False))["outcome"] == "cured"
    return run.run_id


def browser(desk: Desk) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=desk.http._transport.app),  # type: ignore[attr-defined]
                             base_url="http://desk")


async def log_in(http: httpx.AsyncClient, name: str) -> httpx.Response:
    await http.get("/login")
    return await http.post("/login", data={"username": name, "password": PASSWORD,
                                           "csrf_token": http.cookies["arrears_login_csrf"]})


@pytest.mark.parametrize("command", sorted(MAY))
async def test_the_servicers_figures_and_reversals_come_from_payments_and_supervisors_only(
        desk: Desk, command: str) -> None:
    loan_id, _, _ = await admitted_case(desk)
    reference = await paid(desk, loan_id, "10.00")
    body = {"loan_update": {"as_of": TODAY.isoformat(), "amount_past_due": "440.00", "outstanding": "4990.00",
                            "days_past_due": 5},
            "payment_reversed": {"reference": reference, "reason": "returned unpaid"}}[command]
    for role, user in ROLES.items():
        response = await desk.command(user, loan_id, command, body)
        if role in MAY[command]:
            assert response.status_code == 200, f"{role} {command}: {response.text}"
        else:
            assert response.status_code == 403, f"{role} {command}: {response.status_code} {response.text}"
            assert f"may not send {command}" in response.json()["reason"]
    # The first allowed sender applied it, the other sent it again: the case recorded a duplicate.
    state = (await desk.get("s1", f"/api/v1/cases/{loan_id}")).json()
    taken = [e["status"] for e in state["events"] if e["kind"] == command]
    assert taken == ["accepted", "duplicate"], taken


async def test_the_payments_system_hears_a_receipt_never_the_case(desk: Desk) -> None:
    loan_id, episode, _ = await admitted_case(desk)
    reference = await paid(desk, loan_id, "10.00")
    response = await desk.command("p1", loan_id, "payment_reversed", {"reference": reference, "reason": "bounced"})
    assert response.status_code == 200, response.text
    assert response.json() == {"loan_id": loan_id, "command": "payment_reversed", "result": "accepted",
                               "episode": episode, "outcome": None}
    response = await desk.command("p1", loan_id, "loan_update", {
        "as_of": TODAY.isoformat(), "amount_past_due": "450.00", "outstanding": "5000.00", "days_past_due": 5})
    assert response.status_code == 200 and response.json()["result"] == "accepted", response.text
    assert "status" not in response.json() and "events" not in response.text
    # Refusals name the field, as for anyone; an unknown loan is 404.
    response = await desk.command("p1", loan_id, "payment_reversed", {"reference": "NOPE", "reason": "bounced"})
    assert response.status_code == 422 and response.json()["field"] == "reference", response.text
    response = await desk.command("p1", "NO-SUCH-LOAN", "payment_reversed", {"reference": "X", "reason": "bounced"})
    assert response.status_code == 404, response.text
    response = await desk.command("p1", "NO-SUCH-LOAN", "loan_update", {
        "as_of": TODAY.isoformat(), "current": True})
    assert response.status_code == 404, response.text


async def test_reversing_the_payment_that_cured_a_closed_case_reopens_it_as_a_new_episode(desk: Desk) -> None:
    loan_id, episode, first = await admitted_case(desk)
    reference = await paid(desk, loan_id)
    closed = await closed_run(desk, loan_id)
    # Other commands find the case closed; a reversal reaches it.
    assert (await desk.command("s1", loan_id, "hold", {"reason": "x"})).status_code == 409
    response = await desk.command("s1", loan_id, "payment_reversed", {"reference": reference,
                                                                      "reason": "returned unpaid"})
    assert response.status_code == 200, response.text
    state = response.json()["status"]
    assert state["episode"] == f"{episode}.2" and state["outcome"] is None
    assert state["amount_past_due"] == "450.00"
    assert [e["status"] for e in state["events"] if e["kind"] == "payment_reversed"] == ["accepted"]
    assert [e for e in state["events"] if e["kind"] == "case_reopened"]
    run = await last_run(desk.env.client, loan_id)
    assert run is not None and run.running and run.run_id != closed and run.episode == f"{episode}.2"
    # The closed run is as it closed: cured, its payment counted.
    before = desk.env.client.get_workflow_handle(case_workflow_id(loan_id), run_id=closed, result_type=dict)
    result = await before.result(follow_runs=False)
    assert result["outcome"] == "cured" and [p["reversed"] for p in result["payments"]] == [False]
    # The same reversal again goes to the reopened run, which records it as a duplicate: no third run.
    again = await desk.command("s1", loan_id, "payment_reversed", {"reference": reference,
                                                                   "reason": "returned unpaid"})
    assert again.status_code == 200, again.text
    assert [e["status"] for e in again.json()["status"]["events"] if e["kind"] == "payment_reversed"] == [
        "accepted", "duplicate"]
    assert (await last_run(desk.env.client, loan_id)).run_id == run.run_id  # type: ignore[union-attr]
    # The case page reads the reopened run.
    assert (await desk.get("s1", f"/api/v1/cases/{loan_id}")).json()["episode"] == f"{episode}.2"
    del first


async def test_a_reversal_reopens_only_a_case_that_payment_cured(desk: Desk) -> None:
    loan_id, _, _ = await admitted_case(desk)
    reference = await paid(desk, loan_id)
    closed = await closed_run(desk, loan_id)
    response = await desk.command("s1", loan_id, "payment_reversed", {"reference": "NOT-PAID", "reason": "bounced"})
    assert response.status_code == 422 and response.json()["field"] == "reference", response.text
    response = await desk.command("s1", loan_id, "payment_reversed", {"reference": reference})
    assert response.status_code == 422 and response.json()["field"] == "reason", response.text
    assert (await last_run(desk.env.client, loan_id)).run_id == closed  # type: ignore[union-attr]
    # A case closed by an operator, not by the payment: nothing to reopen.
    other, _, handle = await admitted_case(desk)
    partial = await paid(desk, other, "10.00")
    response = await desk.command("s1", other, "close", {"outcome": "closed", "note": "sold to another lender"})
    assert response.status_code == 200, response.text
    response = await desk.command("s1", other, "payment_reversed", {"reference": partial, "reason": "bounced"})
    assert response.status_code == 422 and response.json()["field"] == "reference", response.text
    assert "closed" in response.json()["reason"]
    assert not (await last_run(desk.env.client, other)).running  # type: ignore[union-attr]
    del handle


async def test_the_payments_system_reopens_a_case_the_moment_its_payment_cured_it(desk: Desk) -> None:
    loan_id, episode, _ = await admitted_case(desk)
    reference = await paid(desk, loan_id)
    # At once: the cured run may still be finishing its last task; the reversal waits for it to close.
    response = await desk.command("p1", loan_id, "payment_reversed", {"reference": reference, "reason": "bounced"})
    assert response.status_code == 200, response.text
    assert response.json() == {"loan_id": loan_id, "command": "payment_reversed", "result": "accepted",
                               "episode": f"{episode}.2", "outcome": None}
    run = await last_run(desk.env.client, loan_id)
    assert run is not None and run.running and run.episode == f"{episode}.2"


async def test_the_workbench_offers_the_new_commands_to_who_may_send_them(desk: Desk) -> None:
    forms = {form.command: {f.name: f.kind for f in form.fields}
             for form in command_forms({"loan_update", "payment_reversed"})}
    assert forms["loan_update"] == {"as_of": "date", "amount_past_due": "amount", "outstanding": "amount",
                                    "days_past_due": "number", "fees": "amount", "current": "checkbox",
                                    "reason": "textarea"}
    assert forms["payment_reversed"] == {"reference": "text", "reason": "textarea"}
    me = (await desk.get("p1", "/api/v1/me")).json()
    assert {"payment_received", "payment_reversed", "loan_update"} == set(me["commands"])
    assert not {"payment_reversed", "loan_update"} & set((await desk.get("c1", "/api/v1/me")).json()["commands"])


async def test_the_command_line_reverses_a_payment(monkeypatch: pytest.MonkeyPatch) -> None:
    import desk.client as cli

    sent: list[tuple[str, str, Any]] = []

    def call(self: Any, method: str, path: str, body: Any = None, **params: Any) -> dict[str, Any]:
        sent.append((method, path, body))
        return {"loan_id": "L-1", "command": "payment_reversed", "result": "accepted", "episode": "2026-11-26.2"}

    monkeypatch.setattr(cli.Desk, "call", call)
    monkeypatch.setenv("ARREARS_DESK_TOKEN", "arr_test_token")
    assert cli.main(["reverse", "L-1", "PAY-9", "--reason", "returned unpaid"]) == 0
    assert sent == [("POST", "/api/v1/cases/L-1/payment_reversed", {"reference": "PAY-9", "reason": "returned unpaid"})]
    assert cli.main(["reverse", "L-1", "PAY-9"]) == 2  # the reason is required


async def test_the_workbench_page_of_a_cured_case_offers_only_the_reversal_and_reopens_it(desk: Desk) -> None:
    loan_id, episode, _ = await admitted_case(desk)
    reference = await paid(desk, loan_id)
    await closed_run(desk, loan_id)
    async with browser(desk) as http:
        assert (await log_in(http, "c1")).status_code == 303
        page = await http.get(f"/cases/{loan_id}")
        assert page.status_code == 200 and "/commands/" not in page.text  # compliance may not reverse
    async with browser(desk) as http:
        assert (await log_in(http, "s1")).status_code == 303
        page = await http.get(f"/cases/{loan_id}")
        assert page.status_code == 200
        assert re.findall(r'action="/cases/[^/]+/commands/(\w+)"', page.text) == ["payment_reversed"]
        assert "Payment reversed (reopens a case it cured)" in page.text
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
        sent = await http.post(f"/cases/{loan_id}/commands/payment_reversed",
                               data={"csrf_token": csrf, "reference": reference, "reason": "returned unpaid"})
        assert sent.status_code == 303 and sent.headers["location"].endswith("?sent=payment_reversed"), sent.text
        page = await http.get(sent.headers["location"])
        assert page.status_code == 200 and "/commands/hold" in page.text  # a live case again: every form
    run = await last_run(desk.env.client, loan_id)
    assert run is not None and run.running and run.episode == f"{episode}.2"
