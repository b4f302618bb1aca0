"""kvt.compare.stats against values computed by hand (and a t distribution integrated here)."""

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


# Test accuracies of the published 30-epoch 2x2 (results/tutorial-2x2/seed), seeds 0-4:
# on TensorFlow the keras and tf API arms trained identically at every seed.
RELU = [0.7454, 0.7261, 0.7478, 0.7494, 0.7185]
CRELU = [0.7689, 0.7621, 0.7725, 0.7662, 0.7709]


def test_a_2x2_whose_api_arms_are_identical_counts_each_result_once():
    from kvt.compare.factorial import factorial

    cells = {("relu", "keras"): RELU, ("relu", "tf"): RELU, ("crelu", "keras"): CRELU,
             ("crelu", "tf"): CRELU}
    levels = (("relu", "crelu"), ("keras", "tf"))
    twins = [([("relu", "keras"), ("relu", "tf")], 5), ([("crelu", "keras"), ("crelu", "tf")], 5)]
    act, api, inter = factorial(cells, ("activation", "api"), levels, twins)

    # By hand: 5 CReLU results against 5 ReLU results, Welch-Satterthwaite.
    def mean(x):
        return sum(x) / len(x)

    def var_of_mean(x):
        return sum((v - mean(x)) ** 2 for v in x) / (len(x) - 1) / len(x)

    v0, v1 = var_of_mean(RELU), var_of_mean(CRELU)
    diff, se = mean(CRELU) - mean(RELU), math.sqrt(v0 + v1)
    df = (v0 + v1) ** 2 / (v0 ** 2 / 4 + v1 ** 2 / 4)
    assert act.estimate == pytest.approx(diff) and diff == pytest.approx(0.03068)
    assert (act.se, act.df) == pytest.approx((se, df))
    assert act.n == [5, 5]
    # Family-wise over the three effects: each interval at 1 - 0.05/3 = 98.3%.
    t_star = (act.ci_high - act.ci_low) / 2 / se
    assert two_sided_p(t_star, df) == pytest.approx(0.05 / 3, abs=1e-6)
    assert (act.ci_low + act.ci_high) / 2 == pytest.approx(diff)
    assert (round(100 * act.ci_low, 2), round(100 * act.ci_high, 2)) == (0.66, 5.47)
    assert act.p_value == pytest.approx(two_sided_p(diff / se, df), abs=1e-6)
    assert act.p_holm == pytest.approx(3 * act.p_value)  # the other two count with p = 1
    assert act.verdict == "+3.07 points (+0.66 to +5.47), p = 0.0198 after Holm's correction"
    # The API's effect and the interaction compare twins: exactly 0, no interval.
    for e in (api, inter):
        assert e.identical_seeds == 5 and e.estimate == 0 and e.se == 0
        assert math.isnan(e.p_value) and math.isnan(e.p_holm)
        assert e.verdict.startswith("identical at every seed (5 seeds)")

    # Counted twice (the old analysis), the same data look about sqrt(2) more precise.
    twice, _, _ = factorial(cells, ("activation", "api"), levels)
    assert twice.estimate == pytest.approx(diff)
    assert (round(100 * twice.ci_low, 2), round(100 * twice.ci_high, 2)) == (1.71, 4.42)
    assert twice.se == pytest.approx(se / math.sqrt(2))


def test_paired_by_seed_by_hand():
    base = {0: 0.70, 1: 0.74, 2: 0.71, 3: 0.76}
    other = {3: 0.78, 0: 0.71, 1: 0.76, 2: 0.74}  # the seeds pair, whatever their order
    d = [0.01, 0.02, 0.03, 0.02]  # per-seed differences: mean 0.02, sd sqrt(0.0002/3)
    got = stats.paired(base, other)
    se = math.sqrt(0.0002 / 3) / 2
    assert (got.n, got.df) == (4, 3)
    assert (got.diff, got.se) == pytest.approx((sum(d) / 4, se))
    assert got.p_value == pytest.approx(two_sided_p(0.02 / se, 3), abs=1e-6)
    assert two_sided_p((got.ci_high - got.ci_low) / 2 / se, 3) == pytest.approx(0.05, abs=1e-6)
    # Welch on the same numbers ignores that seed 1 is high in both: far wider.
    w = stats.compare("a", list(base.values()), "b", list(other.values()))
    assert w.ci_high - w.ci_low > 3 * (got.ci_high - got.ci_low)


def test_seed_as_a_block_in_a_2x2_by_hand():
    from kvt.compare.factorial import factorial

    seed_shift = {0: 0.0, 1: 0.03, 2: -0.02}  # each seed moves all four cells alike
    noise = {("a", "x"): [0.001, 0.0, -0.001], ("a", "y"): [0.0, 0.002, 0.0],
             ("b", "x"): [0.0, -0.001, 0.001], ("b", "y"): [0.002, 0.0, 0.001]}
    shift = {("a", "x"): 0.0, ("a", "y"): 0.0, ("b", "x"): 0.01, ("b", "y"): 0.01}
    cells = {c: {s: 0.7 + shift[c] + seed_shift[s] + noise[c][s] for s in seed_shift}
             for c in shift}
    f, g, inter = factorial(cells, ("f", "g"), (("a", "b"), ("x", "y")), blocked=True)
    # The f effect within each seed: mean of the b cells minus mean of the a cells.
    per_seed = [(cells[("b", "x")][s] + cells[("b", "y")][s] - cells[("a", "x")][s]
                 - cells[("a", "y")][s]) / 2 for s in seed_shift]
    m = sum(per_seed) / 3
    se = math.sqrt(sum((v - m) ** 2 for v in per_seed) / 2 / 3)
    assert (f.block["diff"], f.block["se"], f.block["df"]) == pytest.approx((m, se, 2))
    assert f.block["diff"] == pytest.approx(f.estimate)
    assert two_sided_p((f.block["ci_high"] - f.block["ci_low"]) / 2 / se, 2) == pytest.approx(
        0.05 / 3, abs=1e-6)
    # The seed-to-seed spread that Welch counts as noise cancels within a seed.
    assert f.block["ci_high"] - f.block["ci_low"] < (f.ci_high - f.ci_low) / 3
    assert f.block["p_holm"] < 0.05 < f.p_holm
    assert factorial(cells, ("f", "g"), (("a", "b"), ("x", "y")))[0].block is None
