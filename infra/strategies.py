"""Load strategy files (TOML) into validated :class:`Strategy` models."""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError

from activities.templates import TemplateBook
from domain.assignment import Plan, PlanError, parse_plan
from domain.errors import validation_problems
from domain.strategy import Strategy
from infra.toml_files import read_toml

# Files under strategies/ that configure around the strategies rather than being one: the champion/challenger
# plan (domain/assignment.py) and the risk scorecard (domain/scorecard.py).
NOT_STRATEGIES = frozenset({"assignment", "scorecard"})


class StrategyError(ValueError):
    """A strategy file is unusable; the message names the file, the key and the reason."""


def resolve(name_or_path: str, strategies_dir: Path) -> Path:
    candidate = Path(name_or_path)
    if candidate.suffix == ".toml":
        return candidate
    return strategies_dir / f"{name_or_path}.toml"


# Strategies only the lab runs (a control that never contacts anyone): never offered to intake or the sync.
LAB_STRATEGIES = Path(__file__).resolve().parents[1] / "lab" / "strategies"


def load_lab_strategy(name_or_path: str, strategies_dir: Path, templates: TemplateBook | None = None) -> Strategy:
    """A strategy for the lab: one of ``strategies_dir``'s, else one of the lab's own (lab/strategies/)."""
    if not resolve(name_or_path, strategies_dir).exists() and resolve(name_or_path, LAB_STRATEGIES).exists():
        return load_strategy(name_or_path, LAB_STRATEGIES, templates)
    return load_strategy(name_or_path, strategies_dir, templates)


def load_strategy(name_or_path: str, strategies_dir: Path, templates: TemplateBook | None = None) -> Strategy:
    path = resolve(name_or_path, strategies_dir)
    if not path.exists():
        available = ", ".join(sorted(p.stem for p in strategies_dir.glob("*.toml") if p.stem not in NOT_STRATEGIES))
        raise StrategyError(f"{path}: no such strategy (available: {available})")
    data = read_toml(path, StrategyError)
    try:
        strategy = Strategy.model_validate(data)
    except ValidationError as err:
        raise StrategyError(f"{path}: {validation_problems(err)}") from None
    if templates is not None:
        for language in templates.languages():
            missing = sorted(strategy.templates() - templates.names(language))
            if missing:
                raise StrategyError(f"{path}: templates missing in {language}: {', '.join(missing)}")
    return strategy


def load_plan(path: Path) -> Plan | None:
    """The champion/challenger experiment in the file at ``path`` (domain/assignment.py), or None when
    there is no such file (no experiment runs). A file that is there but unusable raises ``PlanError``:
    a half-read experiment would start cases on the wrong strategies."""
    path = Path(path)
    if not path.exists():
        return None
    return parse_plan(read_toml(path, PlanError), str(path))
