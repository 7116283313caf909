"""Browser sessions at the desk: log-in with a CSRF token, lock-out after failed log-ins, the
session cookie's properties, CSRF on every unsafe request, idle expiry and log-out."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest

from desk.api import create_app
from desk.cases import CaseDesk
from desk.config import DeskSettings
from tests.desk_fixtures import PASSWORD, Desk, soon

pytestmark = pytest.mark.asyncio(loop_scope="module")


async def log_in(http: httpx.AsyncClient, name: str, password: str = PASSWORD) -> httpx.Response:
    page = await http.get("/login")
    assert page.status_code == 200 and 'name="csrf_token"' in page.text
    csrf = http.cookies["arrears_login_csrf"]
    return await http.post("/login", data={"username": name, "password": password, "csrf_token": csrf})


def browser(desk: Desk, app=None) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app or desk.http._transport.app),  # type: ignore[attr-defined]
                             base_url="http://desk")


async def test_a_user_logs_in_and_acts_with_the_sessions_csrf_token(desk: Desk) -> None:
    loan_id, _ = await desk.case()
    assert (await desk.command("s1", loan_id, "assign", {"agent": "a1"})).status_code == 200
    async with browser(desk) as http:
        response = await log_in(http, "a1")
        assert response.status_code == 303
        cookie = response.headers["set-cookie"]
        assert "arrears_session=" in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie.replace(
            "samesite", "SameSite")
        me = (await http.get("/api/v1/me")).json()
        assert (me["name"], me["role"], me["team"], me["via"]) == ("a1", "agent", "t1", "session")
        assert (await http.get(f"/api/v1/cases/{loan_id}")).status_code == 200
        path = f"/api/v1/cases/{loan_id}/promise_to_pay"
        body = {"amount": "450.00", "due_date": soon(3)}
        refused = await http.post(path, json=body)
        assert refused.status_code == 403 and refused.json()["field"] == "X-CSRF-Token"
        wrong = await http.post(path, json=body, headers={"X-CSRF-Token": "guess"})
        assert wrong.status_code == 403
        done = await http.post(path, json=body, headers={"X-CSRF-Token": me["csrf_token"]})
        assert done.status_code == 200 and done.json()["status"]["promise"]["agent"] == "a1"
        # Log-out needs the token too; afterwards the cookie is worth nothing.
        assert (await http.post("/logout")).status_code == 403
        assert (await http.post("/logout", headers={"X-CSRF-Token": me["csrf_token"]})).status_code == 303
        http.cookies.clear()
        assert (await http.get("/api/v1/me")).status_code == 401


async def test_the_log_in_form_needs_its_csrf_token(desk: Desk) -> None:
    async with browser(desk) as http:
        await http.get("/login")
        response = await http.post("/login", data={"username": "a1", "password": PASSWORD, "csrf_token": "forged"})
        assert response.status_code == 403 and response.json()["field"] == "csrf_token"
        http.cookies.clear()
        response = await http.post("/login", data={"username": "a1", "password": PASSWORD})
        assert response.status_code == 403 and "arrears_session" not in response.headers.get("set-cookie", "")


async def test_repeated_failed_log_ins_lock_the_account(desk: Desk) -> None:
    await desk.store.add_user("locky", "agent", password=PASSWORD)
    async with browser(desk) as http:
        for _ in range(4):
            assert (await log_in(http, "locky", "wrong")).status_code == 401
        locked = await log_in(http, "locky", "wrong")
        assert locked.status_code == 401
        user = await desk.store.user("locky")
        assert user is not None and user.locked_until is not None
        # Even the right password is refused while the lock lasts.
        assert (await log_in(http, "locky")).status_code == 401
        # Another user is not affected. The answers never tell a locked account, a wrong password
        # and an unknown name apart (that would tell which accounts exist).
        assert (await log_in(http, "a2")).status_code == 303
        unknown = await log_in(http, "nobody-here", "x")
        assert unknown.status_code == 401 and unknown.json()["reason"] == locked.json()["reason"]


async def test_a_good_log_in_resets_the_count_of_failures(desk: Desk) -> None:
    await desk.store.add_user("forgetful", "agent", password=PASSWORD)
    async with browser(desk) as http:
        for _ in range(4):
            assert (await log_in(http, "forgetful", "wrong")).status_code == 401
        assert (await log_in(http, "forgetful")).status_code == 303
        for _ in range(4):
            assert (await log_in(http, "forgetful", "wrong")).status_code == 401
        assert (await log_in(http, "forgetful")).status_code == 303


async def test_an_idle_session_expires(desk: Desk) -> None:
    import asyncio

    impatient = create_app(CaseDesk(desk.desk.client, desk.desk.policy, desk.store, desk.desk.ledger,
                                    DeskSettings(base=desk.desk.settings.base, session_idle=timedelta(seconds=1))))
    async with browser(desk, impatient) as http:
        assert (await log_in(http, "s1")).status_code == 303
        assert (await http.get("/api/v1/me")).status_code == 200
        await asyncio.sleep(1.3)
        assert (await http.get("/api/v1/me")).status_code == 401


async def test_passwords_are_stored_as_argon2id_and_tokens_as_hashes(desk: Desk) -> None:
    from sqlalchemy import select

    from desk.schema import desk_tokens, desk_users

    async with desk.store.ledger.engine.connect() as connection:
        stored = (await connection.execute(select(desk_users.c.password_hash).where(desk_users.c.name == "a1"))).scalar()
        secrets = [row.secret_sha256 for row in await connection.execute(select(desk_tokens))]
    assert stored.startswith("$argon2id$") and PASSWORD not in stored
    assert all(desk.tokens["a1"].split("_", 2)[2] not in s for s in secrets) and all(len(s) == 64 for s in secrets)
