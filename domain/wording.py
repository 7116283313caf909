"""What a message to a borrower may and must say: the template lint.

The rules are data (``compliance/forbidden_phrases.toml``): categories of forbidden phrasing
(threats, impersonating courts or police, shaming, abuse, pressure) as regular expressions per
language, the phrases that tell a borrower how to opt out, and the placeholder that names the
sender. This module only decides; loading the file and reading templates is in ``infra``.
"""

from __future__ import annotations

import re
from functools import cached_property

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

ALL_LANGUAGES = "all"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _compiles(patterns: list[str]) -> list[str]:
    for pattern in patterns:
        try:
            re.compile(pattern)
        except re.error as err:
            raise ValueError(f"pattern {pattern!r} is not a valid regular expression: {err}") from None
    return patterns


class Category(_Model):
    """One kind of forbidden phrasing, with why it is forbidden and the rules that say so."""

    model_config = ConfigDict(extra="allow", frozen=True)  # the extra keys are languages

    why: str
    cite: str = ""

    @property
    def patterns(self) -> dict[str, list[str]]:
        return {language: list(p) for language, p in (self.model_extra or {}).items()}

    @model_validator(mode="after")
    def _patterns_compile(self) -> "Category":
        for language, patterns in (self.model_extra or {}).items():
            if not isinstance(patterns, list) or not all(isinstance(p, str) for p in patterns):
                raise ValueError(f"{language}: expected a list of patterns")
            _compiles(patterns)
        return self


class Sender(_Model):
    placeholder: str = "{{ lender }}"


class Finding(_Model):
    """One forbidden phrase found in a text: which category, what matched, on which line."""

    category: str
    why: str
    phrase: str
    line: int

    def __str__(self) -> str:
        return f"line {self.line}: {self.category} ({self.why}): {self.phrase!r}"


class Wording(_Model):
    categories: dict[str, Category] = Field(min_length=1)
    opt_out: dict[str, list[str]] = {}
    sender: Sender = Sender()

    @field_validator("opt_out")
    @classmethod
    def _opt_out_compiles(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        for patterns in value.values():
            _compiles(patterns)
        return value

    @cached_property
    def _compiled(self) -> dict[str, list[tuple[str, Category, re.Pattern[str]]]]:
        by_language: dict[str, list[tuple[str, Category, re.Pattern[str]]]] = {}
        for name, category in self.categories.items():
            for language, patterns in category.patterns.items():
                by_language.setdefault(language, []).extend(
                    (name, category, re.compile(p, re.IGNORECASE)) for p in patterns)
        return by_language

    def languages(self) -> set[str]:
        return set(self._compiled) - {ALL_LANGUAGES}

    def findings(self, text: str, language: str) -> list[Finding]:
        """Every forbidden phrase in ``text``; an empty list means the text may be sent."""
        rules = self._compiled.get(language, []) + self._compiled.get(ALL_LANGUAGES, [])
        found = []
        for number, line in enumerate(text.splitlines(), start=1):
            for name, category, pattern in rules:
                for match in pattern.finditer(line):
                    found.append(Finding(category=name, why=category.why, phrase=match.group(0), line=number))
        return found

    def has_opt_out(self, text: str, language: str) -> bool:
        patterns = self.opt_out.get(language, []) + self.opt_out.get(ALL_LANGUAGES, [])
        return any(re.search(p, text, re.IGNORECASE) for p in patterns)

    def names_sender(self, text: str) -> bool:
        # `{{ lender }}` and `{{lender}}` are the same placeholder to Jinja2.
        return _unspaced(self.sender.placeholder) in _unspaced(text)


def _unspaced(text: str) -> str:
    return re.sub(r"\s+", "", text)
