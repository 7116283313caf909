"""The sync's settings, from the environment (``ARREARS_SYNC_*``); a bad one raises ValueError naming it."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy.engine import make_url


def _yes_or_no(env: dict[str, str], name: str, default: bool) -> bool:
    text = env.get(name, "").strip().lower()
    if not text:
        return default
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{name}: {env[name].strip()!r} is not yes or no")


def _number(env: dict[str, str], name: str, default: float, low: float, high: float, kind: type = int) -> float:
    text = env.get(name, "").strip()
    if not text:
        return default
    try:
        value = kind(text)
    except ValueError:
        raise ValueError(f"{name}: {text!r} is not {'a whole number' if kind is int else 'a number'}") from None
    if not low <= value <= high:
        raise ValueError(f"{name}: must be between {low:g} and {high:g}, not {text}")
    return value


def _clock(env: dict[str, str], name: str, default: str) -> time:
    text = env.get(name, "").strip() or default
    try:
        at = time.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{name}: {text!r} is not a time of day (HH:MM)") from None
    return at.replace(second=0, microsecond=0)


@dataclass(frozen=True)
class SyncSettings:
    """Where the servicer's daily file comes from, when the schedule runs, and how it is applied.

    Exactly one source: a drop folder (``folder``: every file matching ``pattern`` in it, oldest
    ``as_of`` first) or a SQL query (``sql_url`` + ``sql_query``). Neither: no sync (the worker
    creates no schedule and takes no sync work)."""

    folder: Path | None = None
    pattern: str = "*.csv"
    sql_url: str | None = field(default=None, repr=False)  # may hold a password
    sql_query: str | None = None
    at: time = time(6, 0)
    timezone: str = "UTC"
    # The file is the servicer's whole delinquent book: a running case whose loan it leaves out is cured.
    complete: bool = True
    # Never cure more than this share of the running cases as absent from one file: a file that
    # leaves out more is more likely cut short than a day of mass cures (the run reports it instead).
    max_absent_share: float = 0.5
    # The strategy new cases start on; None (ARREARS_SYNC_STRATEGY unset): the experiment in
    # strategies/assignment.toml draws each loan's when that file exists, else ``default``.
    strategy: str | None = None
    # Cases started or updated at once: backpressure on the server, not timeouts.
    concurrency: int = 32
    # A worker that dies mid-file is noticed after this long without a heartbeat; another resumes.
    heartbeat_timeout: timedelta = timedelta(seconds=60)

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> "SyncSettings":
        env = dict(os.environ if env is None else env)
        folder = env.get("ARREARS_SYNC_FOLDER", "").strip()
        return cls(
            folder=Path(folder) if folder else None,
            pattern=env.get("ARREARS_SYNC_PATTERN", "").strip() or cls.pattern,
            sql_url=env.get("ARREARS_SYNC_SQL_URL", "").strip() or None,
            sql_query=env.get("ARREARS_SYNC_SQL_QUERY", "").strip() or None,
            at=_clock(env, "ARREARS_SYNC_AT", "06:00"),
            timezone=env.get("ARREARS_SYNC_TIMEZONE", "").strip() or cls.timezone,
            complete=_yes_or_no(env, "ARREARS_SYNC_COMPLETE", cls.complete),
            max_absent_share=float(_number(env, "ARREARS_SYNC_MAX_ABSENT_SHARE", cls.max_absent_share, 0, 1, float)),
            strategy=env.get("ARREARS_SYNC_STRATEGY", "").strip() or None,
            concurrency=int(_number(env, "ARREARS_SYNC_CONCURRENCY", cls.concurrency, 1, 1000)),
            heartbeat_timeout=timedelta(seconds=_number(env, "ARREARS_SYNC_HEARTBEAT_TIMEOUT", 60, 2, 3600)),
        )

    def __post_init__(self) -> None:
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"ARREARS_SYNC_TIMEZONE: {self.timezone!r} is not an IANA time zone") from None
        if self.folder is not None and self.sql_url:
            raise ValueError("ARREARS_SYNC_FOLDER and ARREARS_SYNC_SQL_URL: choose one source, not both")
        if bool(self.sql_url) != bool(self.sql_query):
            raise ValueError("ARREARS_SYNC_SQL_URL and ARREARS_SYNC_SQL_QUERY go together: set both or neither")
        if self.sql_url:
            try:
                make_url(self.sql_url)
            except Exception:  # noqa: BLE001 - SQLAlchemy raises several kinds for a bad URL
                raise ValueError("ARREARS_SYNC_SQL_URL: not a SQLAlchemy database URL") from None

    @property
    def configured(self) -> bool:
        """Whether there is a source to sync from."""
        return self.folder is not None or bool(self.sql_url)

    @property
    def source(self) -> str:
        """The source, for logs and the schedule's note (never the URL's password)."""
        if self.folder is not None:
            return f"folder {self.folder} ({self.pattern})"
        if self.sql_url:
            return f"SQL {make_url(self.sql_url).render_as_string(hide_password=True)}"
        return "none"
