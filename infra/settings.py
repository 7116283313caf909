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


def default_fonts_dir(env: dict[str, str] | None = None) -> Path:
    """A per-user cache (like pip's): every data folder and test on the machine shares one copy."""
    env = dict(os.environ if env is None else env)
    if env.get("ARREARS_FONTS_DIR"):
        return Path(env["ARREARS_FONTS_DIR"])
    cache = Path(env["XDG_CACHE_HOME"]) if env.get("XDG_CACHE_HOME") else Path.home() / ".cache"
    return cache / "arrears" / "fonts"


@dataclass(frozen=True)
class Settings:
    temporal_address: str = "localhost:7233"
    temporal_namespace: str = "default"
    task_queue: str = DEFAULT_TASK_QUEUE
    data_dir: Path = Path(".data")
    database_url: str = ""
    smtp_url: str | None = None
    sms_url: str | None = None
    lender: str = "Arrears Demo Bank"
    contact_point: str = "+1 555 0100"
    email_from: str = "collections@arrears.example"
    sms_from: str = "ARREARS"
    field_agents: list[str] = field(default_factory=lambda: [f"field-{n:02d}" for n in range(1, 7)])
    root: Path = field(default_factory=project_root)
    # The static CJK fonts letters are set in, prepared once per machine from the font package.
    fonts_dir: Path = field(default_factory=lambda: default_fonts_dir())
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
            lender=env.get("ARREARS_LENDER_NAME", cls.lender),
            contact_point=env.get("ARREARS_CONTACT_POINT", cls.contact_point),
            email_from=env.get("ARREARS_EMAIL_FROM", cls.email_from),
            sms_from=env.get("ARREARS_SMS_FROM", cls.sms_from),
            fonts_dir=default_fonts_dir(env),
            payload_keys=env.get("ARREARS_PAYLOAD_KEYS") or None,
            **({"field_agents": [a.strip() for a in agents.split(",") if a.strip()]} if agents else {}),
        )

    def __post_init__(self) -> None:
        if not self.field_agents:
            raise ValueError("ARREARS_FIELD_AGENTS: name at least one field agent (comma-separated)")
        if self.payload_keys:
            from infra.codec import parse_keys

            parse_keys(self.payload_keys)  # raises ValueError naming the entry and the reason, never the key

    @property
    def ledger_url(self) -> str:
        """The case ledger's database: ARREARS_DATABASE_URL, or SQLite under the data folder."""
        return self.database_url or f"sqlite:///{self.data_dir / 'arrears.db'}"

    @property
    def strategies_dir(self) -> Path:
        return self.root / "strategies"

    @property
    def templates_dir(self) -> Path:
        return self.root / "templates"
