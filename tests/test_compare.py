"""The champion/challenger comparison (reports/compare.py): intervals and p-values against published
values and scipy, the sample size against the textbook formula worked out by hand (and against its
promise: at that size the test finds the difference four times in five), and the comparison of a
report's arms in numbers and in words."""

from __future__ import annotations

import math
import random
from datetime import date
from decimal import Decimal
from statistics import NormalDist

import pytest
from scipy import stats

from reports.compare import Comparison, compare, describe, means, proportions, sample_size_proportions, t_quantile
from reports.kpis import Ratio, Report, Row


# -- two proportions ----------------------------------------------------------------------------------


@pytest.mark.parametrize("champion, challenger, low, high", [
    # Newcombe (1998), "Interval estimation for the difference between independent proportions",
    # Statistics in Medicine 17:873-890, Table II, method 10 (score interval, hybrid), to 4 decimals.
    ((48, 80), (56, 70), 0.0524, 0.3339),
    ((3, 10), (9, 10), 0.1705, 0.8090),
    ((0, 20), (0, 10), -0.1611, 0.2775),
])
def test_the_interval_is_newcombes_hybrid_score_interval(champion, challenger, low, high):
    c = proportions("cure_rate", "default", "early_contact", champion, challenger)
    assert (round(c.ci_low, 4), round(c.ci_high, 4)) == (low, high)
    assert c.difference == pytest.approx(challenger[0] / challenger[1] - champion[0] / champion[1])


@pytest.mark.parametrize("champion, challenger", [((48, 80), (56, 70)), ((280, 1000), (66, 200)),
                                                  ((30, 100), (36, 100)), ((500, 900), (90, 180))])
def test_the_p_value_is_the_pooled_z_test_that_is_the_chi_square_test_of_the_table(champion, challenger):
    c = proportions("cure_rate", "default", "early_contact", champion, challenger)
    (x1, n1), (x2, n2) = champion, challenger
    table = [[x1, n1 - x1], [x2, n2 - x2]]
    assert c.p_value == pytest.approx(stats.chi2_contingency(table, correction=False)[1], rel=1e-9)
    pooled = (x1 + x2) / (n1 + n2)  # and by hand: z = d / sqrt(p(1-p)(1/n1 + 1/n2))
    z = (x2 / n2 - x1 / n1) / math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    assert c.p_value == pytest.approx(2 * (1 - NormalDist().cdf(abs(z))), rel=1e-9)
    assert (c.n_champion, c.n_challenger) == (n1, n2)


def test_a_clear_difference_is_significant_and_needs_no_more_cases():
    c = proportions("cure_rate", "default", "early_contact", (48, 80), (56, 70))
    assert c.p_value < 0.01 and c.significant and c.n_needed_per_arm is None


def test_a_difference_not_yet_significant_says_how_many_cases_each_arm_needs():
    c = proportions("cure_rate", "default", "early_contact", (280, 1000), (66, 200))
    assert not c.significant and c.ci_low < 0 < c.ci_high and c.p_value > 0.05
    assert c.n_needed_per_arm == sample_size_proportions(0.28, 0.33)


def test_the_sample_size_is_the_textbook_formula():
    """Fleiss, Levin & Paik (2003) §4.2, without continuity correction, two-sided α = 0.05, power 0.8:
    n = [z(.975)·√(2·p̄·q̄) + z(.8)·√(p1·q1 + p2·q2)]² / (p1 − p2)².
    For 0.50 against 0.60: p̄ = 0.55; 1.959964 × √0.495 = 1.378956; 0.841621 × √0.49 = 0.589135;
    (1.968091)² / 0.01 = 387.34, so 388 per arm."""
    assert sample_size_proportions(0.5, 0.6) == 388 == sample_size_proportions(0.6, 0.5)
    # 0.65 against 0.85: p̄ = 0.75; 1.959964 × √0.375 = 1.200222; 0.841621 × √0.355 = 0.501450;
    # (1.701672)² / 0.04 = 72.39, so 73.
    assert sample_size_proportions(0.65, 0.85) == 73


def test_at_the_size_it_names_the_test_finds_the_difference_four_times_in_five():
    rng = random.Random(16)
    n = sample_size_proportions(0.5, 0.6)
    trials = 1500
    found = 0
    for _ in range(trials):
        x1 = sum(rng.random() < 0.5 for _ in range(n))
        x2 = sum(rng.random() < 0.6 for _ in range(n))
        found += proportions("cure_rate", "a", "b", (x1, n), (x2, n)).significant
    assert abs(found / trials - 0.8) < 0.035  # 3 standard errors of a share of 1500


# -- two means ----------------------------------------------------------------------------------------


def test_means_are_compared_by_welchs_test_as_scipy_computes_it():
    rng = random.Random(3)
    champion = [max(0.0, rng.gauss(0.30, 0.25)) for _ in range(60)]
    challenger = [max(0.0, rng.gauss(0.36, 0.35)) for _ in range(25)]
    c = means("recovery_rate", "default", "early_contact", champion, challenger)
    welch = stats.ttest_ind(challenger, champion, equal_var=False)
    interval = welch.confidence_interval(0.95)
    assert c.p_value == pytest.approx(welch.pvalue, rel=1e-7)
    assert (c.ci_low, c.ci_high) == (pytest.approx(interval.low, rel=1e-7), pytest.approx(interval.high, rel=1e-7))
    assert c.champion_value == pytest.approx(sum(champion) / 60) and c.method == "means"
    assert not c.significant and welch.pvalue > 0.05  # so it says how many cases: (z.975 + z.8)² (s1² + s2²) / d²
    z = NormalDist().inv_cdf(0.975) + NormalDist().inv_cdf(0.8)
    s2 = stats.tvar(champion) + stats.tvar(challenger)
    assert c.n_needed_per_arm == math.ceil(z * z * s2 / c.difference ** 2)


@pytest.mark.parametrize("df", [1, 2.5, 7.3, 30, 400])
def test_the_t_quantile_is_students(df):
    assert t_quantile(0.975, df) == pytest.approx(stats.t.ppf(0.975, df), rel=1e-9)


# -- a report's arms -------------------------------------------------------------------------------------


def row(strategy: str, entered: int, cured: int, promises: tuple[int, int], contacts: tuple[int, int],
        recovery: list[str], **key: str) -> Row:
    return Row(key={"strategy": strategy, **key},
               values={"cases_entered": entered, "cure_rate": Ratio(Decimal(cured), Decimal(entered)),
                       "promise_kept_rate": Ratio(Decimal(promises[0]), Decimal(promises[1])),
                       "right_party_contact_rate": Ratio(Decimal(contacts[0]), Decimal(contacts[1])),
                       "recovery_rate": {"USD": Ratio(Decimal("1000.50"), Decimal("4000.00"))}},
               samples={"recovery_rate": [Decimal(r) for r in recovery]})


def report(*rows: Row, by: tuple[str, ...] = ("strategy",)) -> Report:
    return Report(start=date(2026, 1, 1), end=date(2026, 4, 1), by=by, period="month", rows=list(rows))


CHAMPION = row("default", 1000, 280, (150, 300), (400, 1000), ["0.1", "0.5", "0.3", "0.9", "0.0", "0.2"])
CHALLENGER = row("early_contact", 200, 66, (40, 70), (95, 200), ["0.4", "0.6", "0.2", "1.0", "0.3"])


def test_each_metric_of_the_challenger_is_compared_with_the_champion():
    found = {c.metric: c for c in compare(report(CHALLENGER, CHAMPION))}
    assert list(found) == ["cure_rate", "promise_kept_rate", "right_party_contact_rate", "recovery_rate"]
    assert all((c.champion, c.challenger) == ("default", "early_contact") for c in found.values())
    cure = found["cure_rate"]
    assert cure == proportions("cure_rate", "default", "early_contact", (280, 1000), (66, 200))
    assert found["promise_kept_rate"].n_champion == 300 and found["right_party_contact_rate"].n_challenger == 200
    recovery = found["recovery_rate"]  # the mean of each case's own ratio, not the per-currency total
    assert recovery.method == "means" and (recovery.n_champion, recovery.n_challenger) == (6, 5)
    assert recovery.champion_value == pytest.approx(2.0 / 6) and recovery.challenger_value == pytest.approx(0.5)


def test_the_champion_is_the_one_named_or_marked_else_the_arm_with_the_most_cases():
    assert {c.champion for c in compare(report(CHAMPION, CHALLENGER), champion="early_contact")} == {"early_contact"}
    marked = report(row("default", 100, 20, (1, 2), (1, 2), ["0", "1"], arm="challenger"),
                    row("cautious", 50, 20, (1, 2), (1, 2), ["0", "1"], arm="champion"),
                    row("demo", 900, 20, (1, 2), (1, 2), ["0", "1"], arm="(none)"),  # outside the experiment
                    by=("strategy", "arm"))
    assert {(c.champion, c.challenger) for c in compare(marked)} == {("cautious", "default")}
    assert compare(report(CHAMPION)) == []


def test_other_dimensions_split_the_comparison():
    split = report(row("default", 500, 150, (1, 2), (1, 2), ["0", "1"], grade="A"),
                   row("early_contact", 100, 40, (1, 2), (1, 2), ["0", "1"], grade="A"),
                   row("default", 500, 100, (1, 2), (1, 2), ["0", "1"], grade="E"),
                   row("early_contact", 100, 10, (1, 2), (1, 2), ["0", "1"], grade="E"),
                   by=("strategy", "grade"))
    cures = [c for c in compare(split, metrics=("cure_rate",))]
    assert [(c.within, c.challenger_value) for c in cures] == [({"grade": "A"}, 0.4), ({"grade": "E"}, 0.1)]


def test_metrics_an_arm_has_no_data_for_are_left_out():
    empty = Row(key={"strategy": "early_contact"}, values={"cases_entered": 0, "cure_rate": Ratio(Decimal(0), Decimal(0)),
                                                          "promise_kept_rate": None}, samples={"recovery_rate": []})
    assert compare(report(CHAMPION, empty)) == []
    with pytest.raises(ValueError, match="by strategy"):
        compare(report(CHAMPION, by=("grade",)))


# -- in words --------------------------------------------------------------------------------------------


def comparison(**fields) -> Comparison:
    base = dict(metric="cure_rate", champion="default", challenger="early_contact", champion_value=0.28,
                challenger_value=0.33, difference=0.05, ci_low=-0.012, ci_high=0.118, p_value=0.121,
                significant=False, n_champion=1000, n_challenger=200, n_needed_per_arm=1340)
    return Comparison(**{**base, **fields})


def test_the_words_say_how_many_more_cases_each_arm_needs():
    text = describe([comparison()])
    assert text.splitlines()[0] == "early_contact (challenger) against default (champion)"
    assert ("cure rate: 33.0 % against 28.0 % (200 and 1,000 cases), +5.0 points (95 % CI -1.2 points to "
            "+11.8 points), p = 0.121: not yet significant: 1,140 more for early_contact and 340 more for default "
            "(1,340 cases per arm detect a difference this size)") in text
    equal = describe([comparison(n_champion=500, n_challenger=500)])
    assert "not yet significant: 840 more cases per arm needed" in equal
    enough = describe([comparison(n_champion=2000, n_challenger=1500)])
    assert "not significant, though each arm has the 1,340 cases" in enough
    assert "p < 0.001: significant, early_contact higher" in describe(
        [comparison(significant=True, n_needed_per_arm=None, p_value=0.0004)])
    assert "no difference observed" in describe([comparison(difference=0.0, n_needed_per_arm=None)])
    assert describe([]).startswith("no arms to compare")


def test_a_comparison_of_a_real_report_reads_as_sentences():
    text = describe(compare(report(CHAMPION, CHALLENGER)))
    assert "promise kept rate: 57.1 % against 50.0 % (70 and 300 promises judged)" in text
    assert "recovery rate: 50.0 % against 33.3 % (5 and 6 cases)" in text


# -- only the cases an experiment drew ---------------------------------------------------------------------
def _cases(prefix: str, count: int, cured: int, *, strategy: str, arm: str | None) -> list:
    from tests.test_kpis import case, ev, opened

    drawn = {"experiment": "trial", "arm": arm} if arm else {"experiment": None, "arm": None}
    return [event for n in range(count) for event in case(
        f"{prefix}-{n}", "2026-10-23",
        opened("11-02 09:00", stage="reminder", dpd=10, past_due="100.00", outstanding="1000.00", grade="B",
               strategy=strategy, **drawn),
        *([ev("11-05 09:00", "payment_received", "accepted", amount="100.00", amount_past_due="0.00",
              outstanding="900.00"),
           ev("11-05 09:00", "case_closed", outcome="cured")] if n < cured else []))]


def test_the_comparison_counts_only_the_cases_the_experiment_drew_not_those_started_on_a_named_strategy():
    from reports.compare import compare_arms
    from reports.kpis import compute

    events = (_cases("CH", 10, 5, strategy="default", arm="champion")  # drawn: 5 of 10 cured
              + _cases("CL", 10, 8, strategy="early_contact", arm="challenger")  # drawn: 8 of 10
              + _cases("NAMED", 30, 30, strategy="default", arm=None))  # --strategy default: every one cured
    start, end = date(2026, 11, 1), date(2026, 12, 1)
    report = compute(events, start, end, by=("strategy",))
    assert report.rows[0].values["cure_rate"].numerator + report.rows[1].values["cure_rate"].numerator == 43
    cure = next(c for c in compare_arms(events, report) if c.metric == "cure_rate")
    assert (cure.champion, cure.challenger, cure.n_champion, cure.n_challenger) == ("default", "early_contact", 10, 10)
    assert (round(cure.champion_value, 3), round(cure.challenger_value, 3)) == (0.5, 0.8)
    assert cure.within == {"experiment": "trial"}
    # Without drawn cases (a lab run) the strategies are compared as they are; one strategy has nothing to compare.
    undrawn = _cases("A", 10, 5, strategy="default", arm=None) + _cases("B", 10, 8, strategy="early_contact", arm=None)
    plain = next(c for c in compare_arms(undrawn, compute(undrawn, start, end, by=("strategy",)))
                 if c.metric == "cure_rate")
    assert (plain.n_champion, plain.n_challenger) == (10, 10)
    alone = _cases("A", 10, 5, strategy="default", arm=None)
    assert compare_arms(alone, compute(alone, start, end, by=("strategy",))) is None
    assert compare_arms(events, compute(events, start, end, by=("grade",))) is None
