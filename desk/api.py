"""The desk's HTTP API (``/api/v1``, OpenAPI at ``/api/v1/openapi.json``) and its log-in pages.

Callers authenticate with ``Authorization: Bearer <token>`` (systems, scripts, the ``arrears``
command) or a browser session cookie (HttpOnly, SameSite=Strict); a session's unsafe requests
carry its CSRF token in ``X-CSRF-Token`` (forms: a ``csrf_token`` field).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from desk.cases import CaseDesk, Done, Refused
from desk.policy import Identity, identity_fields
from desk.reports import Figures, performance_scope, refuse_kpis, team_totals, window
from desk.store import LoginRefused
from domain.commands import COMMANDS

SESSION_COOKIE = "arrears_session"
LOGIN_CSRF_COOKIE = "arrears_login_csrf"
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
QUEUE_PATTERN = "^(calls|visits|legal|supervisor)$"
PROBLEM = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Problem"}}}}
ERRORS = {str(code): {"description": text, **PROBLEM} for code, text in (
    (400, "Malformed request, or a field the desk sets itself"), (401, "No valid credentials"),
    (403, "The caller's role may not do this"), (404, "No such case, item or approval"),
    (409, "The case is closed, or no longer wants this"), (413, "The body is too large"),
    (422, "A field breaks a rule: `field` names it, `reason` says why"))}


def problem(status: int, reason: str, field: str = "", headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"status": status, "field": field or None, "reason": reason}, status_code=status,
                        headers=headers)


class BodyLimit:
    """Refuse a body over ``limit`` bytes (413) before anyone parses it."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.limit):
            await problem(413, f"the body is larger than {self.limit} bytes")(scope, receive, send)
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise _TooLarge()
            return message

        try:
            await self.app(scope, counted, send)
        except _TooLarge:
            await problem(413, f"the body is larger than {self.limit} bytes")(scope, receive, send)


class _TooLarge(Exception):
    pass


def create_app(desk: CaseDesk) -> FastAPI:
    from desk.web import add_workbench, local_path, login_page_html  # the workbench imports this module

    settings, store = desk.settings, desk.store
    app = FastAPI(title="Arrears desk", version="1", openapi_url="/api/v1/openapi.json", docs_url=None,
                  redoc_url=None, description=__doc__)
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)

    @app.exception_handler(Refused)
    async def _refused(request: Request, err: Refused) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if err.status == 401 else None
        return problem(err.status, err.reason, err.field, headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, err: RequestValidationError) -> JSONResponse:
        first = err.errors()[0]
        where = [str(p) for p in first.get("loc", ()) if p not in ("query", "path", "body", "header")]
        return problem(422, first.get("msg", "invalid"), ".".join(where))

    async def caller(request: Request) -> Identity:
        header = request.headers.get("authorization")
        if header is not None:
            scheme, _, token = header.partition(" ")
            identity = await store.token_identity(token.strip()) if scheme.lower() == "bearer" else None
            if identity is None:
                raise Refused(401, "the bearer token is unknown, revoked or malformed")
            return identity
        cookie = request.cookies.get(SESSION_COOKIE)
        session = await store.session(cookie, settings.session_idle) if cookie else None
        if session is None:
            raise Refused(401, "log in, or send Authorization: Bearer <token>")
        if request.method not in SAFE_METHODS:
            sent = request.headers.get("x-csrf-token", "")
            if not secrets.compare_digest(sent, session.csrf_token):
                raise Refused(403, "the CSRF token is missing or wrong (send X-CSRF-Token)", "X-CSRF-Token")
        return session.identity

    async def json_body(request: Request) -> Any:
        raw = await request.body()
        if not raw:
            return {}
        try:
            return json.loads(raw)
        except (ValueError, UnicodeDecodeError) as err:
            raise Refused(400, f"the body is not JSON: {err}") from None
        except RecursionError:
            raise Refused(400, "the body is nested too deeply") from None

    def answer(done: Done) -> JSONResponse:
        return JSONResponse(done.body, status_code=done.status)

    # -- who am I -----------------------------------------------------------------------------
    @app.get("/api/v1/me", tags=["identity"], responses=ERRORS)
    async def me(request: Request) -> dict[str, Any]:
        """The authenticated caller, its role and what the role may do."""
        identity = await caller(request)
        role = desk.policy.role(identity)
        body: dict[str, Any] = {"name": identity.name, "role": identity.role, "team": identity.team,
                                "via": identity.via, "commands": sorted(role.commands),
                                "queues": sorted(role.queues), "approves": role.approves}
        if identity.via == "session":
            session = await store.session(request.cookies[SESSION_COOKIE], settings.session_idle)
            body["csrf_token"] = session.csrf_token if session else None
        return body

    @app.get("/api/v1/users", tags=["identity"], responses=ERRORS)
    async def users(request: Request) -> dict[str, Any]:
        """The desk's users with their roles and teams (administrators only; no secrets)."""
        identity = await caller(request)
        if not desk.policy.role(identity).manages_users:
            raise Refused(403, f"role {identity.role} does not manage users")
        return {"users": [{"name": u.name, "role": u.role, "team": u.team, "active": u.active,
                           "locked_until": u.locked_until.isoformat() if u.locked_until else None,
                           "logs_in_with": "password" if u.has_password else "identity provider"}
                          for u in await store.users()]}

    # -- cases --------------------------------------------------------------------------------
    @app.get("/api/v1/cases/{loan_id}", tags=["cases"], responses=ERRORS)
    async def case(loan_id: str, request: Request) -> dict[str, Any]:
        """The case's status; the borrower's contact details in clear only for roles that need them."""
        return await desk.case(await caller(request), loan_id)

    @app.get("/api/v1/cases/{loan_id}/private-reasons", tags=["cases"], responses=ERRORS)
    async def private_reasons(loan_id: str, request: Request) -> dict[str, Any]:
        """The hardship, dispute and hold reasons people wrote on the case, decrypted (compliance
        only; each reading is logged). A reason that cannot be read says why (``unreadable``)."""
        return {"loan_id": loan_id, "reasons": await desk.private_reasons(await caller(request), loan_id)}

    @app.get("/api/v1/access-log", tags=["cases"], responses=ERRORS)
    async def access_log(request: Request, loan_id: str | None = Query(None, max_length=64),
                         user: str | None = Query(None, max_length=64),
                         limit: int = Query(100, ge=1, le=1000)) -> dict[str, Any]:
        """Who saw which borrower's personal data, and when (newest first)."""
        return {"entries": await desk.access_log(await caller(request), loan_id=loan_id, user=user, limit=limit)}

    def command_route(name: str) -> Callable[..., Awaitable[Response]]:
        async def send(loan_id: str, request: Request) -> Response:
            identity = await caller(request)
            return answer(await desk.command(identity, loan_id, name, await json_body(request)))

        send.__name__ = f"command_{name}"
        send.__doc__ = (COMMANDS[name].__doc__ or name).strip().splitlines()[0] if COMMANDS[name].__doc__ else (
            f"Send {name} to the case.")
        return send

    for name in sorted(COMMANDS):
        app.post(f"/api/v1/cases/{{loan_id}}/{name}", tags=["commands"], name=name,
                 openapi_extra={"requestBody": {"required": True, "content": {"application/json": {
                     "schema": {"$ref": f"#/components/schemas/{_schema_name(name)}"}}}}},
                 responses={"200": {"description": "Applied: the case's new status"},
                            "202": {"description": "Waits for a second supervisor's approval"}, **ERRORS},
                 )(command_route(name))

    # -- approvals ----------------------------------------------------------------------------
    @app.get("/api/v1/approvals", tags=["approvals"], responses=ERRORS)
    async def approvals(request: Request, state: str | None = Query("pending", pattern=(
            "^(pending|approving|applied|failed|rejected|expired)$"))) -> dict[str, Any]:
        """Approvals (pending by default), each with what it gives up and why."""
        return {"approvals": await desk.approvals(await caller(request), state)}

    @app.post("/api/v1/approvals/{approval_id}/approve", tags=["approvals"], responses=ERRORS)
    async def approve(approval_id: str, request: Request) -> Response:
        identity = await caller(request)
        return answer(await desk.approve(identity, approval_id))

    @app.post("/api/v1/approvals/{approval_id}/reject", tags=["approvals"], responses=ERRORS,
              openapi_extra={"requestBody": {"required": False, "content": {"application/json": {"schema": {
                  "type": "object", "properties": {"reason": {"type": "string", "maxLength": 500}},
                  "additionalProperties": False}}}}})
    async def reject(approval_id: str, request: Request) -> Response:
        identity = await caller(request)
        body = await json_body(request)
        reason = body.get("reason") if isinstance(body, dict) else None
        if reason is not None and (not isinstance(reason, str) or len(reason) > 500):
            raise Refused(422, "must be text of at most 500 characters", "reason")
        return answer(await desk.reject(identity, approval_id, reason))

    # -- work ---------------------------------------------------------------------------------
    @app.get("/api/v1/work", tags=["work"], responses=ERRORS)
    async def work(request: Request, queue: str = Query(..., pattern=QUEUE_PATTERN),
                   limit: int = Query(50, ge=1, le=500), after: str | None = Query(None, max_length=200)
                   ) -> dict[str, Any]:
        """The caller's open work on a queue, due first; ``next`` pages on (``after=``). A call task says
        when the agent may dial (``callable_from``/``callable_until`` in UTC, ``*_local`` on the borrower's
        clock) and ``callable_now``; one outside its window keeps its place in the order, flagged."""
        return await desk.work(await caller(request), queue, limit, after)

    @app.post("/api/v1/work/{item_id}/outcome", tags=["work"], responses=ERRORS,
              openapi_extra={"requestBody": {"required": True, "content": {"application/json": {
                  "schema": {"$ref": "#/components/schemas/WorkOutcome"}}}}})
    async def outcome(item_id: str, request: Request) -> Response:
        identity = await caller(request)
        return answer(await desk.report(identity, item_id, await json_body(request)))

    # -- payments -----------------------------------------------------------------------------
    @app.post("/api/v1/payments", tags=["payments"], responses=ERRORS,
              openapi_extra={"requestBody": {"required": True, "content": {"application/json": {
                  "schema": {"$ref": "#/components/schemas/PaymentBatch"}}}}})
    async def payments(request: Request) -> Response:
        """Payment events from the core banking system, each applied once by its reference."""
        identity = await caller(request)
        return answer(await desk.payments(identity, await json_body(request)))

    # -- reports: the KPIs and the agents' performance (desk/reports.py says who sees what) -------
    figures = app.state.figures = Figures(settings.base.ledger_url)
    window_params = {"from": "the window's first day (default: 90 days before `to`)",
                     "to": "the first day after the window, not counted (default: tomorrow, UTC)"}

    @app.get("/api/v1/reports/kpis", tags=["reports"], responses=ERRORS)
    async def kpis(request: Request, start: str | None = Query(None, alias="from", description=window_params["from"]),
                   end: str | None = Query(None, alias="to", description=window_params["to"]),
                   by: str = Query("", max_length=200, description="dimensions, comma-separated (strategy, grade, ...)"),
                   period: str = Query("month", pattern="^(day|week|month)$"),
                   format: str = Query("json", pattern="^(json|csv)$")) -> Response:
        """The collection KPIs of a window, by dimensions (docs/kpis.md defines each); JSON with the
        champion/challenger comparison when by strategy, or long CSV. For the roles that oversee the
        portfolio."""
        from reports import render

        identity = await caller(request)
        refuse_kpis(identity, desk.policy.role(identity))
        chosen = window({"from": start, "to": end, "by": by, "period": period})
        report = await figures.report(chosen)
        if format == "csv":
            return Response(render.to_csv(report), media_type="text/csv; charset=utf-8")
        return Response(render.to_json(report, await figures.comparison(chosen)), media_type="application/json")

    @app.get("/api/v1/reports/agents", tags=["reports"], responses=ERRORS)
    async def agents(request: Request, start: str | None = Query(None, alias="from", description=window_params["from"]),
                     end: str | None = Query(None, alias="to", description=window_params["to"]),
                     team: str | None = Query(None, max_length=64), format: str = Query("json", pattern="^(json|csv)$")
                     ) -> Response:
        """Each agent's worked items, contacts, right-party contacts, promises (kept, and their amount)
        and amount collected in a window: everyone's for supervisors, compliance and administrators
        (``team`` narrows it), an agent's own row for an agent."""
        from reports import render

        identity = await caller(request)
        only = performance_scope(identity, desk.policy.role(identity))
        chosen = window({"from": start, "to": end})
        rows = await figures.performance(chosen.start, chosen.end, only, "" if only else team or "")
        if format == "csv":
            return Response(render.agents_csv(rows), media_type="text/csv; charset=utf-8")
        body = {"from": chosen.start.isoformat(), "to": chosen.end.isoformat(),
                "scope": "everyone" if only is None else "own", "agents": render.plain(rows)}
        if only is None:
            body["teams"] = render.plain(team_totals(rows))
        return JSONResponse(body)

    # -- browser log-in (the workbench builds on these) -----------------------------------------
    @app.get("/login", include_in_schema=False)
    async def login_page(request: Request, error: str | None = None) -> HTMLResponse:
        token = request.cookies.get(LOGIN_CSRF_COOKIE) or secrets.token_urlsafe(24)
        page = HTMLResponse(login_page_html(request, token, error))
        page.set_cookie(LOGIN_CSRF_COOKIE, token, httponly=True, samesite="strict", secure=settings.secure_cookies)
        return page

    @app.post("/login", include_in_schema=False)
    async def login(request: Request) -> Response:
        form = await request.form()
        expected = request.cookies.get(LOGIN_CSRF_COOKIE, "")
        if not expected or not secrets.compare_digest(str(form.get("csrf_token", "")), expected):
            raise Refused(403, "the form's CSRF token is missing or wrong; reload the log-in page", "csrf_token")
        try:
            user = await store.login(str(form.get("username", "")), str(form.get("password", "")),
                                     lockout_after=settings.lockout_after, lockout_for=settings.lockout_for)
        except LoginRefused as err:
            # The same answer whether the name exists, the password is wrong or the account is
            # locked: a log-in form must not tell which accounts exist (users list shows locks).
            if "text/html" in request.headers.get("accept", ""):  # a person at the form: the form again
                return HTMLResponse(login_page_html(request, expected, str(err)), status_code=401)
            return problem(401, str(err))
        session_id, csrf = await store.open_session(user, settings.session_longest)
        response = RedirectResponse(local_path(form.get("next")) or "/api/v1/me", status_code=303)
        response.set_cookie(SESSION_COOKIE, session_id, httponly=True, samesite="strict",
                            secure=settings.secure_cookies, max_age=int(settings.session_longest.total_seconds()))
        response.delete_cookie(LOGIN_CSRF_COOKIE)
        return response

    @app.post("/logout", include_in_schema=False)
    async def logout(request: Request) -> Response:
        identity = await caller(request)  # a session's CSRF token is required: nobody can log another out
        if identity.via != "session":
            raise Refused(400, "log-out ends a browser session; revoke a token with `python -m desk tokens revoke`")
        await store.end_session(request.cookies[SESSION_COOKIE])
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE)
        return response

    @app.get("/healthz", include_in_schema=False)
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    _document_schemas(app)
    add_workbench(app, desk)
    return app


def _schema_name(command: str) -> str:
    return f"{COMMANDS[command].__name__}Request"


def _document_schemas(app: FastAPI) -> None:
    """Put each command's request body (without the fields the desk sets) in the OpenAPI components."""
    from desk.cases import PaymentBatch, WorkOutcome

    base = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        document = base()
        schemas = document.setdefault("components", {}).setdefault("schemas", {})
        template = "#/components/schemas/{model}"
        for name, model in COMMANDS.items():
            schema = model.model_json_schema(ref_template=template)
            schemas.update(schema.pop("$defs", {}))
            for field in identity_fields(name):
                schema["properties"].pop(field, None)
                if field in schema.get("required", []):
                    schema["required"].remove(field)
            if name == "propose_arrangement":
                schema["properties"]["justification"] = {"type": "string", "maxLength": 500,
                                                         "description": "why (shown to the approver)"}
            schemas[_schema_name(name)] = schema
        for model in (PaymentBatch, WorkOutcome):
            schema = model.model_json_schema(ref_template=template)
            schemas.update(schema.pop("$defs", {}))
            schemas[model.__name__] = schema
        schemas["Problem"] = {"type": "object", "required": ["status", "reason"], "properties": {
            "status": {"type": "integer"}, "field": {"type": ["string", "null"]}, "reason": {"type": "string"}}}
        document.setdefault("components", {})["securitySchemes"] = {
            "bearer": {"type": "http", "scheme": "bearer"},
            "session": {"type": "apiKey", "in": "cookie", "name": SESSION_COOKIE}}
        document["security"] = [{"bearer": []}, {"session": []}]
        app.openapi_schema = document
        return document

    app.openapi = openapi  # type: ignore[method-assign]
