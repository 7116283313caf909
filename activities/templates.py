"""Message templates: plain-text Jinja2 files per language, ``{{ name }}`` placeholders, and
``{% if %}`` on the few :data:`CONDITIONS` where the wording follows the case or the channel.

E-mail and letter templates start with a ``Subject:`` line. A template may only use the values
in :data:`VARIABLES`; an unknown name or a syntax error is a template problem the worker and
the intake refuse to start with, and an undefined value at render time is an error, never an
empty gap in a letter.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

import jinja2
from jinja2 import meta

# What a template may quote: the case facts as of sending, and who the borrower hears from.
VARIABLES = frozenset({
    "lender", "contact_point", "product", "loan_tail", "days_past_due", "amount_past_due", "outstanding",
    "promise_amount", "promise_due_date", "instalment_amount", "instalment_due_date", "response_days", "today",
    "earlier_reminders", "channel",
})
# What a template may test (``{% if earlier_reminders %}``, ``{% if channel == "email" %}``), and what it
# reads when the sender does not say: no earlier reminders (the neutral wording is true of any case),
# and a letter. The activities always say (tests/test_template_compliance.py holds them to VARIABLES).
CONDITIONS: dict[str, object] = {"earlier_reminders": False, "channel": "letter"}

LANGUAGE_BY_JURISDICTION = {"CN": "zh"}
DEFAULT_LANGUAGE = "en"


def language_for(jurisdiction: str) -> str:
    return LANGUAGE_BY_JURISDICTION.get(jurisdiction, DEFAULT_LANGUAGE)


@dataclass(frozen=True)
class Rendered:
    subject: str | None
    body: str


class TemplateBook:
    def __init__(self, root: Path) -> None:
        self.root = root
        self._product_names: dict[str, dict[str, str]] = {}
        # Plain text, not HTML: nothing to escape. Strict: a missing value fails the send.
        self._jinja = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False,
                                         keep_trailing_newline=True)

    def languages(self) -> list[str]:
        return sorted(p.name for p in self.root.iterdir() if p.is_dir())

    def names(self, language: str) -> set[str]:
        return {p.stem for p in (self.root / language).glob("*.txt")}

    def source(self, name: str, language: str) -> str:
        """The raw template, falling back to the default language."""
        path = self.root / language / f"{name}.txt"
        if not path.exists():
            path = self.root / DEFAULT_LANGUAGE / f"{name}.txt"
        return path.read_text(encoding="utf-8")

    def wording(self) -> str:
        """Every template's and product name's text in every language, and printable ASCII: the
        characters nearly every letter uses (a letter press instances their glyphs up front)."""
        texts = [self.source(name, language) for language in self.languages() for name in sorted(self.names(language))]
        texts += [name for language in self.languages() for name in self._products(language).values()]
        return "".join(texts) + "".join(map(chr, range(0x20, 0x7F)))

    def product_name(self, product: str, jurisdiction: str) -> str:
        """The product as the borrower's language names it (``templates/<lang>/products.toml``)."""
        names = self._products(language_for(jurisdiction))
        return names.get(product) or product.replace("_", " ")

    def _products(self, language: str) -> dict[str, str]:
        if language not in self._product_names:
            path = self.root / language / "products.toml"
            self._product_names[language] = tomllib.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
        return self._product_names[language]

    def problems(self, name: str, language: str) -> list[str]:
        """Why this template cannot be rendered: a syntax error, or a value no case provides."""
        try:
            parsed = self._jinja.parse(self.source(name, language))
        except jinja2.TemplateSyntaxError as err:
            return [f"line {err.lineno}: {err.message}"]
        unknown = sorted(meta.find_undeclared_variables(parsed) - VARIABLES)
        return [f"unknown placeholder {{{{ {v} }}}}" for v in unknown]

    def render(self, name: str, jurisdiction: str, values: dict[str, object]) -> Rendered:
        text = self._jinja.from_string(self.source(name, language_for(jurisdiction))).render({**CONDITIONS, **values})
        subject = None
        if text.startswith("Subject:"):
            first, _, text = text.partition("\n")
            subject = first.removeprefix("Subject:").strip()
        return Rendered(subject=subject, body=text.strip() + "\n")
