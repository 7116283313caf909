"""Load the compliance profiles (``compliance/profiles.toml``) into validated models."""

from __future__ import annotations

import tomllib
from functools import cache
from pathlib import Path

from pydantic import ValidationError

from domain.compliance import Profile, Tightening, resolve
from domain.loan import JURISDICTIONS, Loan
from domain.strategy import Strategy
from infra.settings import project_root

PROFILES_FILE = project_root() / "compliance" / "profiles.toml"


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


def check_tightening(strategy: Strategy, profiles: dict[str, Profile] | None = None) -> None:
    """Fail early, naming the strategy, when its tightening cannot apply to every jurisdiction."""
    for jurisdiction in JURISDICTIONS:
        profile_for(Loan.model_construct(jurisdiction=jurisdiction), strategy, profiles)


__all__ = ["ComplianceError", "Profile", "Tightening", "check_tightening", "load_profiles", "profile_for"]
