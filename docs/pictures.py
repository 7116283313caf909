"""The README's pictures of the strategy lab: a seeded simulation (lab/behaviour.toml) of the
champion and the challenger over a synthetic portfolio, its report as text, and each chart as PNG.

    .venv/bin/python docs/pictures.py [--cases 300] [--seed 16]

Writes docs/images/lab-*.png and docs/images/lab-report.txt; the same seed writes the same figures.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from activities.templates import TemplateBook  # noqa: E402
from domain.loan import Loan  # noqa: E402
from infra.strategies import load_lab_strategy  # noqa: E402
from lab.__main__ import render  # noqa: E402
from lab.behaviour import load_behaviour  # noqa: E402
from lab.portfolio import synthetic_rows  # noqa: E402
from lab.simulate import kpi_report, simulate  # noqa: E402
from reports.charts import png_files  # noqa: E402

IMAGES = ROOT / "docs" / "images"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=300)
    parser.add_argument("--seed", type=int, default=16)
    args = parser.parse_args()
    book = TemplateBook(ROOT / "templates")
    strategies = [load_lab_strategy(name, ROOT / "strategies", book) for name in ("default", "early_contact")]
    loans = [Loan.from_row(row) for row in synthetic_rows(args.cases, args.seed)]
    behaviour = load_behaviour()
    sim = await simulate(loans, strategies, behaviour, days=180, seed=args.seed)
    IMAGES.mkdir(parents=True, exist_ok=True)
    text = render(sim, behaviour, "table", portfolio=f"{args.cases} synthetic loans (python -m lab portfolio "
                  f"--cases {args.cases} --seed {args.seed})", behaviour_file="lab/behaviour.toml")
    (IMAGES / "lab-report.txt").write_text(text, encoding="utf-8")
    for path in png_files(kpi_report(sim), IMAGES):
        path.rename(path.with_name(f"lab-{path.name}"))
    print(f"wrote {IMAGES}/lab-report.txt and the charts")


if __name__ == "__main__":
    asyncio.run(main())
