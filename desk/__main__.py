"""``python -m desk``: serve the desk, add users, create and revoke API tokens.

    python -m desk serve [--host 127.0.0.1] [--port 8000]
    python -m desk users add NAME --role ROLE [--team TEAM]     (prints the password, last line)
    python -m desk users list
    python -m desk tokens create NAME                            (prints the token, last line)
    python -m desk tokens revoke NAME

The same TEMPORAL_* and ARREARS_* settings as the worker (ARREARS_DATABASE_URL: where users live).
Exit 0 on success, 2 on bad input (the message names the field and the reason).
"""

from __future__ import annotations

import asyncio
import dataclasses
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import Optional, TypeVar

import typer

from desk.config import DeskSettings
from desk.policy import PolicyError, load_policy
from desk.server import opened_store, serve
from desk.store import DeskError, DeskStore
from ledger import LedgerError

T = TypeVar("T")
app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__.splitlines()[0])
users = typer.Typer(no_args_is_help=True, help="People and systems who may use the desk.")
tokens = typer.Typer(no_args_is_help=True, help="API tokens (Authorization: Bearer).")
app.add_typer(users, name="users")
app.add_typer(tokens, name="tokens")


def _settings() -> DeskSettings:
    try:
        return DeskSettings.from_env()
    except ValueError as err:
        _fail(str(err))
        raise


def _fail(message: str) -> None:
    typer.echo(f"desk: {message}", err=True)
    raise typer.Exit(2)


def _with_store(action: Callable[[DeskStore], Awaitable[T]]) -> T:
    async def run() -> T:
        async with opened_store(_settings()) as store:
            return await action(store)

    try:
        return asyncio.run(run())
    except (DeskError, LedgerError, PolicyError) as err:
        _fail(str(err))
        raise


@app.command("serve")
def serve_command(host: Optional[str] = typer.Option(None, help="address to listen on [127.0.0.1]"),
                  port: Optional[int] = typer.Option(None, help="port [ARREARS_DESK_PORT or 8000]")) -> None:
    """Serve the desk's API (and log-in page)."""
    settings = _settings()
    settings = dataclasses.replace(settings, host=host or settings.host, port=port or settings.port)
    # uvicorn shuts down gracefully on SIGTERM, then raises the signal again: here that ends the
    # process with 0, a clean stop, as it does for Ctrl-C.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        load_policy()
        asyncio.run(serve(settings))
    except (PolicyError, LedgerError) as err:
        _fail(str(err))
    except KeyboardInterrupt:
        pass


@users.command("add")
def users_add(name: str, role: str = typer.Option(..., help="agent, field_agent, supervisor, compliance, admin, "
                                                            "payments (compliance/roles.toml)"),
              team: Optional[str] = typer.Option(None, help="the team (agents act on their team's cases)")) -> None:
    """Add a user; prints a generated password once, as the last line."""
    try:
        roles = load_policy().roles
    except PolicyError as err:
        _fail(str(err))
    if role not in roles:
        _fail(f"role: {role!r} is not one of {', '.join(sorted(roles))}")
    password = _with_store(lambda store: store.add_user(name, role, team=team, created_by="command line"))
    typer.echo(f"user {name} added as {role}" + (f" in team {team}" if team else "") + "; password (shown once):")
    typer.echo(password)


@users.command("list")
def users_list() -> None:
    """The users: name, role, team, whether locked."""
    for user in _with_store(lambda store: store.users()):
        locked = f"\tlocked until {user.locked_until:%Y-%m-%d %H:%M}" if user.locked_until else ""
        typer.echo(f"{user.name}\t{user.role}\t{user.team or '-'}{locked}")


@tokens.command("create")
def tokens_create(name: str) -> None:
    """Create an API token for user NAME; prints it once, as the last line."""
    token = _with_store(lambda store: store.create_token(name))
    typer.echo(f"token for {name} (shown once; send it as Authorization: Bearer <token>):")
    typer.echo(token)


@tokens.command("revoke")
def tokens_revoke(name: str) -> None:
    """Revoke every API token of user NAME."""
    count = _with_store(lambda store: store.revoke_tokens(name))
    typer.echo(f"revoked {count} token(s) of {name}")


def main() -> None:
    app(prog_name="python -m desk")


if __name__ == "__main__":
    sys.exit(main())
