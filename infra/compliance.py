"""Load the compliance profiles (``compliance/profiles.toml``) into validated models."""

from __future__ import annotations

import tomllib
from functools import cache
from pathlib import Path

from pydantic import ValidationError

from activities.templates import TemplateBook, language_for
from domain.compliance import Profile, Tightening, resolve
from domain.decide import VALIDATION_NOTICE
from domain.loan import JURISDICTIONS, Loan
from domain.stages import Channel
from domain.strategy import Strategy
from domain.wording import Wording
from infra.settings import project_root

PROFILES_FILE = project_root() / "compliance" / "profiles.toml"
WORDING_FILE = project_root() / "compliance" / "forbidden_phrases.toml"


class ComplianceError(ValueError):
    """The profiles file is unusable; the message names the file, the key and the reason."""


def load_profiles(path: Path = PROFILES_FILE) -> dict[str, Profile]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as err:
        raise ComplianceError(f"{path}: {err}") from None
    purposes = data.get("purposes", {})
    profiles = {}
    for name, raw in data.get("profiles", {}).items():
        try:
            profiles[name] = Profile.model_validate({"name": name, "purposes": purposes, **raw})
        except ValidationError as err:
            problems = "; ".join(f"profiles.{name}.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
                                 for e in err.errors())
            raise ComplianceError(f"{path}: {problems}") from None
    missing = [j for j in (*JURISDICTIONS, "demo") if j not in profiles]
    if missing:
        raise ComplianceError(f"{path}: profiles missing for {', '.join(missing)}")
    return profiles


@cache
def _default_profiles() -> dict[str, Profile]:
    return load_profiles()


def profile_for(loan: Loan, strategy: Strategy, profiles: dict[str, Profile] | None = None) -> Profile:
    """The profile a case runs under: the loan's jurisdiction, tightened by the strategy."""
    try:
        return resolve(profiles or _default_profiles(), loan.jurisdiction, strategy.compliance, strategy.name)
    except ValueError as err:
        raise ComplianceError(f"strategy {strategy.name}: compliance: {err}") from None


def records_years(jurisdiction: str, profiles: dict[str, Profile] | None = None) -> int | None:
    """How many years records of a loan of this jurisdiction are kept (its profile's rule)."""
    profile = (profiles or _default_profiles()).get(jurisdiction)
    return profile.records_years if profile is not None else None


def check_tightening(strategy: Strategy, profiles: dict[str, Profile] | None = None) -> None:
    """Fail early, naming the strategy, when its tightening cannot apply to every jurisdiction."""
    for jurisdiction in JURISDICTIONS:
        profile_for(Loan.model_construct(jurisdiction=jurisdiction), strategy, profiles)


def load_wording(path: Path = WORDING_FILE) -> Wording:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        return Wording.model_validate(data)
    except (OSError, tomllib.TOMLDecodeError) as err:
        raise ComplianceError(f"{path}: {err}") from None
    except ValidationError as err:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in err.errors())
        raise ComplianceError(f"{path}: {problems}") from None


def lint_templates(book: TemplateBook, wording: Wording | None = None) -> list[str]:
    """Every template in every language that does not render (syntax, unknown placeholder), threatens,
    impersonates, shames or abuses, or does not name the sender: one line per problem, naming the
    file. Empty when all may be sent."""
    wording = wording or load_wording()
    problems = []
    for language in book.languages():
        for name in sorted(book.names(language)):
            where = f"templates/{language}/{name}.txt"
            text = book.source(name, language)
            problems += [f"{where}: {problem}" for problem in book.problems(name, language)]
            problems += [f"{where}: {finding}" for finding in wording.findings(text, language)]
            if not wording.names_sender(text):
                problems.append(f"{where}: does not identify the sender ({wording.sender.placeholder})")
    return problems


def template_problems(strategy: Strategy, book: TemplateBook, profiles: dict[str, Profile] | None = None,
                      wording: Wording | None = None) -> list[str]:
    """What stops this strategy's templates from going out in any jurisdiction: the lint, an SMS
    or e-mail without the opt-out the loan's profile requires, a validation notice missing."""
    wording = wording or load_wording()
    problems = lint_templates(book, wording)
    used = strategy.template_channels()
    for jurisdiction in JURISDICTIONS:
        profile = profile_for(Loan.model_construct(jurisdiction=jurisdiction), strategy, profiles)
        language = language_for(jurisdiction)
        needed = dict(used)
        if profile.validation_notice:
            # By post; by e-mail too where the profile lets it go that way (with the opt-out it requires).
            needed[VALIDATION_NOTICE] = {Channel.LETTER} | (
                {Channel.EMAIL} if profile.validation_by_email != "never" else set())
        for name, channels in sorted(needed.items()):
            if name not in book.names(language) and name not in book.names("en"):
                problems.append(f"templates/{language}/{name}.txt: missing (needed for {jurisdiction} loans)")
                continue
            must_opt_out = sorted(c.value for c in channels & set(profile.opt_out_required))
            if must_opt_out and not wording.has_opt_out(book.source(name, language), language):
                problems.append(f"templates/{language}/{name}.txt: no opt-out instruction, which the "
                                f"{profile.name} profile requires on {', '.join(must_opt_out)}")
    return sorted(set(problems))


__all__ = ["ComplianceError", "Profile", "Tightening", "Wording", "check_tightening", "lint_templates",
           "load_profiles", "load_wording", "profile_for", "records_years", "template_problems"]
