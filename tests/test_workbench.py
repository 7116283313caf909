"""The web workbench in a real browser (Playwright driving Debian's chromium) against a desk served
on a free port, in front of a real worker on the Temporal dev server."""

from __future__ import annotations

import asyncio
import re
from datetime import date, timedelta

import pytest

from tests.browser_fixtures import Browser, Page, expect, logged_in, screenshot
# The fixtures `served` (the desk on a free port) and `browser` (chromium), one of each per module.
from tests.browser_fixtures import launch_chromium, serve_the_desk  # noqa: F401
from tests.desk_fixtures import Desk, soon

pytestmark = pytest.mark.asyncio(loop_scope="module")
SCRIPT = "<script>alert(1)</script>"


async def assigned_case(desk: Desk, agent: str = "t1", **loan) -> str:
    loan_id, _ = await desk.case(**loan)
    response = await desk.command("s1", loan_id, "assign", {"agent": agent})
    assert response.status_code == 200, response.text
    return loan_id


async def call_task(desk: Desk, agent: str = "a1", **loan) -> str:
    """A case assigned to ``agent`` and moved on to agent contact, once its call task is queued."""
    loan_id = await assigned_case(desk, agent, **loan)
    assert (await desk.command("s1", loan_id, "escalate", {"reason": "to the agents"})).status_code == 200
    for _ in range(200):
        items = (await desk.get(agent, "/api/v1/work", params={"queue": "calls"})).json()["items"]
        if loan_id in [item["loan_id"] for item in items]:
            return loan_id
        await asyncio.sleep(0.05)
    raise AssertionError("the call task never reached the agent's queue")


async def status(desk: Desk, loan_id: str) -> dict:
    return (await desk.get("s1", f"/api/v1/cases/{loan_id}")).json()


async def csrf_of(page: Page) -> str:
    """The session's CSRF token, as every form on the page carries it."""
    return await page.locator("form.logout input[name=csrf_token]").input_value()


async def test_an_agent_works_the_queue_with_one_click_and_the_keyboard_and_records_a_promise(
        desk: Desk, served: str, browser: Browser) -> None:
    first, second, third = await asyncio.gather(
        call_task(desk), call_task(desk, amount_past_due="1280.00", outstanding_amount="4200.00", risk_grade="A"),
        call_task(desk, amount_past_due="760.50", outstanding_amount="3100.00", risk_grade="C"))
    async with logged_in(browser, served, "a1") as tab:
        page = tab.page
        assert page.url.endswith("/queue")
        await expect(page.locator("h1")).to_have_text("My queue")
        for loan_id in (first, second, third):
            await expect(page.locator(f"tr[data-loan='{loan_id}']")).to_be_visible()
        await screenshot(page, "queue")
        # One click records the outcome; the item leaves the queue.
        await page.locator(f"tr[data-loan='{first}'] button[value='no_answer']").click()
        await expect(page.locator(".alert-ok")).to_contain_text(f"No answer for {first}")
        await expect(page.locator(f"tr[data-loan='{first}']")).to_have_count(0)
        # The keyboard: j / k to the item, 1-5 for its outcomes (here 5: left a message).
        rows = await page.locator("tr.work-item").evaluate_all("rows => rows.map(r => r.dataset.loan)")
        for _ in range(rows.index(second)):
            await page.keyboard.press("j")
        await expect(page.locator("tr.work-item.selected")).to_have_attribute("data-loan", second)
        await page.keyboard.press("5")
        await expect(page.locator(".alert-ok")).to_contain_text(f"Left message for {second}")
        # Enter opens the selected item's case.
        await page.locator(f"tr[data-loan='{third}'] td").first.click()
        await page.keyboard.press("Enter")
        await page.wait_for_url(f"**/cases/{third}")
        # A promise from the case page's form.
        await page.locator("#command-promise_to_pay summary").click()
        await page.fill("#promise_to_pay-amount", "300.00")
        await page.fill("#promise_to_pay-due_date", soon(5))
        await page.locator("#command-promise_to_pay button[type=submit]").click()
        await expect(page.locator(".alert-ok")).to_contain_text("Promise to pay")
        await expect(page.locator("#promise")).to_contain_text("300.00 USD")
    for loan_id, outcome in ((first, "no_answer"), (second, "left_message")):
        reported = [e for e in (await status(desk, loan_id))["events"] if e["kind"] == "call_outcome"]
        assert [(e["detail"]["outcome"], e["actor"]) for e in reported] == [(outcome, "a1")]
    promise = (await status(desk, third))["promise"]
    assert (promise["amount"], promise["agent"]) == ("300.00", "a1")


async def test_a_supervisor_approves_a_settlement_an_agent_proposed(desk: Desk, served: str, browser: Browser) -> None:
    loan_id = await assigned_case(desk)
    proposal = {"kind": "settlement", "settlement_amount": "3500.00", "new_due_date": soon(7),
                "justification": f"medical bills; one-off offer {SCRIPT}"}
    response = await desk.command("a1", loan_id, "propose_arrangement", proposal)
    assert response.status_code == 202, response.text
    approval_id = response.json()["approval"]["approval_id"]
    async with logged_in(browser, served, "s2") as tab:
        page = tab.page
        await page.goto("/approvals")
        card = page.locator(f"[data-approval='{approval_id}']")
        await expect(card.locator(".gives-up strong")).to_have_text("30.00%")
        # The justification is the agent's text: shown as text, never run.
        await expect(card.locator(".justification")).to_have_text(f"medical bills; one-off offer {SCRIPT}")
        await screenshot(page, "approvals")
        await card.locator("button.approve").click()
        await expect(page.locator(".alert-ok")).to_contain_text(f"Approval {approval_id} applied")
        assert tab.dialogs == []
    arrangement = (await status(desk, loan_id))["arrangement"]
    assert (arrangement["kind"], arrangement["approved_by"], arrangement["approver_role"]) == (
        "settlement", "s2", "supervisor")


async def test_text_people_typed_shows_as_text_and_never_runs(desk: Desk, served: str, browser: Browser) -> None:
    loan_id = await assigned_case(desk)
    async with logged_in(browser, served, "a1") as tab:
        page = tab.page
        await page.goto(f"/cases/{loan_id}")
        await page.locator("#command-hold summary").click()
        await page.fill("#hold-reason", SCRIPT)
        await page.locator("#command-hold button[type=submit]").click()
        await expect(page.locator(".alert-ok")).to_be_visible()
        # A hold's reason is a person's own words: the ledger keeps them (encrypted); the page shows the kind.
        await expect(page.locator("#holds")).to_contain_text("held by an operator")
        await expect(page.locator("#holds")).not_to_contain_text(SCRIPT)
        # Text a person typed that the case does show (a promise's channel) shows as text.
        due = (date.today() + timedelta(days=3)).isoformat()
        promised = await desk.command("a1", loan_id, "promise_to_pay", {"amount": "100.00", "due_date": due,
                                                                           "channel": SCRIPT})
        assert promised.status_code == 200, promised.text
        await page.goto(f"/cases/{loan_id}")
        await expect(page.locator("#timeline .detail", has_text=SCRIPT)).not_to_have_count(0)
        assert await page.locator("main script").count() == 0
        assert tab.dialogs == []


async def test_a_form_without_the_sessions_csrf_token_is_refused(desk: Desk, served: str, browser: Browser) -> None:
    loan_id = await assigned_case(desk)
    async with logged_in(browser, served, "a1") as tab:
        request = tab.page.request
        for form in ({"reason": "no token"}, {"reason": "a guess", "csrf_token": "guess"}):
            refused = await request.post(f"{served}/cases/{loan_id}/commands/hold", form=form)
            assert refused.status == 403 and "security token" in await refused.text()
        refused = await request.post(f"{served}/sign-out", form={})
        assert refused.status == 403
        assert (await request.get(f"{served}/queue")).status == 200  # still logged in
    assert not (await status(desk, loan_id))["paused"]  # nothing reached the case


async def test_an_agent_cannot_open_another_teams_case(desk: Desk, served: str, browser: Browser) -> None:
    theirs = await assigned_case(desk, "t2")
    async with logged_in(browser, served, "a1") as tab:
        response = await tab.page.goto(f"/cases/{theirs}")
        assert response is not None and response.status == 403
        await expect(tab.page.locator("h1")).to_have_text("Not allowed")
        await expect(tab.page.locator(".error-reason")).to_contain_text("not assigned to a1")
        refused = await tab.page.request.post(f"{served}/cases/{theirs}/reveal",
                                              form={"csrf_token": await csrf_of(tab.page)})
        assert refused.status == 403
    entries = (await desk.get("s1", "/api/v1/access-log", params={"loan_id": theirs})).json()["entries"]
    assert [e for e in entries if e["user"] == "a1"] == []


async def test_the_chinese_interface(desk: Desk, served: str, browser: Browser) -> None:
    await call_task(desk, amount_past_due="520.00")
    async with logged_in(browser, served, "a1") as tab:
        page = tab.page
        await page.locator(".langs a[lang='zh-Hans']").click()
        await expect(page.locator("h1")).to_have_text("我的队列")
        await expect(page.locator("html")).to_have_attribute("lang", "zh-Hans")
        await expect(page.locator(".nav")).to_contain_text("我的队列")
        await expect(page.locator("form.logout button")).to_have_text("退出登录")
        await expect(page.locator("tr.work-item button[value='no_answer']").first).to_contain_text("无人接听")
        await screenshot(page, "zh-queue")
        await page.locator(".langs a[lang='en']").click()
        await expect(page.locator("h1")).to_have_text("My queue")
    # Without the switch's cookie, the browser's language decides.
    context = await browser.new_context(base_url=served, locale="zh-CN")
    try:
        page = await context.new_page()
        await page.goto("/login")
        await expect(page.locator("h1")).to_have_text("登录")
    finally:
        await context.close()


async def test_a_refused_field_is_named_next_to_it_and_the_form_keeps_its_values(
        desk: Desk, served: str, browser: Browser) -> None:
    loan_id = await assigned_case(desk)
    async with logged_in(browser, served, "a1") as tab:
        page = tab.page
        await page.goto(f"/cases/{loan_id}")
        await page.locator("#command-promise_to_pay summary").click()
        await page.fill("#promise_to_pay-amount", "1.00")  # below the strategy's share of the arrears
        await page.fill("#promise_to_pay-due_date", soon(3))
        async with page.expect_response(re.compile(r"/commands/promise_to_pay$")) as sent:
            await page.locator("#command-promise_to_pay button[type=submit]").click()
        assert (await sent.value).status == 422
        await expect(page.locator("#promise_to_pay-amount-error")).to_contain_text("below")
        await expect(page.locator("#promise_to_pay-amount")).to_have_value("1.00")
        await expect(page.locator("#promise_to_pay-due_date")).to_have_value(soon(3))
        await expect(page.locator("#promise_to_pay-amount-field")).to_have_class(re.compile("has-error"))
        # A plan's instalments are lines of "date amount"; a line that is not is named.
        await page.locator("#command-propose_arrangement summary").click()
        await page.select_option("#propose_arrangement-kind", "instalments")
        await page.fill("#propose_arrangement-instalments", f"{soon(3)} 200.00\nnext week 250")
        await page.locator("#command-propose_arrangement button[type=submit]").click()
        await expect(page.locator("#propose_arrangement-instalments-error")).to_contain_text("line 2")
    assert (await status(desk, loan_id))["promise"] is None


async def test_contact_details_are_masked_until_revealed_and_the_access_log_lists_the_reveal(
        desk: Desk, served: str, browser: Browser) -> None:
    loan_id = await assigned_case(desk)
    await desk.command("a1", loan_id, "promise_to_pay", {"amount": "200.00", "due_date": soon(4)})
    await desk.command("a1", loan_id, "hold", {"reason": "customer asked for a call back on Monday"})
    before = (await desk.get("s1", "/api/v1/access-log", params={"loan_id": loan_id})).json()["entries"]
    async with logged_in(browser, served, "a1") as tab:
        page = tab.page
        await page.goto(f"/cases/{loan_id}")
        phone = page.locator("dd[data-detail='phone']")
        await expect(phone).to_have_text("********0123")
        assert (await desk.get("s1", "/api/v1/access-log", params={"loan_id": loan_id})).json()["entries"] == before
        await page.click("#reveal")
        await expect(phone).to_have_text("+15555550123")
        await expect(page.locator("dd[data-detail='address']")).to_have_class(re.compile("masked"))
        await expect(page.locator("#messages pre.sent").first).to_be_visible()  # the texts as sent
        await page.locator("#command-call_outcome summary").click()
        await screenshot(page, "case")
    async with logged_in(browser, served, "s1") as tab:
        page = tab.page
        await page.goto(f"/access-log?loan_id={loan_id}")
        row = page.locator("table.access tbody tr").first
        await expect(row).to_contain_text("a1")
        await expect(row).to_contain_text("revealed")
        await expect(row).to_contain_text("email, name, phone")
        await expect(row).to_contain_text("web")


async def test_a_letter_is_served_from_the_data_dir_only(desk: Desk, served: str, browser: Browser) -> None:
    loan_id = await assigned_case(desk)
    data_dir = desk.desk.settings.base.data_dir
    kept = data_dir / "letters" / f"{loan_id}-test.pdf"
    kept.parent.mkdir(parents=True, exist_ok=True)
    kept.write_bytes(b"%PDF-1.4\n% a letter\n")
    outside = data_dir.parent / f"{loan_id}-outside.pdf"
    outside.write_bytes(b"%PDF-1.4\n% not the worker's\n")
    retain = date.today() + timedelta(days=365)
    for key, path in ((f"{loan_id}/letter/1", kept), (f"{loan_id}/letter/2", data_dir / ".." / outside.name)):
        await desk.desk.ledger.claim(key, loan_id=loan_id, jurisdiction="US", channel="letter",
                                     template="legal_letter", retain_until=retain)
        await desk.desk.ledger.sent(key, message_id=key, location=str(path))
    inside_id, outside_id = [a["id"] for a in await desk.desk.ledger.attempts(loan_id)][-2:]
    async with logged_in(browser, served, "s1") as tab:
        request = tab.page.request
        answer = await request.get(f"{served}/cases/{loan_id}/letters/{inside_id}")
        assert answer.status == 200 and answer.headers["content-type"] == "application/pdf"
        assert await answer.body() == kept.read_bytes()
        assert (await request.get(f"{served}/cases/{loan_id}/letters/{outside_id}")).status == 404
        await tab.page.goto(f"/cases/{loan_id}")
        await expect(tab.page.locator(f"a[href='/cases/{loan_id}/letters/{inside_id}']")).to_be_visible()
    async with logged_in(browser, served, "a1") as tab:  # the letter names the address, which agents do not see
        assert (await tab.page.request.get(f"{served}/cases/{loan_id}/letters/{inside_id}")).status == 403
    entries = (await desk.get("s1", "/api/v1/access-log", params={"loan_id": loan_id})).json()["entries"]
    assert [(e["user"], e["what"]) for e in entries] == [("s1", "letter")]


async def test_the_portfolio_and_the_pages_security_headers(desk: Desk, served: str, browser: Browser) -> None:
    async with logged_in(browser, served, "s1") as tab:
        page = tab.page
        response = await page.goto("/portfolio")
        assert response is not None and response.status == 200
        await expect(page.locator("h1")).to_have_text("Portfolio")
        await expect(page.locator("main")).to_contain_text("By stage")
        await screenshot(page, "portfolio")
        headers = response.headers
        assert headers["content-security-policy"].startswith("default-src 'self'; script-src 'self';")
        assert "frame-ancestors 'none'" in headers["content-security-policy"]
        assert (headers["x-content-type-options"], headers["referrer-policy"]) == ("nosniff", "same-origin")
        assert headers["cache-control"] == "no-store"
    async with logged_in(browser, served, "a1") as tab:
        response = await tab.page.goto("/portfolio")
        assert response is not None and response.status == 403
    # The API's answers carry the same headers; a page without a session goes to the log-in form.
    answer = await desk.http.get("/api/v1/me", headers=desk.auth("a1"))
    assert answer.headers["x-content-type-options"] == "nosniff"
    answer = await desk.http.get("/queue", headers=desk.auth("a1"))  # a bearer token opens no page
    assert answer.status_code == 303 and answer.headers["location"] == "/login?next=/queue"
