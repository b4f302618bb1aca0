"""How the runs of a sweep relate to each other: configurations that gave identical runs
(twins, counted once), and configurations whose runs pair up seed by seed.

On TensorFlow, `--api keras` and `--api tf` train bit-identically at every seed, so a
grid that varies the API holds each result twice. Taken as independent samples, such
twins look like twice the runs that were measured and make every interval about √2 too
narrow. Two configurations are twins here when, at every seed both finished (at least
MIN_SEEDS), their accuracy is equal and, where both runs recorded them, their test loss
and their learning curves (every epoch's losses and accuracies, timings aside) too.

A run is anything with `accuracy`, `loss`, `history` and `machine` attributes (a
`kvt.compare.results.SeedResult`); `runs` maps each configuration's label to its
finished runs by seed.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

# One equal accuracy can be chance (a test split of a few hundred images holds few
# possible values); equal at two seeds or more, with equal losses where recorded, is not.
MIN_SEEDS = 2

Runs = Mapping[str, Mapping[int, Any]]


@dataclasses.dataclass
class Twins:
    """Configurations whose runs were identical at every seed they all finished."""

    labels: list[str]  # in the plan's order; the first stands for the others
    seeds: int  # how many seeds every one of them finished, identical at each
    evidence: str  # what was found equal, in words

    def words(self) -> str:
        return (f"{' and '.join(self.labels)} gave identical runs at every seed "
                f"({self.seeds} seeds: {self.evidence})")


def _curves(history: dict[str, list[float]] | None) -> dict[str, list[float]] | None:
    """A learning curve without its timings, which differ between identical runs."""
    if not history:
        return None
    return {k: v for k, v in history.items() if not k.endswith("seconds")}


def agreement(a: Any, b: Any) -> frozenset[str] | None:
    """What two finished runs were compared on (all of it equal), or None if they
    differ in anything both recorded."""
    if a.accuracy != b.accuracy:
        return None
    compared = {"accuracy"}
    if a.loss is not None and b.loss is not None:
        if a.loss != b.loss:
            return None
        compared.add("loss")
    ca, cb = _curves(a.history), _curves(b.history)
    if ca is not None and cb is not None:
        if ca != cb:
            return None
        compared.add("curves")
    return frozenset(compared)


def evidence_words(compared: frozenset[str]) -> str:
    things = ["accuracy"] + (["test loss"] if "loss" in compared else [])
    words = "the same " + " and ".join(things)
    if "curves" in compared:
        words = words.replace(" and ", ", ") + " and learning curve at every epoch"
    if compared == {"accuracy"}:
        words += ", the only measure both records hold"
    return words


def twins(runs: Runs) -> list[Twins]:
    """The groups of two or more configurations with identical runs, in the plan's order
    (`runs` is ordered as the plan is)."""
    labels = list(runs)
    group = {label: label for label in labels}  # union-find: each label's representative
    compared: dict[str, frozenset[str]] = {}

    def root(label: str) -> str:
        while group[label] != label:
            label = group[label]
        return label

    for i, a in enumerate(labels):
        for b in labels[i + 1:]:
            shared = sorted(set(runs[a]) & set(runs[b]))
            if len(shared) < MIN_SEEDS:
                continue
            found = [agreement(runs[a][s], runs[b][s]) for s in shared]
            if all(f is not None for f in found):
                ra, rb = root(a), root(b)
                common = frozenset.intersection(*found, *(compared[r] for r in (ra, rb)
                                                          if r in compared))
                group[rb] = ra
                compared[ra] = common
    out = []
    for label in labels:
        members = [m for m in labels if root(m) == label]
        if len(members) > 1:
            seeds = set.intersection(*(set(runs[m]) for m in members))
            out.append(Twins(members, len(seeds), evidence_words(compared[label])))
    return out


def merged(runs: Runs, labels: list[str]) -> dict[int, float]:
    """One accuracy per seed for twins `labels`: each distinct run counted once (a seed
    that only some of them finished counts too)."""
    out: dict[int, float] = {}
    for label in labels:
        for seed, run in runs[label].items():
            out.setdefault(seed, run.accuracy)
    return dict(sorted(out.items()))


def seed_list(seeds: list[int]) -> str:
    names = [str(s) for s in seeds]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def pairing(runs: Runs) -> tuple[bool, str]:
    """Whether the configurations of `runs` pair up by seed (every one finished the same
    seeds, at least 2, and no seed ran them on different machines as recorded), and why
    or why not, in words."""
    seed_sets = {frozenset(r) for r in runs.values()}
    if len(seed_sets) != 1:
        return False, "the configurations did not finish the same seeds"
    seeds = sorted(next(iter(seed_sets)))
    if len(seeds) < 2:
        return False, "fewer than 2 seeds in common"
    machines = {s: {r[s].machine for r in runs.values()} for s in seeds}
    mixed = [s for s in seeds if len(machines[s] - {None}) > 1]
    if mixed:
        return False, (f"at seed{'s' if len(mixed) > 1 else ''} "
                       f"{seed_list(mixed)} the configurations ran on different machines, so "
                       f"a per-seed difference would mix in the machine")
    unknown = any(None in m for m in machines.values())
    return True, (f"the configurations ran the same {len(seeds)} seeds"
                  + (" (the records do not say where every run ran)" if unknown
                     else ", each seed on one kind of machine"))
