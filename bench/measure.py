"""Figures: alternating runs, their medians and spreads, ratios against a baseline, and goals."""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Callable, Mapping

Sample = dict[str, float]  # what one run measured: e.g. {"s": 12.3, "peak_rss_mib": 64.0}


@dataclasses.dataclass(frozen=True)
class Goal:
    """A bound on a figure's median ratio (``on="ratio"``) or on its largest value (``on="max"``)."""

    text: str  # as the issue states it
    at_most: float | None = None
    at_least: float | None = None
    on: str = "ratio"

    def judge(self, measured: float) -> tuple[bool, str]:
        """Whether ``measured`` meets the goal, and if not, by how much it misses."""
        if self.at_most is not None and measured > self.at_most:
            return False, f"misses by {measured / self.at_most - 1:.1%} (above {self.at_most:g})"
        if self.at_least is not None and measured < self.at_least:
            return False, f"misses by {1 - measured / self.at_least:.1%} (below {self.at_least:g})"
        return True, "pass"


@dataclasses.dataclass(frozen=True)
class Spread:
    median: float
    low: float
    high: float

    @classmethod
    def of(cls, values: list[float]) -> Spread:
        return cls(statistics.median(values), min(values), max(values))


@dataclasses.dataclass(frozen=True)
class Figure:
    """One line of the results: a candidate's values, its baseline's, and their ratio per round."""

    row: str  # the module that measured it
    name: str  # what is measured
    unit: str  # of the values
    candidate: list[float]
    goal: Goal
    baseline_name: str = "—"
    baseline: list[float] = dataclasses.field(default_factory=list)
    ratio_name: str = ""  # how the ratio reads, e.g. "runner / pg_dump"
    ratios: list[float] = dataclasses.field(default_factory=list)  # one per round
    notes: str = ""
    failures: list[str] = dataclasses.field(default_factory=list)  # what fails the figure whatever its values

    @property
    def measured(self) -> float:
        """What the goal judges: the median ratio, or the largest value."""
        return max(self.candidate) if self.goal.on == "max" else statistics.median(self.ratios)

    def verdict(self) -> tuple[bool, str]:
        if self.failures:
            return False, "; ".join(self.failures)
        return self.goal.judge(self.measured)

    def to_json(self) -> dict:
        passed, verdict = self.verdict()
        fields = dataclasses.asdict(self)
        fields["goal"] = self.goal.text
        for key in ("candidate", "baseline", "ratios"):
            if getattr(self, key):
                fields[f"{key}_median_min_max"] = dataclasses.astuple(Spread.of(getattr(self, key)))
        return {**fields, "passed": passed, "verdict": verdict}


def rounds(variants: Mapping[str, Callable[[], Sample]], *, repeats: int, log) -> dict[str, list[Sample]]:
    """Run every variant once per round, in order (the baseline first), ``repeats`` rounds.

    Alternating rounds, rather than all of one variant and then all of the next, spread a slow
    spell of the machine over every variant instead of charging it to one.
    """
    samples: dict[str, list[Sample]] = {name: [] for name in variants}
    for number in range(1, repeats + 1):
        for name, run in variants.items():
            sample = run()
            samples[name].append(sample)
            log(f"round {number}/{repeats} {name}: " + ", ".join(f"{k}={v:.2f}" for k, v in sample.items()))
    return samples


def values(samples: list[Sample], key: str) -> list[float]:
    return [sample[key] for sample in samples]


def ratios(candidate: list[float], baseline: list[float]) -> list[float]:
    """candidate / baseline, round by round."""
    return [c / b for c, b in zip(candidate, baseline, strict=True)]
