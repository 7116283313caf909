"""The web workbench: server-rendered pages over the same CaseDesk calls the API makes.

Only browser sessions open these pages (a bearer token opens none of them); without a live
session a page sends the browser to /login. Every form carries the session's CSRF token as a
field, and every form handler checks it before anything else. Templates autoescape whatever
they show; the desk's own CSS and JavaScript come from /static, and the Content-Security-Policy
allows nothing inline and nothing from elsewhere. A borrower's contact details reach a page only
through ``CaseDesk.case``, which writes the access log whenever it shows them in clear.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import json
import re
import secrets
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fastapi import Depends, FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader
from starlette.datastructures import FormData
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from desk.api import SESSION_COOKIE
from desk.cases import REOPENS, REPORTS, CaseDesk, Refused
from desk.forms import CommandForm, command_forms, form_body
from desk.i18n import COOKIE, LANGUAGES, Translate, language, translator
from desk.policy import Identity, Role
from desk.reports import (
    Figures, Window, performance_scope, refuse_kpis, sees_everyones_performance, sees_own_performance, team_totals,
    window,
)
from desk.store import REFUSED, Session
from domain.commands import COMMANDS
from domain.strategy import CALL_OUTCOMES, VISIT_OUTCOMES
from reports.charts import REPORT_CHARTS
from reports.kpis import PERIODS

HERE = Path(__file__).parent
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; object-src 'none'; "
       "base-uri 'none'; frame-ancestors 'none'; form-action 'self'")
SECURITY_HEADERS = [(b"content-security-policy", CSP.encode()), (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"same-origin")]
OUTCOMES = {"calls": CALL_OUTCOMES, "visits": VISIT_OUTCOMES}
PAGE_SIZE = 25
APPROVAL_STATES = ("pending", "applied", "rejected", "expired", "failed")
LOAN_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")  # as intake admits them
# The dimensions the portfolio's KPI charts may be grouped by (the first one makes the bars).
KPI_DIMENSIONS = ("strategy", "arm", "segment", "grade", "product", "jurisdiction", "stage", "team", "currency",
                  "period")


class SecurityHeaders:
    """Put the CSP, nosniff and the referrer policy on every response, whoever made it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        ours = {name for name, _ in SECURITY_HEADERS}

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                kept = [(k, v) for k, v in message.get("headers", []) if k.lower() not in ours]
                message = {**message, "headers": kept + SECURITY_HEADERS}
            await send(message)

        await self.app(scope, receive, with_headers)


def local_path(target: object) -> str | None:
    """``target`` if it is a path on this site (never another host: no open redirect)."""
    text = str(target or "")
    # Browsers drop tabs and line breaks from a URL ("/\t/evil.example" is "//evil.example"): none allowed.
    if text.startswith("/") and not text.startswith(("//", "/\\")) and not any(c < " " or c == "\x7f" for c in text):
        return text
    return None


# -- templates --------------------------------------------------------------------------------
def _when(value: object) -> str:
    if value in (None, ""):
        return ""
    if isinstance(value, str):
        if len(value) == 10:  # a day: shown as it is
            return value
        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return value
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M")
    return value.isoformat() if isinstance(value, date) else str(value)


def _amount(value: object, currency: str = "") -> str:
    try:
        shown = f"{Decimal(str(value)):,.2f}"
    except (InvalidOperation, ValueError):
        shown = str(value or "")
    return f"{shown} {currency}".strip()


def _amounts(by_currency: object) -> str:
    if not isinstance(by_currency, dict) or not by_currency:
        return "–"
    return " · ".join(_amount(value, currency) for currency, value in sorted(by_currency.items()))


def _detail(detail: object) -> str:
    if not isinstance(detail, dict):
        return "" if detail is None else str(detail)
    return " · ".join(f"{key}: {json.dumps(value, ensure_ascii=False) if isinstance(value, (dict, list)) else value}"
                      for key, value in detail.items() if value not in (None, "", [], {}))


def _share(value: object) -> str:
    try:
        return f"{Decimal(str(value)) * 100:.2f}%"
    except (InvalidOperation, ValueError):
        return str(value)


TEMPLATES = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=True, trim_blocks=True,
                        lstrip_blocks=True)
TEMPLATES.filters.update(when=_when, amount=_amount, amounts=_amounts, detail=_detail, share=_share)


def login_page_html(request: Request, csrf: str, error: str | None) -> str:
    """The log-in form (desk.api serves it at /login and posts it there)."""
    lang = language(request.cookies.get(COOKIE), request.headers.get("accept-language"))
    t = translator(lang)
    # Only the desk's own refusal is shown: text from a query string would let anyone put words on the page.
    message = t("login.refused") if error == REFUSED else None
    back = local_path(request.query_params.get("next")) or "/"
    return TEMPLATES.get_template("login.html").render(
        t=t, lang=lang, csrf=csrf, error=message, next=back, languages=LANGUAGES,
        path=quote(f"/login?next={quote(back, safe='/')}", safe="/"),
        oidc=any(getattr(route, "path", "") == "/login/oidc" for route in request.app.routes))


# -- pages ------------------------------------------------------------------------------------
@dataclass
class Page:
    """Who is looking, in which language: what every page and form handler starts from."""

    request: Request
    session: Session
    role: Role
    lang: str
    t: Translate
    form: FormData | None = None

    @property
    def identity(self) -> Identity:
        return self.session.identity


class _LogIn(Exception):
    def __init__(self, back: str) -> None:
        super().__init__(back)
        self.back = back


async def current_page(request: Request) -> Page:
    """The page's viewer from the session cookie (never a bearer token); to /login without one."""
    desk: CaseDesk = request.app.state.desk
    cookie = request.cookies.get(SESSION_COOKIE)
    session = await desk.store.session(cookie, desk.settings.session_idle) if cookie else None
    if session is None:
        back = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise _LogIn(back if request.method == "GET" else "/")
    lang = language(request.cookies.get(COOKIE), request.headers.get("accept-language"))
    page = Page(request, session, desk.policy.role(session.identity), lang, translator(lang))
    request.state.page = page  # a refusal from here on is answered as a page, not as JSON
    return page


async def posted_form(request: Request, page: Annotated[Page, Depends(current_page)]) -> Page:
    """``current_page`` with its posted form, once the form's CSRF token is the session's."""
    form = await request.form()
    if not secrets.compare_digest(str(form.get("csrf_token", "")), page.session.csrf_token):
        raise Refused(403, "the form's CSRF token is missing or wrong", "csrf_token")
    page.form = form
    return page


ViewingPage = Annotated[Page, Depends(current_page)]
PostedForm = Annotated[Page, Depends(posted_form)]


def add_workbench(app: FastAPI, desk: CaseDesk) -> None:
    """Mount the workbench's pages, its static files and the security headers on the desk's app."""
    settings, store = desk.settings, desk.store
    app.state.desk = desk
    app.add_middleware(SecurityHeaders)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    answer_as_json = app.exception_handlers[Refused]

    @app.exception_handler(_LogIn)
    async def _to_login(request: Request, err: _LogIn) -> Response:
        return RedirectResponse(f"/login?next={quote(err.back, safe='/')}", status_code=303)

    @app.exception_handler(Refused)
    async def _refused(request: Request, err: Refused) -> Response:
        page = getattr(request.state, "page", None)
        if page is None:
            return await answer_as_json(request, err)
        return render(page, "error.html", status=err.status, err=err,
                      title=page.t(f"error.{err.status}", default=page.t("error.5xx" if err.status >= 500
                                                                         else "error.title")),
                      reason=page.t("error.csrf") if err.field == "csrf_token" else err.reason)

    def nav(page: Page) -> list[tuple[str, str]]:
        links = []
        if page.role.queues:
            links.append(("/queue", page.t("nav.queue")))
        if page.role.approves or "propose_arrangement" in page.role.commands:
            links.append(("/approvals", page.t("nav.approvals")))
        if page.role.cases == "all":
            links.append(("/portfolio", page.t("nav.portfolio")))
        if sees_everyones_performance(page.role) or sees_own_performance(page.role):
            links.append(("/performance", page.t("nav.performance")))
        if page.role.reads_access_log:
            links.append(("/access-log", page.t("nav.access_log")))
        return links

    def render(page: Page, template: str, status: int = 200, back: str | None = None, **values: Any) -> HTMLResponse:
        """``template`` for ``page``'s viewer; ``back`` is where the language switch returns to (by
        default this page, or for a form's answer the home page)."""
        request = page.request
        if back is None:
            here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            back = here if request.method == "GET" else "/"
        html = TEMPLATES.get_template(template).render(
            t=page.t, lang=page.lang, me=page.identity, role=page.role, csrf=page.session.csrf_token,
            nav=nav(page), here=request.url.path, path=quote(back, safe="/"), languages=LANGUAGES, **values)
        # Pages can carry a borrower's details: never kept by the browser or a proxy.
        return HTMLResponse(html, status_code=status, headers={"Cache-Control": "no-store"})

    def see_other(url: str) -> RedirectResponse:
        return RedirectResponse(url, status_code=303)

    # -- home, language, log-out --------------------------------------------------------------
    @app.get("/", include_in_schema=False)
    async def home(page: ViewingPage) -> Response:
        links = nav(page)
        if links:
            return see_other(links[0][0])
        return render(page, "home.html")

    @app.get("/language/{lang}", include_in_schema=False)
    async def switch_language(lang: str, next: str = "/") -> Response:
        response = see_other(local_path(next) or "/")
        if lang in LANGUAGES:
            response.set_cookie(COOKIE, lang, max_age=365 * 24 * 3600, httponly=True, samesite="lax",
                                secure=settings.secure_cookies)
        return response

    @app.post("/sign-out", include_in_schema=False)
    async def sign_out(request: Request, page: PostedForm) -> Response:
        await store.end_session(request.cookies[SESSION_COOKIE])
        response = see_other("/login")
        response.delete_cookie(SESSION_COOKIE)
        return response

    # -- my queue -----------------------------------------------------------------------------
    async def queue_page(page: Page, queue: str | None, after: str | None, *, status: int = 200,
                         error: str | None = None) -> HTMLResponse:
        queues = [q for q in ("calls", "visits", "legal", "supervisor") if q in page.role.queues]
        if not queues:
            raise Refused(403, f"role {page.identity.role} works no queue")
        queue = queue if queue in queues else queues[0]
        work = await desk.work(page.identity, queue, PAGE_SIZE, after)
        command = REPORTS.get(queue)
        outcomes = OUTCOMES.get(queue, ()) if command and command in page.role.commands else ()
        recorded = page.request.query_params.get("recorded")
        flash = None
        if recorded in CALL_OUTCOMES + VISIT_OUTCOMES:
            loan = page.request.query_params.get("loan", "")
            flash = page.t("queue.recorded", outcome=page.t(f"outcome.{recorded}", default=recorded),
                           loan=loan if LOAN_ID.match(loan) else "")
        items = [{**item, "local_time": _local_time(item.get("timezone")),
                  "window_local": _span(item.get("callable_from_local"), item.get("callable_until_local")),
                  "window_utc": _span(item.get("callable_from"), item.get("callable_until"))} for item in work["items"]]
        return render(page, "queue.html", status=status, back=f"/queue?queue={queue}", queues=queues, queue=queue,
                      items=items, attempts=any(item.get("attempt") for item in items), next_cursor=work["next"],
                      paged=bool(after), outcomes=outcomes, flash=flash, error=error)

    @app.get("/queue", include_in_schema=False)
    async def my_queue(page: ViewingPage, queue: str | None = None, after: str | None = None) -> Response:
        return await queue_page(page, queue, after)

    @app.post("/work/{item_id}/outcome", include_in_schema=False)
    async def record_outcome(item_id: str, page: PostedForm) -> Response:
        assert page.form is not None
        queue = str(page.form.get("queue", ""))
        body: dict[str, Any] = {"outcome": str(page.form.get("outcome", ""))}
        note = str(page.form.get("note", "")).strip()
        if note:
            body["note"] = note
        dials = str(page.form.get("dials", "")).strip()
        if dials:
            body["dials"] = dials
        try:
            done = await desk.report(page.identity, item_id, body)
        except Refused as err:
            return await queue_page(page, queue, None, status=err.status,
                                    error=f"{err.field}: {err.reason}" if err.field else err.reason)
        loan = done.body["item"]["loan_id"]
        return see_other(f"/queue?queue={quote(queue)}&recorded={quote(body['outcome'])}&loan={quote(loan)}")

    # -- the case page ------------------------------------------------------------------------
    async def case_page(page: Page, loan_id: str, *, reveal: bool = False, failed: CommandForm | None = None,
                        status: int = 200, private: bool = False) -> HTMLResponse:
        case = await desk.case(page.identity, loan_id, reveal=reveal, via="web",
                               what="revealed" if reveal else "viewed")
        # What people wrote about the borrower's circumstances: compliance asks for it, and it is logged.
        reasons = await desk.private_reasons(page.identity, loan_id, via="web") if private else None
        trail = await desk.ledger.events(loan_id)
        attempts = await desk.ledger.attempts(loan_id)
        # A closed case takes no commands, but a case a payment cured is reopened if that payment comes back.
        forms = command_forms(page.role.commands if not case.get("outcome") else
                              page.role.commands & REOPENS if case["outcome"] == "cured" else set(), failed)
        query = page.request.query_params
        flash = None
        if query.get("sent") in page.role.commands:
            flash = page.t("case.sent", command=page.t(f"command.{query['sent']}", default=query["sent"]))
        elif re.fullmatch(r"[0-9a-f]{16}", query.get("waiting", "")):
            flash = page.t("case.waiting", approval=query["waiting"])
        messages = [_message(attempt, settings.base.data_dir, reveal) for attempt in reversed(attempts)]
        return render(page, "case.html", status=status, back=f"/cases/{loan_id}", case=case, loan_id=loan_id,
                      reveal=reveal, timeline=list(reversed(trail))[:300], messages=messages, forms=forms,
                      letters_for_role={"name", "address"} <= page.role.contact_details, flash=flash,
                      private_reasons=reasons, reads_private=page.role.reads_private_reasons)

    @app.get("/cases", include_in_schema=False)
    async def look_up(page: ViewingPage, loan_id: str = "") -> Response:
        loan_id = loan_id.strip()
        if not LOAN_ID.match(loan_id):
            raise Refused(404, f"{loan_id!r} is not a loan ID", "loan_id")
        return see_other(f"/cases/{quote(loan_id)}")

    @app.get("/cases/{loan_id}", include_in_schema=False)
    async def show_case(loan_id: str, page: ViewingPage) -> Response:
        return await case_page(page, loan_id)

    @app.post("/cases/{loan_id}/reveal", include_in_schema=False)
    async def reveal(loan_id: str, page: PostedForm) -> Response:
        return await case_page(page, loan_id, reveal=True)

    @app.post("/cases/{loan_id}/private-reasons", include_in_schema=False)
    async def read_private_reasons(loan_id: str, page: PostedForm) -> Response:
        return await case_page(page, loan_id, private=True)

    @app.post("/cases/{loan_id}/commands/{command}", include_in_schema=False)
    async def send_command(loan_id: str, command: str, page: PostedForm) -> Response:
        assert page.form is not None
        if command not in COMMANDS:
            raise Refused(404, f"unknown command {command!r}", "command")
        [form] = command_forms({command})
        try:
            done = await desk.command(page.identity, loan_id, command, form_body(form, page.form))
        except Refused as err:
            if err.status not in (400, 403, 409, 422) or command not in page.role.commands:
                raise  # not a form this user was shown: the refusal is the page
            return await case_page(page, loan_id, failed=form.refused(page.form, err), status=err.status)
        if done.status == 202:
            return see_other(f"/cases/{quote(loan_id)}?waiting={quote(done.body['approval']['approval_id'])}")
        return see_other(f"/cases/{quote(loan_id)}?sent={quote(command)}")

    @app.get("/cases/{loan_id}/letters/{attempt_id}", include_in_schema=False)
    async def letter(loan_id: str, attempt_id: int, page: ViewingPage) -> Response:
        if not {"name", "address"} <= page.role.contact_details:
            raise Refused(403, f"the letter carries the borrower's name and address, which role "
                               f"{page.identity.role} does not see")
        await desk.case(page.identity, loan_id, reveal=False)  # may this user open the case at all?
        attempt = next((a for a in await desk.ledger.attempts(loan_id)
                        if a["id"] == attempt_id and a["channel"] == "letter"), None)
        path = kept_file(settings.base.data_dir, attempt["location"]) if attempt else None
        if path is None or path.suffix != ".pdf":
            raise Refused(404, f"no letter {attempt_id} for loan {loan_id}")
        await desk.case(page.identity, loan_id, reveal=True, via="web", what="letter")  # logged
        name = re.sub(r"[^A-Za-z0-9._-]", "_", f"{loan_id}-letter-{attempt_id}.pdf")
        return FileResponse(path, media_type="application/pdf", headers={
            "Content-Disposition": f'inline; filename="{name}"', "Cache-Control": "no-store"})

    # -- approvals ----------------------------------------------------------------------------
    async def approvals_page(page: Page, state: str | None, *, status: int = 200,
                             error: str | None = None) -> HTMLResponse:
        state = state if state in APPROVAL_STATES else "pending"
        listed = await desk.approvals(page.identity, state)
        query = page.request.query_params
        flash = None
        if query.get("done") in ("approved", "rejected") and re.fullmatch(r"[0-9a-f]{16}", query.get("id", "")):
            flash = page.t(f"approvals.{query['done']}", approval=query["id"])
        return render(page, "approvals.html", status=status, back=f"/approvals?state={state}", approvals=listed,
                      state=state, states=APPROVAL_STATES, flash=flash, error=error)

    @app.get("/approvals", include_in_schema=False)
    async def approvals(page: ViewingPage, state: str | None = None) -> Response:
        return await approvals_page(page, state)

    @app.post("/approvals/{approval_id}/{decision}", include_in_schema=False)
    async def decide(approval_id: str, decision: str, page: PostedForm) -> Response:
        assert page.form is not None
        if decision not in ("approve", "reject"):
            raise Refused(404, f"no decision {decision!r}")
        try:
            if decision == "approve":
                await desk.approve(page.identity, approval_id)
            else:
                reason = str(page.form.get("reason", "")).strip()[:500] or None
                await desk.reject(page.identity, approval_id, reason)
        except Refused as err:
            return await approvals_page(page, "pending", status=err.status, error=err.reason)
        done = "approved" if decision == "approve" else "rejected"
        return see_other(f"/approvals?done={done}&id={quote(approval_id)}")

    # -- portfolio and access log -------------------------------------------------------------
    figures: Figures = getattr(app.state, "figures", None) or Figures(settings.base.ledger_url)
    app.state.figures = figures

    @app.get("/portfolio", include_in_schema=False)
    async def portfolio(page: ViewingPage) -> Response:
        """Where the cases stand now (the book), and the KPIs of a window (default: the last 90 days)
        as charts, each an image of its own: the page answers without waiting for the ledger's events."""
        refuse_kpis(page.identity, page.role)
        chosen = window(page.request.query_params)
        try:
            from desk.portfolio import portfolio as standing
        except ImportError:
            return render(page, "portfolio.html", figures=None, window=chosen, **_kpi_choices())
        return render(page, "portfolio.html", figures=_with_bars(await standing(desk.ledger)), window=chosen,
                      charts=[(name, page.t(f"chart.{name}")) for name in REPORT_CHARTS], **_kpi_choices())

    @app.get("/portfolio/charts/{name}.svg", include_in_schema=False)
    async def portfolio_chart(name: str, page: ViewingPage) -> Response:
        refuse_kpis(page.identity, page.role)
        if name not in REPORT_CHARTS:
            raise Refused(404, f"no chart {name!r}")
        chosen = window(page.request.query_params)
        return _svg(await figures.chart(name, chosen))

    @app.get("/portfolio/report.html", include_in_schema=False)
    async def portfolio_report(page: ViewingPage) -> Response:
        """The KPIs of the window as the self-contained HTML report, to download: it carries its own
        styles, which this site's CSP would not run inline."""
        refuse_kpis(page.identity, page.role)
        chosen = window(page.request.query_params)
        from reports.html import to_html
        report = await figures.report(chosen)
        agents = await figures.agents(chosen.start, chosen.end) if performance_scope(page.identity, page.role) is None \
            else None
        html = await asyncio.to_thread(to_html, report, comparison=await figures.comparison(chosen), agents=agents)
        return _download(html, "text/html; charset=utf-8", f"kpis-{chosen.start}-{chosen.end}.html")

    # -- agents' and teams' performance -------------------------------------------------------
    @app.get("/performance", include_in_schema=False)
    async def performance(page: ViewingPage, team: str = "") -> Response:
        only = performance_scope(page.identity, page.role)
        chosen = window(page.request.query_params)
        rows = await _performance_rows(chosen, only, team)
        teams = sorted({row.team for row in await figures.agents(chosen.start, chosen.end) if row.team}) \
            if only is None else []
        return render(page, "performance.html", window=chosen, rows=rows, only=only, team=team, teams=teams,
                      totals=team_totals(rows) if only is None else [], query=_performance_query(chosen, team))

    @app.get("/performance.csv", include_in_schema=False)
    async def performance_csv(page: ViewingPage, team: str = "") -> Response:
        from reports.render import agents_csv

        only = performance_scope(page.identity, page.role)
        chosen = window(page.request.query_params)
        rows = await _performance_rows(chosen, only, team)
        return _download(agents_csv(rows), "text/csv; charset=utf-8",
                         f"performance-{chosen.start}-{chosen.end}{'-' + team if team else ''}.csv")

    @app.get("/performance/chart.svg", include_in_schema=False)
    async def performance_chart(page: ViewingPage, team: str = "") -> Response:
        only = performance_scope(page.identity, page.role)
        chosen = window(page.request.query_params)
        return _svg(await figures.agents_chart(chosen.start, chosen.end, only, "" if only else team[:64]))

    async def _performance_rows(chosen: Window, only: str | None, team: str) -> list[Any]:
        return await figures.performance(chosen.start, chosen.end, only, "" if only else team[:64])

    @app.get("/access-log", include_in_schema=False)
    async def access_log(page: ViewingPage, loan_id: str = "", user: str = "") -> Response:
        entries = await desk.access_log(page.identity, loan_id=loan_id.strip()[:64] or None,
                                        user=user.strip()[:64] or None, limit=200)
        return render(page, "access_log.html", entries=entries, loan_id=loan_id, user=user)

    # The letters' font also sets the pages' Chinese where the machine has none of the usual CJK
    # fonts (the stylesheet asks for it only for CJK characters, and only then).
    @app.get("/fonts/noto-sans-sc.ttf", include_in_schema=False)
    async def cjk_font() -> Response:
        from activities.fonts import variable_font

        path = Path(str(variable_font()))  # a file of the installed package, beside its licence (OFL.txt)
        return FileResponse(path, media_type="font/ttf", headers={"Cache-Control": "public, max-age=31536000"})


def _span(start: object, end: object) -> str:
    """A dialling window as the queue shows it, ``08:00–21:00`` on that clock (with the days when it
    spans more than one); empty when there is none."""
    def moment(value: object) -> datetime | None:
        try:
            return datetime.fromisoformat(str(value)) if value else None
        except ValueError:
            return None

    opens, closes = moment(start), moment(end)
    if opens is None and closes is None:
        return ""
    if opens is not None and closes is not None and closes - opens >= timedelta(days=1):
        return f"{opens:%m-%d %H:%M}–{closes:%m-%d %H:%M}"
    return f"{f'{opens:%H:%M}' if opens else '…'}–{f'{closes:%H:%M}' if closes else '…'}"


def _local_time(zone: object) -> str:
    """Now on the borrower's clock (whether a call is within the contact window is the case's to
    judge; the agent still wants to know whether it is breakfast or midnight there)."""
    try:
        return datetime.now(ZoneInfo(str(zone))).strftime("%H:%M") if zone else ""
    except (ZoneInfoNotFoundError, ValueError):
        return ""


# -- what the ledger kept ---------------------------------------------------------------------
def kept_file(data_dir: Path, location: str | None) -> Path | None:
    """The kept copy at ``location``, only if it is a file inside the worker's data dir."""
    if not location:
        return None
    root = data_dir.resolve()
    path = Path(location)
    path = (path if path.is_absolute() else Path.cwd() / path).resolve()
    return path if path.is_relative_to(root) and path.is_file() else None


def _message(attempt: dict[str, Any], data_dir: Path, reveal: bool) -> dict[str, Any]:
    """A contact attempt as the case page lists it; the text as sent only in a revealed view
    (it names the borrower)."""
    view = {"id": attempt["id"], "channel": attempt["channel"], "template": attempt["template"],
            "state": attempt["state"], "reason": attempt["reason"], "at": attempt["created_at"],
            "sha256": attempt["sha256"], "subject": None, "text": None}
    path = kept_file(data_dir, attempt["location"])
    view["kept"] = path is not None
    if not reveal or path is None or attempt["channel"] not in ("sms", "email"):
        return view
    try:
        if attempt["channel"] == "sms":
            view["text"] = json.loads(path.read_text(encoding="utf-8")).get("body")
        else:
            message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
            body = message.get_body(preferencelist=("plain",))
            view["subject"] = str(message.get("Subject", ""))
            view["text"] = body.get_content() if body is not None else ""
    except (OSError, ValueError, LookupError, AttributeError):
        view["kept"] = False
    return view


def _with_bars(figures: dict[str, Any]) -> dict[str, Any]:
    """Each table's rows with ``bar``: its cases as a share (0-100) of the table's largest row."""
    shaped = dict(figures)
    for table in ("by_stage", "by_dpd_bucket", "by_grade", "waiting_on"):
        rows = [dict(row) for row in figures.get(table) or []]
        most = max((int(row.get("cases") or 0) for row in rows), default=0)
        for row in rows:
            row["bar"] = round(100 * int(row.get("cases") or 0) / most) if most else 0
        shaped[table] = rows
    return shaped


def _kpi_choices() -> dict[str, Any]:
    """What the portfolio's KPI form offers: the dimensions worth a chart's bars, and the periods."""
    return {"dimensions": KPI_DIMENSIONS, "periods": PERIODS}


def _performance_query(chosen: Window, team: str) -> str:
    return f"from={chosen.start}&to={chosen.end}" + (f"&team={quote(team)}" if team else "")


def _svg(text: str) -> Response:
    # An image of aggregates, no borrower in it: a browser may keep it the minute the desk does.
    return Response(text, media_type="image/svg+xml", headers={"Cache-Control": "private, max-age=60"})


def _download(text: str, media_type: str, name: str) -> Response:
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", name)
    return Response(text, media_type=media_type, headers={
        "Content-Disposition": f'attachment; filename="{safe}"', "Cache-Control": "no-store"})
