"""The role table (``compliance/roles.toml``) and the decisions it makes: who may open a case,
send a command, work a queue, see a borrower's details and approve. Pure: no I/O but loading."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator,
)

from domain.commands import COMMANDS
from infra.settings import project_root

ROLES_FILE = project_root() / "compliance" / "roles.toml"
QUEUES = ("calls", "visits", "legal", "supervisor")
CONTACT_DETAILS = ("name", "phone", "email", "address")
# Fields that say who acted: the desk stamps them from the authenticated identity, and refuses
# a request that sets them itself. ``agent`` names the caller in these two commands only (in
# ``assign`` it names whom the case goes to).
IDENTITY_FIELDS = ("by", "approver_role", "approved_by")
# ``agents`` of a visit report: the reporter, and co-workers only from the work item's assignees
# (POST /api/v1/work/{item}/outcome), never names the caller picks.
CALLER_FIELDS = {"call_outcome": ("agent",), "promise_to_pay": ("agent",), "field_visit_report": ("agents",)}


class PolicyError(ValueError):
    """The role table is unusable; the message names the file, the key and the reason."""


@dataclass(frozen=True)
class Identity:
    """Who is acting, as authenticated: a person (session or token) or a bank system (token)."""

    name: str
    role: str
    team: str | None = None
    via: Literal["session", "token", "oidc"] = "token"


class Role(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str
    label: str
    cases: Literal["all", "assigned", "none"]
    commands: frozenset[str]
    queues: frozenset[str] = frozenset()
    contact_details: frozenset[str] = frozenset()
    approval_limit: str | None = None
    approves: str | None = None
    manages_users: bool = False
    reads_access_log: bool = False
    reads_private_reasons: bool = False

    @field_validator("commands", mode="before")
    @classmethod
    def _every_command(cls, value: Any) -> Any:
        return sorted(COMMANDS) if value == "*" else value

    @field_validator("commands", "queues", "contact_details")
    @classmethod
    def _known_names(cls, value: frozenset[str], info: ValidationInfo) -> frozenset[str]:
        known, what = {"commands": (COMMANDS, "a command of the contract"), "queues": (QUEUES, "a queue"),
                       "contact_details": (CONTACT_DETAILS, "a contact detail")}[info.field_name]
        unknown = sorted(value - set(known))
        if unknown:
            raise ValueError(f"{', '.join(unknown)}: not {what} ({', '.join(sorted(known))})")
        return value


class Restriction(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    command: str
    field: str
    values: list[Any]
    roles: frozenset[str]
    why: str

    @model_validator(mode="after")
    def _names_a_field(self) -> "Restriction":
        model = COMMANDS.get(self.command)
        if model is None:
            raise ValueError(f"command {self.command!r} is not a command of the contract")
        if self.field not in model.model_fields:
            raise ValueError(f"{self.command} has no field {self.field!r}")
        return self


class Policy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    roles: dict[str, Role]
    restricted: list[Restriction] = Field(default_factory=list)

    @model_validator(mode="after")
    def _restrictions_name_roles(self) -> "Policy":
        for index, rule in enumerate(self.restricted):
            unknown = sorted(rule.roles - set(self.roles))
            if unknown:
                raise ValueError(f"restricted.{index}.roles: {', '.join(unknown)} not a role")
        return self

    # -- decisions: None means allowed; otherwise the reason it is not ------------------------
    def role(self, identity: Identity) -> Role:
        role = self.roles.get(identity.role)
        if role is None:  # a user whose role was removed from the table may do nothing
            return Role(name=identity.role, label="unknown role", cases="none", commands=frozenset())
        return role

    def refuses_command(self, identity: Identity, command: str) -> str | None:
        if command not in self.role(identity).commands:
            return f"role {identity.role} may not send {command}"
        return None

    def refuses_values(self, identity: Identity, command: str, values: dict[str, Any]) -> str | None:
        """The restricted values among ``values``: the command's fields *as the case reads them*
        (validated and in their JSON form), so that "true" or "yes" is caught as well as true."""
        for rule in self.restricted:
            value = values.get(rule.field)
            if rule.command == command and value in rule.values and identity.role not in rule.roles:
                shown = str(value).lower() if isinstance(value, bool) else value
                return (f"{command} with {rule.field} {shown} is for {', '.join(sorted(rule.roles))} only "
                        f"({rule.why})")
        return None

    def refuses_case(self, identity: Identity, assigned_agent: str | None, work_for: set[str]) -> str | None:
        """Whether ``identity`` may open a case assigned to ``assigned_agent`` on which open work
        is assigned to ``work_for`` (names)."""
        role = self.role(identity)
        if role.cases == "all":
            return None
        if role.cases == "assigned":
            mine = {identity.name} | ({identity.team} if identity.team else set())
            if assigned_agent in mine or mine & work_for:
                return None
            return f"the case is not assigned to {identity.name}" + (f" or team {identity.team}" if identity.team
                                                                       else "")
        return f"role {identity.role} does not work on cases"

    def refuses_queue(self, identity: Identity, queue: str) -> str | None:
        if queue not in self.role(identity).queues:
            return f"role {identity.role} does not work the {queue} queue"
        return None

    def sees_all_work(self, identity: Identity) -> bool:
        return self.role(identity).cases == "all"


def identity_fields(command: str) -> tuple[str, ...]:
    """The fields of ``command`` a caller may not set: the desk fills them in."""
    return IDENTITY_FIELDS + CALLER_FIELDS.get(command, ())


def load_policy(path: Path = ROLES_FILE) -> Policy:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as err:
        raise PolicyError(f"{path}: {err}") from None
    roles = {name: {"name": name, **raw} for name, raw in data.get("roles", {}).items()}
    try:
        return Policy.model_validate({"roles": roles, "restricted": data.get("restricted", [])})
    except ValidationError as err:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in err.errors())
        raise PolicyError(f"{path}: {problems}") from None
