"""E-sign consent at intake: an optional ``esign_consent`` column (yes/no); without it, no consent.
A notice owed in writing may go by e-mail only to a borrower who consented."""

from __future__ import annotations

from pathlib import Path

import pytest

from domain.errors import Rejected
from domain.loan import Loan
from starter import read_portfolio
from tests.conftest import ROOT, make_loan


@pytest.mark.parametrize(("value", "consent"), [
    ("true", True), ("yes", True), ("1", True), ("YES", True), (" True ", True),
    ("false", False), ("no", False), ("0", False), ("", False),
])
def test_the_esign_consent_column_reads_yes_or_no(value: str, consent: bool) -> None:
    assert make_loan(esign_consent=value).esign_consent is consent


def test_a_loan_without_the_column_has_no_consent() -> None:
    assert make_loan().esign_consent is False
    # A case started before the field existed reads its loan without it.
    old = make_loan().model_dump(mode="json")
    del old["esign_consent"]
    assert Loan.model_validate(old).esign_consent is False


@pytest.mark.parametrize("value", ["maybe", "consented", "2", "ja"])
def test_a_bad_esign_consent_is_rejected_naming_the_field(value: str) -> None:
    with pytest.raises(Rejected) as caught:
        make_loan(esign_consent=value)
    assert caught.value.field == "esign_consent" and value in caught.value.reason


def test_intake_reads_the_column_and_reports_a_bad_value_with_its_line(tmp_path: Path) -> None:
    sample = (ROOT / "examples" / "portfolio.csv").read_text(encoding="utf-8").splitlines()
    header, rows = sample[0], sample[1:4]
    path = tmp_path / "portfolio.csv"
    path.write_text("\n".join([header + ",esign_consent", rows[0] + ",yes", rows[1] + ",perhaps", rows[2] + ","])
                    + "\n", encoding="utf-8")
    loans, rejected = read_portfolio(path)
    assert [(line, loan.esign_consent) for line, loan in loans] == [(2, True), (4, False)]
    assert len(rejected) == 1 and rejected[0][0] == 3 and rejected[0][1].startswith("esign_consent:")
