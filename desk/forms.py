"""The workbench's command forms, built from the commands' own models: a select for a choice, a
checkbox for a flag, a date for a date, a line per instalment; and the JSON body a posted form
stands for, as the API would be sent it."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import Enum
from types import NoneType, UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic.fields import FieldInfo
from starlette.datastructures import FormData

from desk.cases import Refused
from desk.policy import identity_fields
from domain.commands import COMMANDS
from domain.strategy import CALL_OUTCOMES, VISIT_OUTCOMES


# What the desk fills in from the work item, never typed: the call task or visit a report is for.
DESK_SET = {"call_outcome": ("task_id",), "field_visit_report": ("visit_id",)}
OUTCOME_CHOICES = {"call_outcome": CALL_OUTCOMES, "field_visit_report": VISIT_OUTCOMES}
# The frequent ones first; the rest in alphabetical order.
FIRST = ("promise_to_pay", "call_outcome", "field_visit_report", "propose_arrangement", "hardship", "dispute",
         "hold", "release", "escalate")
INSTALMENT_LINE = re.compile(r"[\s;]+")
# Amounts whose names do not say so (the servicer's figures of ``loan_update``).
AMOUNTS = ("outstanding", "fees")


@dataclass(frozen=True)
class FormField:
    name: str
    kind: str  # text, textarea, amount, number, date, datetime, datetimes, select, checkbox, checkboxes, instalments
    required: bool = False
    choices: tuple[str, ...] = ()
    max_length: int | None = None
    minimum: int | None = None  # a number's bounds
    maximum: int | None = None


@dataclass(frozen=True)
class CommandForm:
    command: str
    fields: tuple[FormField, ...]
    values: dict[str, Any] = field(default_factory=dict)  # as typed: shown again after a refusal
    errors: dict[str, str] = field(default_factory=dict)  # field name ("" for the whole form) -> reason

    def refused(self, data: FormData, err: Refused) -> "CommandForm":
        """This form as it was sent, with the refusal's reason next to the field it names."""
        top = err.field.split(".")[0]
        where = top if top in {f.name for f in self.fields} else ""
        reason = err.reason if err.field in ("", where) else f"{err.field}: {err.reason}"
        values = {f.name: data.getlist(f.name) if f.kind == "checkboxes" else str(data.get(f.name) or "")
                  for f in self.fields}
        return CommandForm(self.command, self.fields, values, {where: reason})


def _kinds(annotation: Any) -> list[Any]:
    """The types an annotation allows, ``None`` and ``Annotated`` wrappers left out."""
    if get_origin(annotation) is Annotated:
        return _kinds(get_args(annotation)[0])
    if get_origin(annotation) in (Union, UnionType):
        return [kind for arg in get_args(annotation) for kind in _kinds(arg)]
    return [] if annotation is NoneType else [annotation]


def _form_field(command: str, name: str, info: FieldInfo) -> FormField:
    required = info.is_required()
    kinds = _kinds(info.annotation)
    first = kinds[0] if kinds else str
    longest = next((m.max_length for m in info.metadata if getattr(m, "max_length", None)), None)
    if name == "outcome" and command in OUTCOME_CHOICES:
        return FormField(name, "select", required, OUTCOME_CHOICES[command])
    if get_origin(first) is list:
        [item] = get_args(first)
        if isinstance(item, type) and issubclass(item, Enum):
            return FormField(name, "checkboxes", required, tuple(
                member.value for member in item if getattr(member, "is_borrower_contact", True)))
        if item is datetime:  # one time per line
            return FormField(name, "datetimes", required)
        return FormField(name, "instalments", required)
    if get_origin(first) is Literal:
        return FormField(name, "select", required, tuple(str(choice) for choice in get_args(first)))
    if isinstance(first, type) and issubclass(first, Enum):
        return FormField(name, "select", required, tuple(member.value for member in first))
    if first is bool:
        return FormField(name, "checkbox", required)
    if date in kinds:  # a day is enough where the model takes a date or a datetime
        return FormField(name, "date", required)
    if first is datetime:
        return FormField(name, "datetime", required)
    if "amount" in name or "waiver" in name or name in AMOUNTS:
        return FormField(name, "amount", required)
    if first is int:
        return FormField(name, "number", required, minimum=next((m.ge for m in info.metadata if hasattr(m, "ge")), None),
                         maximum=next((m.le for m in info.metadata if hasattr(m, "le")), None))
    return FormField(name, "textarea" if (longest or 0) > 64 else "text", required, max_length=longest)


def _fields(command: str) -> tuple[FormField, ...]:
    skip = set(identity_fields(command)) | set(DESK_SET.get(command, ()))
    fields = [_form_field(command, name, info) for name, info in COMMANDS[command].model_fields.items()
              if name not in skip]
    if command == "propose_arrangement":
        fields.append(FormField("justification", "textarea", max_length=500))
    return tuple(fields)


def command_forms(commands: frozenset[str] | set[str], failed: CommandForm | None = None) -> list[CommandForm]:
    """A form for each of ``commands`` (the frequent first); ``failed`` in place of its blank one."""
    names = [c for c in FIRST if c in commands] + sorted(set(commands) - set(FIRST))
    return [failed if failed is not None and failed.command == name else CommandForm(name, _fields(name))
            for name in names if name in COMMANDS]


def form_body(form: CommandForm, data: FormData) -> dict[str, Any]:
    """The command's JSON body from the posted form: blank fields left out, as the API would be sent."""
    body: dict[str, Any] = {}
    for spec in form.fields:
        if spec.kind == "checkbox":
            if data.get(spec.name) is not None:
                body[spec.name] = True
            elif spec.required:
                body[spec.name] = False
            continue
        if spec.kind == "checkboxes":
            picked = [str(value) for value in data.getlist(spec.name)]
            if picked:
                body[spec.name] = picked
            continue
        text = str(data.get(spec.name) or "").strip()
        if not text:
            continue
        if spec.kind == "instalments":
            body[spec.name] = _instalments(text)
        elif spec.kind == "datetimes":
            body[spec.name] = [_utc_minutes(line.strip()) for line in text.splitlines() if line.strip()]
        elif spec.kind == "datetime":
            body[spec.name] = _utc_minutes(text)
        else:
            body[spec.name] = text
    return body


def _utc_minutes(text: str) -> str:
    """A datetime-local input's value (minutes, no zone) as UTC, as the form's label says; other
    spellings go to the case as typed, for it to judge."""
    return f"{text}:00+00:00" if len(text) == 16 else text


def _instalments(text: str) -> list[dict[str, str]]:
    rows = []
    for number, line in enumerate(text.splitlines(), 1):
        parts = [part for part in INSTALMENT_LINE.split(line.strip()) if part]
        if not parts:
            continue
        if len(parts) != 2:
            raise Refused(422, f"line {number}: write a date and an amount, e.g. 2026-12-20 150.00", "instalments")
        rows.append({"due_date": parts[0], "amount": parts[1]})
    return rows
