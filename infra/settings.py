"""Settings from the environment; one place reads them."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from workflows.inputs import DEFAULT_TASK_QUEUE


def project_root() -> Path:
    """The folder holding strategies/, templates/ and compliance/: the source tree, or the current
    directory (an installed package, as in the container, runs from /app)."""
    source = Path(__file__).resolve().parents[1]
    return source if (source / "strategies").is_dir() else Path.cwd()


def available_cores() -> int:
    """The cores this process may use: its CPU affinity, capped by a container's CPU quota (cgroup
    v2 ``cpu.max``), so that a worker in a one-core container on a large host starts one letter
    process, not one per host core."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cores = os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            cores = min(cores, -(-int(quota) // int(period)))
    except (OSError, ValueError):
        pass
    return max(1, cores)


def _parsed(env: dict[str, str], name: str, kind: str, convert: type[int] | type[float]) -> int | float | None:
    text = env.get(name, "").strip()
    if not text:
        return None
    try:
        return convert(text)
    except ValueError:
        raise ValueError(f"{name}: {text!r} is not {kind}") from None


def _number(env: dict[str, str], name: str, default: int, minimum: int) -> int:
    value = _parsed(env, name, "a whole number", int)
    if value is None:
        return default
    if value < minimum:
        raise ValueError(f"{name}: must be at least {minimum}, not {value}")
    return int(value)


def _rate(env: dict[str, str], name: str) -> float | None:
    value = _parsed(env, name, "a number (messages per second)", float)
    if value is not None and not value > 0:
        raise ValueError(f"{name}: must be more than 0 messages per second, not {env[name].strip()}")
    return value


def _flag(env: dict[str, str], name: str) -> bool:
    text = env.get(name, "").strip().lower()
    if text in ("", "0", "false", "no", "off"):
        return False
    if text in ("1", "true", "yes", "on"):
        return True
    raise ValueError(f"{name}: {env[name].strip()!r} is not yes or no (1/0, true/false, yes/no, on/off)")


@dataclass(frozen=True)
class Settings:
    temporal_address: str = "localhost:7233"
    temporal_namespace: str = "default"
    task_queue: str = DEFAULT_TASK_QUEUE
    data_dir: Path = Path(".data")
    database_url: str = ""
    smtp_url: str | None = None
    sms_url: str | None = None
    # Keep a copy of every SMS and e-mail in the outbox folder even when a provider sends them (the
    # copy names the borrower; without a provider the outbox is the channel and always has them).
    outbox_copies: bool = False
    lender: str = "Arrears Demo Bank"
    contact_point: str = "+1 555 0100"
    email_from: str = "collections@arrears.example"
    sms_from: str = "ARREARS"
    field_agents: list[str] = field(default_factory=lambda: [f"field-{n:02d}" for n in range(1, 7)])
    root: Path = field(default_factory=project_root)
    # What one worker process takes on at once (worker.py): activity slots on the cases' queue
    # (call tasks, visits, hand-offs, the audit trail) and on each channel's queue, processes that
    # render letters (one letter each at a time), workflow tasks and cached cases.
    activity_slots: int = 32
    sms_slots: int = 16
    email_slots: int = 16
    letter_processes: int = field(default_factory=available_cores)
    workflow_slots: int = 16
    workflow_cache: int = 10_000
    # Providers' rate limits (messages per second), applied to the channel's task queue by the server.
    sms_rate: float | None = None
    email_rate: float | None = None
    # `id:base64key,...` (first encrypts, all decrypt); never printed with the settings.
    payload_keys: str | None = field(default=None, repr=False)

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> "Settings":
        env = dict(os.environ if env is None else env)
        data_dir = Path(env.get("ARREARS_DATA_DIR", ".data"))
        agents = env.get("ARREARS_FIELD_AGENTS")
        return cls(
            temporal_address=env.get("TEMPORAL_ADDRESS", "localhost:7233"),
            temporal_namespace=env.get("TEMPORAL_NAMESPACE", "default"),
            task_queue=env.get("ARREARS_TASK_QUEUE", DEFAULT_TASK_QUEUE),
            data_dir=data_dir,
            database_url=env.get("ARREARS_DATABASE_URL", ""),
            smtp_url=env.get("ARREARS_SMTP_URL") or None,
            sms_url=env.get("ARREARS_SMS_URL") or None,
            outbox_copies=_flag(env, "ARREARS_OUTBOX_COPIES"),
            lender=env.get("ARREARS_LENDER_NAME", cls.lender),
            contact_point=env.get("ARREARS_CONTACT_POINT", cls.contact_point),
            email_from=env.get("ARREARS_EMAIL_FROM", cls.email_from),
            sms_from=env.get("ARREARS_SMS_FROM", cls.sms_from),
            activity_slots=_number(env, "ARREARS_ACTIVITY_SLOTS", cls.activity_slots, 1),
            sms_slots=_number(env, "ARREARS_SMS_SLOTS", cls.sms_slots, 1),
            email_slots=_number(env, "ARREARS_EMAIL_SLOTS", cls.email_slots, 1),
            letter_processes=_number(env, "ARREARS_LETTER_PROCESSES", available_cores(), 0),
            workflow_slots=_number(env, "ARREARS_WORKFLOW_SLOTS", cls.workflow_slots, 2),
            workflow_cache=_number(env, "ARREARS_WORKFLOW_CACHE", cls.workflow_cache, 0),
            sms_rate=_rate(env, "ARREARS_SMS_RATE"),
            email_rate=_rate(env, "ARREARS_EMAIL_RATE"),
            payload_keys=env.get("ARREARS_PAYLOAD_KEYS") or None,
            **({"field_agents": [a.strip() for a in agents.split(",") if a.strip()]} if agents else {}),
        )

    def __post_init__(self) -> None:
        if not self.field_agents:
            raise ValueError("ARREARS_FIELD_AGENTS: name at least one field agent (comma-separated)")
        seen: set[str] = set()
        for name in self.field_agents:
            # A visit needs distinct people: one name twice would count one agent as two staff.
            if name.strip().casefold() in seen:
                raise ValueError(f"ARREARS_FIELD_AGENTS: {name.strip()!r} is named more than once")
            seen.add(name.strip().casefold())
        if self.payload_keys:
            from infra.codec import parse_keys

            parse_keys(self.payload_keys)  # raises ValueError naming the entry and the reason, never the key

    @property
    def ledger_url(self) -> str:
        """The case ledger's database: ARREARS_DATABASE_URL, or SQLite under the data folder."""
        return self.database_url or f"sqlite:///{self.data_dir / 'arrears.db'}"

    @property
    def ledger_connections(self) -> int:
        """The worker's ledger pool: one connection per activity slot, so none ever waits for one (the
        daily sync's one activity included)."""
        return self.activity_slots + self.sms_slots + self.email_slots + max(1, self.letter_processes) + 1

    @property
    def strategies_dir(self) -> Path:
        return self.root / "strategies"

    @property
    def templates_dir(self) -> Path:
        return self.root / "templates"
