"""A 2x2 factorial comparison: two main effects and their interaction, each a contrast
(a weighted sum) of the four configurations' mean accuracies.

Each contrast is estimated with Welch-Satterthwaite: every sample keeps its own variance,
no equal-variance assumption. Configurations whose runs were identical at every seed
(twins, `kvt.compare.design`) are one sample, not two: their weights are added and their
runs counted once. An effect whose weights cancel over twins (the API's, when `--api
keras` and `--api tf` train identically) is then exactly 0, "identical at every seed",
with no interval made up from runs counted twice; the others are estimated with the
distinct results really measured (two twin pairs: 5 against 5, not 10 against 10).

Where every distinct sample ran the same seeds, each on one kind of machine, the seed can
be taken as a block: the contrast computed within each seed, and Student's t on those
per-seed values (`block`). It is shown beside Welch; the verdict follows Welch, chosen
before any data: it is valid whether or not the seed ties the configurations' results,
and nothing guarantees that it does (configurations that build different models draw
different initial weights from one seed).

Intervals are family-wise over the three effects the design sets out to test: each at
1 - ALPHA/3 (Bonferroni), p-values Holm-adjusted. The family stays three when an effect
turns out exactly 0 (it counts with p = 1), so the level does not depend on the data.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Mapping, Sequence

import numpy as np

from kvt.compare.stats import ALPHA, CONFIDENCE, clip, one_sample

Cell = tuple[str, str]
Sample = Sequence[float] | Mapping[int, float]  # accuracies, or accuracies by seed


@dataclasses.dataclass
class Effect:
    """A contrast of configuration means (a main effect or an interaction), in fractions:
    the estimate, its Welch-Satterthwaite standard error and degrees of freedom, the
    interval at the family-wise confidence (each effect at 1 - ALPHA / family), the raw
    and the Holm-adjusted p-value, and the verdict. `identical_seeds` > 0: the effect is
    exactly 0 because the levels it compares gave identical runs at that many seeds.
    `block`: the same effect with seed as a block, where the design allows it."""

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
    identical_seeds: int = 0
    n: list[int] = dataclasses.field(default_factory=list)  # runs per distinct sample used
    block: dict | None = None


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


def _by_seed(sample: Sample) -> dict[int, float]:
    return dict(sample) if isinstance(sample, Mapping) else dict(enumerate(sample))


def _words(est: float, se: float, low: float, high: float, p_holm: float) -> str:
    if se == 0:
        return "identical in every run" if est == 0 else "no spread to judge by"
    if p_holm < ALPHA:
        return (f"{100 * est:+.2f} points ({100 * low:+.2f} to {100 * high:+.2f}), "
                f"p = {p_holm:.3g} after Holm's correction")
    return (f"no evidence of an effect (p = {p_holm:.2f} after Holm's correction); "
            f"it lies between {100 * low:+.2f} and {100 * high:+.2f} points")


def factorial(cells: dict[Cell, Sample], factors: tuple[str, str],
              levels: tuple[tuple[str, str], tuple[str, str]],
              twins: Sequence[tuple[Sequence[Cell], int]] = (),
              blocked: bool = False) -> list[Effect] | None:
    """The two main effects and the interaction of a 2x2 grid, or None if a distinct
    sample has fewer than 2 runs. `cells[(a, b)]` holds the accuracies at level a of the
    first factor and b of the second (by seed, for the block analysis); each factor's
    first level is its reference. A main effect is the change from the reference level
    averaged over the other factor's two levels; the interaction is how much the second
    factor's effect changes with the first. `twins`: groups of cells with identical runs
    and at how many seeds, each counted once (the first cell's sample stands for the
    group). `blocked`: also estimate each effect with seed as a block."""
    (a0, a1), (b0, b1) = levels
    order = [(a0, b0), (a0, b1), (a1, b0), (a1, b1)]
    rep = {c: c for c in order}
    same: dict[Cell, int] = {}
    for members, seeds in twins:
        for m in members:
            rep[m] = members[0]
        same[members[0]] = seeds
    distinct = list(dict.fromkeys(rep[c] for c in order))
    samples = {c: _by_seed(cells[c]) for c in distinct}
    if any(len(samples[c]) < 2 for c in distinct):
        return None
    fa, fb = factors
    specs = [  # name, meaning, weights over `order`
        (fa, f"{fa} {a1} minus {a0}, averaged over {fb}", (-0.5, -0.5, 0.5, 0.5)),
        (fb, f"{fb} {b1} minus {b0}, averaged over {fa}", (-0.5, 0.5, -0.5, 0.5)),
        (f"{fa} x {fb}", f"the {fb} effect under {fa} {a1} minus under {a0}", (1, -1, -1, 1)),
    ]
    confidence = 1 - ALPHA / len(specs)
    raw = []  # per effect: (weights by distinct sample, Welch result or None, block or None)
    for _, _, weights in specs:
        w = dict.fromkeys(distinct, 0.0)
        for c, wi in zip(order, weights):
            w[rep[c]] += wi
        used = [c for c in distinct if abs(w[c]) > 1e-12]
        if not used:  # the levels compared are twins: nothing was measured twice
            raw.append((used, None, None))
            continue
        welch = contrast([list(samples[c].values()) for c in used], [w[c] for c in used],
                         confidence)
        block = None
        seeds = sorted(set.intersection(*(set(samples[c]) for c in used)))
        if blocked and len(seeds) >= 2:
            block = one_sample([sum(w[c] * samples[c][s] for c in used) for s in seeds],
                               confidence)
        raw.append((used, welch, block))
    adjusted = holm([r[1][5] if r[1] else 1.0 for r in raw])
    blocks = [r[2] for r in raw]
    block_holm = holm([b.p_value if b else 1.0 for b in blocks])
    effects = []
    for (name, meaning, _), (used, welch, block), p_holm, b_holm in zip(specs, raw, adjusted,
                                                                       block_holm):
        if welch is None:
            seeds = min(same.values())
            effects.append(Effect(name, meaning, 0.0, 0.0, math.nan, 0.0, 0.0, math.nan,
                                  math.nan, f"identical at every seed ({seeds} seeds): exactly "
                                  f"0, nothing to estimate", identical_seeds=seeds))
            continue
        est, se, df, low, high, p = welch
        low, high, _ = clip(low, high, -1.0, 1.0)
        effects.append(Effect(name, meaning, est, se, df, low, high, p, p_holm,
                              _words(est, se, low, high, p_holm),
                              n=[len(samples[c]) for c in used],
                              block={**dataclasses.asdict(block), "p_holm": b_holm}
                              if block else None))
    return effects
