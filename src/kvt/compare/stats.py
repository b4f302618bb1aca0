"""The statistics of `kvt compare`: is one configuration's accuracy really different?

Each configuration is trained with several seeds; its test (or validation) accuracies
are a small sample. Per configuration: mean, sample standard deviation and the 95%
confidence interval of the mean (Student's t). Per pair against the baseline: the
difference of means with Welch's t interval and p-value (no equal-variance
assumption), and a percentile bootstrap interval as a check that does not lean on
normality. Values are fractions (0.743); `points` below are percentage points.

Where both configurations ran the same seeds, the difference can also be estimated from
the per-seed differences (a paired t interval, `paired`). The verdict still follows
Welch: a seed fixes two different configurations' initial weights and data order only
where they draw them alike, so nothing guarantees that it ties their results, and
Welch's interval is valid whether it does or not. The paired one, beside it, shows how
much the seed does tie them. Two configurations whose runs are identical at every seed
(`identical`) are one result, not two samples: their difference is exactly 0.

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
    identical_seeds: int = 0  # > 0: the two gave identical runs at this many seeds
    paired: dict | None = None  # the paired-by-seed analysis (`Paired`), where it applies
    pairing: str = ""  # why the runs were (or were not) analysed as pairs


@dataclasses.dataclass
class Paired:
    """`other` minus `baseline` from per-seed differences: n pairs, the mean difference,
    its standard error, df = n - 1, the t interval and the two-sided p."""

    n: int
    diff: float
    se: float
    df: float
    ci_low: float
    ci_high: float
    p_value: float


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


def one_sample(values: Sequence[float], confidence: float = CONFIDENCE) -> Paired:
    """Student's t for the mean of `values` (per-seed differences or contrasts) against
    0. Needs at least 2 values."""
    from scipy import stats

    x = np.asarray(values, dtype=float)
    n, mean = len(x), float(x.mean())
    se = float(x.std(ddof=1)) / math.sqrt(n)
    if se == 0:
        return Paired(n, mean, 0.0, n - 1, mean, mean, 1.0 if mean == 0 else 0.0)
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * se
    p = float(2 * stats.t.sf(abs(mean) / se, n - 1))
    low, high, _ = clip(mean - half, mean + half, -1.0, 1.0)
    return Paired(n, mean, se, n - 1, low, high, p)


def paired(baseline: dict[int, float], other: dict[int, float]) -> Paired:
    """mean(other - baseline) over the seeds both ran, from the per-seed differences."""
    seeds = sorted(set(baseline) & set(other))
    return one_sample([other[s] - baseline[s] for s in seeds])


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


def identical(baseline_name: str, other_name: str, seeds: int, n_baseline: int,
              n_other: int, evidence: str) -> Difference:
    """Two configurations whose runs are identical at every seed both ran: one result
    counted twice, so their difference is exactly 0, with no interval to give."""
    words = (f"identical at every seed ({seeds} seeds: {evidence}): the same result, "
             f"so the difference is exactly 0")
    return Difference(other_name, baseline_name, n_other, n_baseline, 0.0, 0.0, math.nan,
                      0.0, 0.0, math.nan, 0.0, 0.0, words, identical_seeds=seeds,
                      pairing="identical runs")


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


def position(value: float, sample: Sequence[float]) -> tuple[float, float]:
    """Where a single value sits in a sample: (the percentage of the sample at or below
    it, its distance from the sample mean in sample standard deviations)."""
    x = np.asarray(sample, dtype=float)
    pct = float(100 * np.mean(x <= value))
    std = float(x.std(ddof=1)) if len(x) > 1 else math.nan
    return pct, (value - float(x.mean())) / std if std else math.nan
