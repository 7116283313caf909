"""Message templates: plain text files per language, ``$name`` placeholders.

E-mail and letter templates start with a ``Subject:`` line.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from string import Template

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

    def render(self, name: str, jurisdiction: str, values: dict[str, str]) -> Rendered:
        text = Template(self.source(name, language_for(jurisdiction))).substitute(values)
        subject = None
        if text.startswith("Subject:"):
            first, _, text = text.partition("\n")
            subject = first.removeprefix("Subject:").strip()
        return Rendered(subject=subject, body=text.strip() + "\n")
