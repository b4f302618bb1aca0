"""kvt.stats against values computed by hand (and a t distribution integrated here)."""

import math

import numpy as np

import pytest

from kvt.compare import stats

BASE = [0.70, 0.72, 0.74]  # mean 0.72, variance 0.0004
OTHER = [0.73, 0.75, 0.77, 0.79]  # mean 0.76, variance 0.002/3


def t_pdf(x, df):
    c = math.gamma((df + 1) / 2) / (math.sqrt(df * math.pi) * math.gamma(df / 2))
    return c * (1 + x * x / df) ** (-(df + 1) / 2)


def two_sided_p(t, df, steps=20000):
    """1 - 2 * integral_0^|t| of the t density (Simpson's rule): independent of scipy."""
    h = abs(t) / steps
    total = t_pdf(0, df) + t_pdf(abs(t), df)
    total += sum((4 if i % 2 else 2) * t_pdf(i * h, df) for i in range(1, steps))
    return 1 - 2 * total * h / 3


def test_summary_by_hand():
    s = stats.summarize(BASE)
    assert s.n == 3 and s.mean == pytest.approx(0.72) and s.std == pytest.approx(0.02)
    half = 4.302653 * 0.02 / math.sqrt(3)  # t(0.975, df=2) from any t table
    assert (s.ci_low, s.ci_high) == pytest.approx((0.72 - half, 0.72 + half), abs=1e-6)
    one = stats.summarize([0.5])
    assert one.n == 1 and one.mean == 0.5 and math.isnan(one.std) and math.isnan(one.ci_low)
    assert stats.summarize([]).n == 0


def test_welch_by_hand():
    diff, se, df, low, high, p = stats.welch(BASE, OTHER)
    # se^2 = 0.0004/3 + (0.002/3)/4 = 0.0003; df by Welch-Satterthwaite:
    # 0.0003^2 / ((0.0004/3)^2 / 2 + (0.0005/3)^2 / 3) = 4.95918
    assert diff == pytest.approx(0.04)
    assert se == pytest.approx(math.sqrt(0.0003))
    assert df == pytest.approx(4.95918, abs=1e-5)
    t = 0.04 / math.sqrt(0.0003)  # 2.3094
    assert p == pytest.approx(two_sided_p(t, df), abs=1e-6)
    # The interval is diff +- t* se where t* leaves 5% in the two tails.
    assert (low + high) / 2 == pytest.approx(diff)
    t_star = (high - low) / 2 / se
    assert two_sided_p(t_star, df) == pytest.approx(0.05, abs=1e-6)
    # Swapping the groups flips the sign only.
    d2, _, _, l2, h2, p2 = stats.welch(OTHER, BASE)
    assert (d2, l2, h2, p2) == pytest.approx((-diff, -high, -low, p))


def test_bootstrap_is_seeded_and_brackets_the_difference():
    low, high = stats.bootstrap(BASE, OTHER)
    assert (low, high) == stats.bootstrap(BASE, OTHER)
    assert low < 0.04 < high
    # No resample can give a difference beyond the extremes of the data.
    assert min(OTHER) - max(BASE) <= low and high <= max(OTHER) - min(BASE)
    assert stats.bootstrap([0.5, 0.5], [0.6, 0.6]) == pytest.approx((0.1, 0.1))


def test_verdicts_in_words():
    not_sure = stats.compare("keras/relu", BASE, "tf/crelu", OTHER)
    assert not_sure.p_value > 0.05
    assert not_sure.verdict.startswith("no evidence of a difference at n = 4 vs 3 (p = 0.07)")
    assert "anywhere from" in not_sure.verdict

    a = [0.700, 0.705, 0.710, 0.702, 0.708]
    b = [x + 0.009 for x in a[1:]] + [0.716]
    sure = stats.compare("relu", a, "crelu", b)
    assert sure.p_value < 0.05 and sure.ci_low > 0
    half = 100 * (sure.ci_high - sure.ci_low) / 2
    assert sure.verdict == (f"crelu better than relu by {100 * sure.diff:.2f} ± {half:.2f} "
                            f"points (p = {sure.p_value:.3g})")
    worse = stats.compare("crelu", b, "relu", a)
    assert worse.verdict.startswith("relu worse than crelu by")

    few = stats.compare("a", [0.7], "b", [0.8, 0.9])
    assert few.verdict.startswith("too few finished runs to tell (2 vs 1")
    assert math.isnan(few.p_value)
    assert stats.compare("a", [0.7, 0.7], "b", [0.7, 0.7]).verdict.startswith("identical")
    assert "no spread" in stats.compare("a", [0.7, 0.7], "b", [0.8, 0.8]).verdict


def test_intervals_are_cut_to_the_possible_range_and_say_so():
    wide = stats.summarize([0.50, 0.90])  # n = 2: t = 12.7, the interval spans -2 to +3.2
    assert (wide.ci_low, wide.ci_high, wide.clipped) == (0.0, 1.0, True)
    assert not stats.summarize(BASE).clipped
    d = stats.compare("a", [0.10, 0.90], "b", [0.15, 0.95])
    assert (d.ci_low, d.ci_high, d.clipped) == (-1.0, 1.0, True)
    assert "anywhere from -100.00 to +100.00 points (the interval reaches the limits" in d.verdict
    assert not stats.compare("keras/relu", BASE, "tf/crelu", OTHER).clipped


def test_a_two_sample_contrast_is_welchs_test():
    from kvt.compare.factorial import contrast
    from kvt.compare.stats import welch

    a, b = [0.70, 0.72, 0.75, 0.71], [0.74, 0.78, 0.73, 0.79, 0.77]
    est, se, df, low, high, p = contrast([a, b], [-1, 1])
    w_diff, w_se, w_df, w_low, w_high, w_p = welch(a, b)
    assert (est, se, df, p) == pytest.approx((w_diff, w_se, w_df, w_p))
    assert (low, high) == pytest.approx((w_low, w_high))


def test_holm_adjusts_in_order_and_never_decreases():
    from kvt.compare.factorial import holm

    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])  # 0.9 cannot fall below 1.0


def test_factorial_recovers_the_effects_of_an_additive_grid():
    """Cells = base + api effect + activation effect (+ interaction), the same noise in
    each: the estimates are exactly those effects, the family-wise intervals hold them."""
    from kvt.compare.factorial import factorial

    noise = [-0.01, 0.0, 0.012, -0.002, 0.004]
    def cell(shift):
        return [0.74 + shift + e for e in noise]
    cells = {("keras", "relu"): cell(0.0), ("keras", "crelu"): cell(0.01),
             ("tf", "relu"): cell(0.002), ("tf", "crelu"): cell(0.01 + 0.002 + 0.03)}
    api, act, inter = factorial(cells, ("api", "activation"), (("keras", "tf"), ("relu", "crelu")))
    assert api.estimate == pytest.approx(0.002 + 0.03 / 2)
    assert act.estimate == pytest.approx(0.01 + 0.03 / 2)
    assert inter.estimate == pytest.approx(0.03)
    assert inter.ci_low < 0.03 < inter.ci_high and inter.p_holm < 0.05
    assert "after Holm's correction" in inter.verdict and inter.verdict.startswith("+3.00")
    assert api.p_holm >= api.p_value  # adjusted p-values are never smaller
    # family-wise: each interval at 1 - 0.05/3, wider than a plain 95% one
    from kvt.compare.factorial import contrast
    plain = contrast(list(cells.values()), (1, -1, -1, 1))
    assert inter.ci_high - inter.ci_low > plain[4] - plain[3]


def test_factorial_needs_two_runs_per_cell():
    from kvt.compare.factorial import factorial

    cells = {("a", "x"): [0.7, 0.71], ("a", "y"): [0.7], ("b", "x"): [0.7, 0.72],
             ("b", "y"): [0.7, 0.73]}
    assert factorial(cells, ("f", "g"), (("a", "b"), ("x", "y"))) is None


def test_position_of_a_single_value_in_a_sample():
    from kvt.compare.stats import position

    pct, z = position(0.7432, [0.73, 0.74, 0.75, 0.76])
    assert pct == 50.0 and z == pytest.approx((0.7432 - 0.745) / np.std([0.73, 0.74, 0.75, 0.76], ddof=1))
