"""What the simulated customers ask: intents of a real labelled data set, before and after a shift.

Each chosen intent's utterances are split in two: a *seed* half (what the first student is
trained on, written by `write_seed_csv`) and a *traffic* half (what customers send), so the
student is measured on messages it never saw. After the shift, `shift_share` of the traffic
comes from intents that were absent before (the current student cannot know them).
"""

from __future__ import annotations

import csv
import random
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from distill_worker.data.loaders import load_utterances


class ScenarioError(ValueError):
    """The data set cannot give the scenario asked for; the message says what to change."""


@dataclass(frozen=True)
class Scenario:
    known: dict[str, list[str]]  # intent -> traffic utterances, before and after the shift
    new: dict[str, list[str]]  # intent -> traffic utterances, only after the shift
    seed: list[tuple[str, str]]  # (text, intent) of the known intents, for the first student
    shift_share: float

    def draw(self, rng: random.Random, *, shifted: bool) -> tuple[str, str]:
        """-> (text, true intent) of one customer message."""
        pool = self.new if shifted and rng.random() < self.shift_share else self.known
        intent = rng.choice(sorted(pool))
        return rng.choice(pool[intent]), intent


def build_scenario(
    path: Path,
    *,
    known: int,
    new: int,
    shift_share: float = 0.5,
    per_intent: int = 60,
    seed: int = 0,
    split: str = "train",
    intents: list[str] | None = None,
) -> Scenario:
    """Pick `known` + `new` intents (or the first `known` + `new` of `intents`) at random,
    each with up to `per_intent` utterances (half seed, half traffic)."""
    if known < 2 or new < 1:
        raise ScenarioError("a drift scenario needs at least 2 known intents and 1 new one")
    if not 0.0 < shift_share <= 1.0:
        raise ScenarioError("shift_share is the share of post-shift traffic from new intents")
    by_intent: dict[str, list[str]] = defaultdict(list)
    for row in load_utterances(path, split=split):
        if row.intent and row.intent != "oos":
            by_intent[row.intent].append(row.text)
    rng = random.Random(seed)
    enough = sorted(i for i, texts in by_intent.items() if len(texts) >= 8)
    if intents is not None:
        missing = [i for i in intents if i not in by_intent]
        if missing:
            raise ScenarioError(f"{path} has no intents {', '.join(missing)}")
        chosen = intents[: known + new]
    else:
        chosen = rng.sample(enough, min(len(enough), known + new))
    if len(chosen) < known + new:
        raise ScenarioError(
            f"{path} has {len(chosen)} usable intents (8+ utterances); asked for {known + new}"
        )
    traffic: dict[str, list[str]] = {}
    seed_rows: list[tuple[str, str]] = []
    for position, intent in enumerate(chosen):
        texts = list(by_intent[intent])
        rng.shuffle(texts)
        texts = texts[:per_intent]
        half = len(texts) // 2
        traffic[intent] = texts[half:]
        if position < known:
            seed_rows += [(text, intent) for text in texts[:half]]
    return Scenario(
        known={i: traffic[i] for i in chosen[:known]},
        new={i: traffic[i] for i in chosen[known:]},
        seed=seed_rows,
        shift_share=shift_share,
    )


def write_seed_csv(scenario: Scenario, path: Path) -> Path:
    """The first student's training file (`text,category`, as `chatdistill distill` reads)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "category"])
        writer.writerows(scenario.seed)
    return path
