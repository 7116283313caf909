"""Days past due, as the ladder's buckets (M1, M2, M3, ...): what the portfolio page breaks cases down
by and what roll rates move between. Pure: a number of days in, a bucket's name out."""

from __future__ import annotations

# (name, from, to); None: no end. The first bucket starts at DPD 1: a loan with nothing past due
# (DPD 0) is "current".
DPD_BUCKETS: tuple[tuple[str, int, int | None], ...] = (
    ("1-30", 1, 30), ("31-60", 31, 60), ("61-90", 61, 90), ("91-120", 91, 120), ("121-180", 121, 180),
    ("181+", 181, None))
CURRENT = "current"
# From least to most delinquent: a case rolls forward when it moves right, back when it moves left.
BUCKET_ORDER: tuple[str, ...] = (CURRENT, *(name for name, _, _ in DPD_BUCKETS))


def bucket_of(dpd: int) -> str:
    """The bucket of ``dpd`` days past due: "current" for 0 or less."""
    if dpd <= 0:
        return CURRENT
    if dpd < len(_BY_DAY):
        return _BY_DAY[dpd]
    return DPD_BUCKETS[-1][0]


def _bucket(dpd: int) -> str:
    for name, _, high in DPD_BUCKETS:
        if high is None or dpd <= high:
            return name
    raise AssertionError("the last bucket has no end")  # pragma: no cover


# Reports ask for millions of buckets: each day up to the last bucket's start, looked up.
_BY_DAY = tuple(_bucket(dpd) if dpd > 0 else CURRENT for dpd in range(DPD_BUCKETS[-1][1] + 1))
