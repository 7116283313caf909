"""Load strategy files (TOML) into validated :class:`Strategy` models."""

from __future__ import annotations

import tomllib
from pathlib import Path

from pydantic import ValidationError

from activities.templates import TemplateBook
from domain.strategy import Strategy


class StrategyError(ValueError):
    """A strategy file is unusable; the message names the file, the key and the reason."""


def resolve(name_or_path: str, strategies_dir: Path) -> Path:
    candidate = Path(name_or_path)
    if candidate.suffix == ".toml":
        return candidate
    return strategies_dir / f"{name_or_path}.toml"


def load_strategy(name_or_path: str, strategies_dir: Path, templates: TemplateBook | None = None) -> Strategy:
    path = resolve(name_or_path, strategies_dir)
    if not path.exists():
        available = ", ".join(sorted(p.stem for p in strategies_dir.glob("*.toml")))
        raise StrategyError(f"{path}: no such strategy (available: {available})")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as err:
        raise StrategyError(f"{path}: not valid TOML: {err}") from None
    try:
        strategy = Strategy.model_validate(data)
    except ValidationError as err:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(top level)'}: {e['msg']}" for e in err.errors())
        raise StrategyError(f"{path}: {problems}") from None
    if templates is not None:
        for language in templates.languages():
            missing = sorted(strategy.templates() - templates.names(language))
            if missing:
                raise StrategyError(f"{path}: templates missing in {language}: {', '.join(missing)}")
    return strategy



