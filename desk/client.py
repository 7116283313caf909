"""``arrears``: the operator's command line, a client of the desk's API (a token, no database
rights, no payload keys).

    export ARREARS_DESK_URL=http://127.0.0.1:8000 ARREARS_DESK_TOKEN=arr_...
    arrears me                                     who the token is, what its role may do
    arrears work calls                             my open call tasks, due first
    arrears report ITEM no_answer --dials 2 --note "no voicemail"
    arrears case LOAN                              the case (borrower details as the role may see them)
    arrears send LOAN promise_to_pay amount=450.00 due_date=2026-12-04
    arrears approvals | arrears approve ID | arrears reject ID --reason "too generous"
    arrears payments FILE.csv                      loan_id,reference,amount,currency[,paid_at]
    arrears reverse LOAN REFERENCE --reason "returned unpaid"   reopens a case the payment cured

Exit 0 on success, 1 when the desk refused (its reason on stderr), 2 when it could not be asked.
"""

from __future__ import annotations

import csv
import json
import os
import sys
from pathlib import Path
from typing import Any, NoReturn, Optional

import httpx
import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__.splitlines()[0])
DEFAULT_URL = "http://127.0.0.1:8000"


class Desk:
    """The desk's API, with the caller's token."""

    def __init__(self, url: str | None = None, token: str | None = None, *, timeout: float = 30.0) -> None:
        self.url = (url or os.environ.get("ARREARS_DESK_URL") or DEFAULT_URL).rstrip("/")
        token = token or os.environ.get("ARREARS_DESK_TOKEN")
        if not token:
            _fail(2, "set ARREARS_DESK_TOKEN (from `python -m desk tokens create NAME`) or pass --token")
        self.http = httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {token}"}, timeout=timeout)

    def call(self, method: str, path: str, body: Any = None, **params: Any) -> dict[str, Any]:
        try:
            response = self.http.request(method, path, json=body, params={k: v for k, v in params.items() if v})
        except httpx.HTTPError as err:
            _fail(2, f"the desk at {self.url} cannot be reached: {err}")
        try:
            answer = response.json()
        except ValueError:
            _fail(2, f"the desk answered {response.status_code} without JSON")
        if response.status_code >= 400:
            where = f"{answer.get('field')}: " if answer.get("field") else ""
            _fail(1 if response.status_code < 500 else 2, f"refused ({response.status_code}): {where}{answer.get('reason')}")
        if response.status_code == 202:
            approval = answer["approval"]
            typer.echo(f"waiting for approval {approval['approval_id']}: {approval['needs_approval_because']}",
                       err=True)
        return answer


def _fail(code: int, message: str) -> NoReturn:
    typer.echo(f"arrears: {message}", err=True)
    raise typer.Exit(code)


def _show(answer: Any, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(answer, indent=2, ensure_ascii=False))


def _item_line(item: dict[str, Any]) -> str:
    when = item.get("scheduled_for") or item.get("due_at") or ""
    fields = [item["item_id"], item["loan_id"], item.get("assigned_to") or "-", when, item.get("timezone") or "",
              item.get("amount_past_due") or ""]
    if item.get("callable_from") or item.get("callable_until"):  # a call task: when it may be dialled
        opens = item.get("callable_from_local") or item.get("callable_from") or "…"
        closes = item.get("callable_until_local") or item.get("callable_until") or "…"
        fields.append(f"dial {opens} – {closes}" + ("" if item.get("callable_now") else " (not callable now)"))
    return "\t".join(str(v) for v in fields)


def _case_line(status: dict[str, Any]) -> str:
    holds = ",".join(h["kind"] for h in status.get("holds", [])) or "-"
    return (f"{status['loan_id']}: {status['stage']} · DPD {status['days_past_due']} · past due "
            f"{status['amount_past_due']} {status['currency']} · holds {holds} · agent "
            f"{status.get('assigned_agent') or '-'}" + (f" · outcome {status['outcome']}" if status.get("outcome") else "")
            + f" · next {status.get('next_action')} at {status.get('next_action_at')}")


Token = typer.Option(None, "--token", help="the API token [ARREARS_DESK_TOKEN]")
Url = typer.Option(None, "--url", help=f"the desk [ARREARS_DESK_URL or {DEFAULT_URL}]")
AsJson = typer.Option(False, "--json", help="the desk's whole answer, as JSON")


@app.command()
def me(token: Optional[str] = Token, url: Optional[str] = Url) -> None:
    """Who the token is, and what its role may do."""
    answer = Desk(url, token).call("GET", "/api/v1/me")
    typer.echo(f"{answer['name']} ({answer['role']}{', team ' + answer['team'] if answer.get('team') else ''}): "
               f"commands {', '.join(answer['commands']) or '-'}; queues {', '.join(answer['queues']) or '-'}")


@app.command()
def work(queue: str = typer.Argument("calls", help="calls, visits, legal or supervisor"),
         limit: int = typer.Option(50, help="items per page"), every: bool = typer.Option(False, "--all",
                                                                                     help="every page"),
         token: Optional[str] = Token, url: Optional[str] = Url, as_json: bool = AsJson) -> None:
    """My open work on a queue, due first: item, loan, assigned to, due, time zone, past due."""
    desk, after, count = Desk(url, token), None, 0
    while True:
        page = desk.call("GET", "/api/v1/work", queue=queue, limit=limit, after=after)
        _show(page, as_json)
        for item in page["items"]:
            if not as_json:
                typer.echo(_item_line(item))
            count += 1
        after = page.get("next")
        if not (every and after):
            break
    typer.echo(f"{count} open in {queue}" + (" (more: --all)" if after and not every else ""), err=True)


@app.command()
def report(item: str, outcome: str, note: Optional[str] = typer.Option(None, help="what happened"),
           with_: Optional[list[str]] = typer.Option(None, "--with", help="a visit's other field staff"),  # noqa: B008
           dials: Optional[int] = typer.Option(None, help="a call: how many times you dialled (1 to 20)"),
           dialled_at: Optional[list[str]] = typer.Option(  # noqa: B008
               None, "--dialled-at", help="a call: when you dialled, ISO 8601 (UTC without a zone); once per dial"),
           token: Optional[str] = Token, url: Optional[str] = Url, as_json: bool = AsJson) -> None:
    """Report the outcome of one work item (as the token's user)."""
    body: dict[str, Any] = {"outcome": outcome, **({"note": note} if note else {}),
                            **({"agents": with_} if with_ else {}), **({"dials": dials} if dials else {}),
                            **({"dialled_at": dialled_at} if dialled_at else {})}
    answer = Desk(url, token).call("POST", f"/api/v1/work/{item}/outcome", body)
    _show(answer, as_json)
    if not as_json:
        done = answer["item"]
        typer.echo(f"{done['item_id']}: {done['outcome']}" + (" (already reported)" if answer.get("already_reported")
                                                              else ""))


@app.command()
def case(loan_id: str, token: Optional[str] = Token, url: Optional[str] = Url, as_json: bool = AsJson) -> None:
    """A case's status, and the borrower's details as the role may see them."""
    answer = Desk(url, token).call("GET", f"/api/v1/cases/{loan_id}")
    _show(answer, as_json)
    if not as_json:
        typer.echo(_case_line(answer))
        borrower = answer["borrower"]
        typer.echo(f"  {borrower['name']} · {borrower['phone']} · {borrower['email']} · {borrower['address']}")


def _value(text: str) -> Any:
    """key=value: JSON where it parses (true, 3, ["sms"]), text otherwise; amounts stay text."""
    try:
        value = json.loads(text)
    except ValueError:
        return text
    return text if isinstance(value, (int, float)) and not isinstance(value, bool) else value


@app.command()
def send(loan_id: str, command: str,
         fields: Optional[list[str]] = typer.Argument(None, help="key=value pairs (or --body)"),  # noqa: B008
         body: Optional[str] = typer.Option(None, help="the whole payload as JSON"),
         token: Optional[str] = Token, url: Optional[str] = Url, as_json: bool = AsJson) -> None:
    """Send a command to a case (the desk stamps who you are)."""
    payload: dict[str, Any] = json.loads(body) if body else {}
    for pair in fields or []:
        key, sep, value = pair.partition("=")
        if not sep:
            _fail(2, f"{pair!r}: expected key=value")
        payload[key] = _value(value)
    answer = Desk(url, token).call("POST", f"/api/v1/cases/{loan_id}/{command}", payload)
    _show(answer, as_json)
    if not as_json and "status" in answer:
        typer.echo(_case_line(answer["status"]))


@app.command()
def reverse(loan_id: str, reference: str,
            reason: str = typer.Option(..., "--reason", help="why the payment came back, e.g. \"returned unpaid\""),
            token: Optional[str] = Token, url: Optional[str] = Url, as_json: bool = AsJson) -> None:
    """A payment came back: it no longer counts, and a case it cured is reopened as a new episode."""
    answer = Desk(url, token).call("POST", f"/api/v1/cases/{loan_id}/payment_reversed",
                                   {"reference": reference, "reason": reason})
    _show(answer, as_json)
    if as_json:
        return
    status = answer.get("status")
    if status is not None:
        episode = f" · episode {status['episode']}" if status.get("episode") else ""
        typer.echo((_case_line(status) if "stage" in status else f"{loan_id}: reopened") + episode)
    else:  # a system that reads no case gets a receipt
        typer.echo(f"{answer['loan_id']}: payment_reversed {answer['result']}"
                   + (f" · episode {answer['episode']}" if answer.get("episode") else ""))


@app.command()
def approvals(state: str = typer.Option("pending"), token: Optional[str] = Token, url: Optional[str] = Url,
              as_json: bool = AsJson) -> None:
    """Approvals (pending by default): what each gives up, why, and who proposed it."""
    answer = Desk(url, token).call("GET", "/api/v1/approvals", state=state)
    _show(answer, as_json)
    if not as_json:
        for approval in answer["approvals"]:
            typer.echo(f"{approval['approval_id']}\t{approval['loan_id']}\t{approval['command']}\t"
                       f"by {approval['proposed_by']}\t{approval['needs_approval_because']}\t"
                       f"{approval.get('justification') or ''}\texpires {approval['expires_at']}")


@app.command()
def approve(approval_id: str, token: Optional[str] = Token, url: Optional[str] = Url) -> None:
    """Approve another person's proposal: the case gets it now, with you as the approver."""
    answer = Desk(url, token).call("POST", f"/api/v1/approvals/{approval_id}/approve")
    typer.echo(f"{approval_id}: {answer['approval']['state']}; " + _case_line(answer["status"]))


@app.command()
def reject(approval_id: str, reason: Optional[str] = typer.Option(None), token: Optional[str] = Token,
           url: Optional[str] = Url) -> None:
    """Reject another person's proposal."""
    answer = Desk(url, token).call("POST", f"/api/v1/approvals/{approval_id}/reject",
                                   {"reason": reason} if reason else {})
    typer.echo(f"{approval_id}: {answer['approval']['state']}")


@app.command()
def payments(file: Path = typer.Argument(..., help="CSV: loan_id,reference,amount,currency[,paid_at]"),  # noqa: B008
             token: Optional[str] = Token, url: Optional[str] = Url, as_json: bool = AsJson) -> None:
    """Post a file of payments (each applied once by its reference); one line per payment."""
    try:
        rows = [{k: v for k, v in row.items() if v} for row in csv.DictReader(file.open(encoding="utf-8"))]
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        _fail(2, f"{file}: {err}")
    answer = Desk(url, token).call("POST", "/api/v1/payments", {"payments": rows})
    _show(answer, as_json)
    if not as_json:
        for result in answer["results"]:
            typer.echo(f"{result['reference']}\t{result['loan_id']}\t{result['result']}\t{result.get('reason', '')}")
        typer.echo(", ".join(f"{k}: {v}" for k, v in sorted(answer["counts"].items())), err=True)


def main(argv: list[str] | None = None) -> int:
    try:
        # Without standalone mode click returns the code of a typer.Exit instead of exiting.
        code = app(args=argv, prog_name="arrears", standalone_mode=False)
    except typer.Exit as done:
        return done.exit_code
    except _usage_errors() as err:  # a missing argument, an unknown option
        err.show()
        return 2
    return code if isinstance(code, int) else 0


def _usage_errors() -> tuple[type[Exception], ...]:
    """Click's usage errors, and those of the copy of click that typer carries inside since 0.2x."""
    import click

    kinds: list[type[Exception]] = [click.ClickException]
    try:
        from typer._click.exceptions import ClickException
    except ImportError:  # a typer that uses click itself
        return tuple(kinds)
    return (*kinds, ClickException)


if __name__ == "__main__":
    sys.exit(main())
