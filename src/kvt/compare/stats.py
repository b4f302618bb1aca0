"""The statistics of `kvt compare`: is one configuration's accuracy really different?

Each configuration is trained with several seeds; its test (or validation) accuracies
are a small sample. Per configuration: mean, sample standard deviation and the 95%
confidence interval of the mean (Student's t). Per pair against the baseline: the
difference of means with Welch's t interval and p-value (no equal-variance
assumption), and a percentile bootstrap interval as a check that does not lean on
normality. Values are fractions (0.743); `points` below are percentage points.

Accuracy lies in [0, 1] and a difference of two in [-1, 1]; at n = 2 a t interval
(t = 12.7) is often wider than that. Intervals are cut to the possible range and say
so (`clipped`): such an interval tells nothing the scale did not already.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import numpy as np

CONFIDENCE = 0.95
ALPHA = 0.05
BOOTSTRAP_RESAMPLES = 10_000


@dataclasses.dataclass
class Summary:
    """One configuration's sample: n, mean, sample std (ddof 1) and the t interval."""

    n: int
    mean: float
    std: float
    ci_low: float
    ci_high: float
    clipped: bool = False  # the t interval reached past 0 or 1 and was cut there


@dataclasses.dataclass
class Difference:
    """`other` minus `baseline`: mean difference, Welch interval and p, bootstrap interval."""

    other: str
    baseline: str
    n_other: int
    n_baseline: int
    diff: float
    se: float
    df: float
    ci_low: float
    ci_high: float
    p_value: float
    boot_low: float
    boot_high: float
    verdict: str
    clipped: bool = False  # the Welch interval reached past -1 or 1 and was cut there


def summarize(values: Sequence[float]) -> Summary:
    x = np.asarray(values, dtype=float)
    n = len(x)
    if n == 0:
        return Summary(0, math.nan, math.nan, math.nan, math.nan)
    mean = float(x.mean())
    if n == 1:
        return Summary(1, mean, math.nan, math.nan, math.nan)
    from scipy import stats

    std = float(x.std(ddof=1))
    half = float(stats.t.ppf(0.5 + CONFIDENCE / 2, n - 1)) * std / math.sqrt(n)
    low, high, clipped = clip(mean - half, mean + half, 0.0, 1.0)
    return Summary(n, mean, std, low, high, clipped)


def clip(low: float, high: float, least: float, most: float) -> tuple[float, float, bool]:
    """(low, high) cut to [least, most], and whether anything was cut."""
    return max(low, least), min(high, most), low < least or high > most


def welch(baseline: Sequence[float], other: Sequence[float]) -> tuple[float, float, float,
                                                                        float, float, float]:
    """(diff, se, df, ci_low, ci_high, p) of mean(other) - mean(baseline), Welch's t."""
    from scipy import stats

    a, b = np.asarray(baseline, dtype=float), np.asarray(other, dtype=float)
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    diff = float(b.mean() - a.mean())
    se = math.sqrt(va + vb)
    if se == 0:
        return diff, 0.0, math.nan, diff, diff, (1.0 if diff == 0 else 0.0)
    test = stats.ttest_ind(b, a, equal_var=False)  # Welch: its df, interval and p
    ci = test.confidence_interval(CONFIDENCE)
    return diff, se, float(test.df), float(ci.low), float(ci.high), float(test.pvalue)


def bootstrap(baseline: Sequence[float], other: Sequence[float],
              seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of mean(other) - mean(baseline), each sample
    resampled on its own."""
    from scipy import stats

    a, b = np.asarray(baseline, dtype=float), np.asarray(other, dtype=float)
    if np.ptp(a) == 0 and np.ptp(b) == 0:
        d = float(b.mean() - a.mean())
        return d, d
    result = stats.bootstrap(
        (b, a), lambda x, y, axis: np.mean(x, axis=axis) - np.mean(y, axis=axis),
        vectorized=True, paired=False, confidence_level=CONFIDENCE, method="percentile",
        n_resamples=BOOTSTRAP_RESAMPLES, rng=np.random.default_rng(seed))
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def compare(baseline_name: str, baseline: Sequence[float], other_name: str,
            other: Sequence[float]) -> Difference:
    """`other` against `baseline`, with a verdict in words."""
    na, nb = len(baseline), len(other)
    if na < 2 or nb < 2:
        nan = math.nan
        words = (f"too few finished runs to tell ({nb} vs {na}; at least 2 seeds "
                 f"each are needed)")
        diff = float(np.mean(other) - np.mean(baseline)) if na and nb else nan
        return Difference(other_name, baseline_name, nb, na, diff, nan, nan, nan, nan, nan,
                          nan, nan, words)
    diff, se, df, low, high, p = welch(baseline, other)
    low, high, clipped = clip(low, high, -1.0, 1.0)
    boot_low, boot_high = bootstrap(baseline, other)
    return Difference(other_name, baseline_name, nb, na, diff, se, df, low, high, p,
                      boot_low, boot_high, verdict(other_name, baseline_name, diff, low, high,
                                                   p, se, nb, na, clipped), clipped)


def verdict(other: str, baseline: str, diff: float, low: float, high: float, p: float,
            se: float, n_other: int, n_baseline: int, clipped: bool = False) -> str:
    """The comparison in words a user can act on."""
    points = 100 * diff
    if se == 0:
        if diff == 0:
            return "identical accuracy in every run: no difference"
        return (f"{other} {'better' if diff > 0 else 'worse'} by {abs(points):.2f} points in "
                f"every run, with no spread to judge the uncertainty by")
    if p < ALPHA:
        half = 100 * (high - low) / 2
        return (f"{other} {'better' if diff > 0 else 'worse'} than {baseline} by "
                f"{abs(points):.2f} ± {half:.2f} points (p = {p:.3g})")
    return (f"no evidence of a difference at n = {n_other} vs {n_baseline} (p = {p:.2f}); "
            f"the true difference could be anywhere from {100 * low:+.2f} to "
            f"{100 * high:+.2f} points" + (" (the interval reaches the limits of the scale: "
                                           "more seeds are needed to narrow it)" if clipped
                                           else ""))


# --- a 2x2 factorial: two effects and their interaction --------------------------------

@dataclasses.dataclass
class Effect:
    """A contrast of configuration means (a main effect or an interaction), in fractions:
    the estimate, its Welch-Satterthwaite standard error and degrees of freedom, the
    interval at the family-wise confidence (each effect at 1 - ALPHA / family), the raw
    and the Holm-adjusted p-value, and the verdict."""

    name: str
    meaning: str
    estimate: float
    se: float
    df: float
    ci_low: float
    ci_high: float
    p_value: float
    p_holm: float
    verdict: str


def contrast(samples: Sequence[Sequence[float]], weights: Sequence[float],
             confidence: float = CONFIDENCE) -> tuple[float, float, float, float, float, float]:
    """(estimate, se, df, ci_low, ci_high, p) of sum(w_i * mean_i), each sample with its
    own variance (Welch-Satterthwaite degrees of freedom, no equal-variance assumption).
    Needs at least 2 values per sample."""
    from scipy import stats

    xs = [np.asarray(s, dtype=float) for s in samples]
    estimate = float(sum(w * x.mean() for w, x in zip(weights, xs)))
    parts = [w * w * x.var(ddof=1) / len(x) for w, x in zip(weights, xs)]
    var = float(sum(parts))
    if var == 0:
        return estimate, 0.0, math.nan, estimate, estimate, (1.0 if estimate == 0 else 0.0)
    df = var ** 2 / sum(p * p / (len(x) - 1) for p, x in zip(parts, xs) if p > 0)
    se = math.sqrt(var)
    half = float(stats.t.ppf(0.5 + confidence / 2, df)) * se
    p = float(2 * stats.t.sf(abs(estimate) / se, df))
    return estimate, se, float(df), estimate - half, estimate + half, p


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (family-wise error), in the input's order."""
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    adjusted, running = [0.0] * len(p_values), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def factorial(cells: dict[tuple[str, str], Sequence[float]], factors: tuple[str, str],
              levels: tuple[tuple[str, str], tuple[str, str]]) -> list[Effect] | None:
    """The two main effects and the interaction of a 2x2 grid, or None if a cell has
    fewer than 2 runs. `cells[(a, b)]` holds the accuracies at level a of the first
    factor and b of the second; each factor's first level is its reference. A main
    effect is the change from the reference level averaged over the other factor's two
    levels; the interaction is how much the second factor's effect changes with the
    first. Intervals are family-wise: each at 1 - ALPHA/3 (Bonferroni), and the
    p-values Holm-adjusted over the three effects."""
    (a0, a1), (b0, b1) = levels
    if any(len(cells[(a, b)]) < 2 for a in (a0, a1) for b in (b0, b1)):
        return None
    order = [(a0, b0), (a0, b1), (a1, b0), (a1, b1)]
    samples = [cells[k] for k in order]
    fa, fb = factors
    specs = [  # name, meaning, weights over `order`
        (fa, f"{fa} {a1} minus {a0}, averaged over {fb}", (-0.5, -0.5, 0.5, 0.5)),
        (fb, f"{fb} {b1} minus {b0}, averaged over {fa}", (-0.5, 0.5, -0.5, 0.5)),
        (f"{fa} x {fb}", f"the {fb} effect under {fa} {a1} minus under {a0}", (1, -1, -1, 1)),
    ]
    confidence = 1 - ALPHA / len(specs)
    raw = [contrast(samples, w, confidence) for _, _, w in specs]
    adjusted = holm([r[5] for r in raw])
    effects = []
    for (name, meaning, _), (est, se, df, low, high, p), p_holm in zip(specs, raw, adjusted):
        low, high, _ = clip(low, high, -1.0, 1.0)
        if se == 0:
            words = "identical in every run" if est == 0 else "no spread to judge by"
        elif p_holm < ALPHA:
            words = (f"{100 * est:+.2f} points ({100 * low:+.2f} to {100 * high:+.2f}), "
                     f"p = {p_holm:.3g} after Holm's correction")
        else:
            words = (f"no evidence of an effect (p = {p_holm:.2f} after Holm's correction); "
                     f"it lies between {100 * low:+.2f} and {100 * high:+.2f} points")
        effects.append(Effect(name, meaning, est, se, df, low, high, p, p_holm, words))
    return effects


def position(value: float, sample: Sequence[float]) -> tuple[float, float]:
    """Where a single value sits in a sample: (the percentage of the sample at or below
    it, its distance from the sample mean in sample standard deviations)."""
    x = np.asarray(sample, dtype=float)
    pct = float(100 * np.mean(x <= value))
    std = float(x.std(ddof=1)) if len(x) > 1 else math.nan
    return pct, (value - float(x.mean())) / std if std else math.nan
