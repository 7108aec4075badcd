"""The held-out replies stage 2 stops early on.

Stage 2 stops when the student's cross-entropy on replies it does not train on stops falling
(`stages.decoder_stage`). Those replies are, in order of preference:

    calibration   the reference replies of the run's calibration rows (the held-out half that
                  tunes, never the half the run reports on), when there are at least MIN_DEV
    set_aside     else a tenth (MIN_DEV to MAX_DEV) of the stage-2 replies, chosen with the
                  run's seed and removed from training, when there are at least 10 x MIN_DEV
    none          else no early stopping: stage 2 runs its epochs (a small data set)

Fewer than MIN_DEV replies make a loss too noisy to stop on: on the quickstart's demo corpus,
8 calibration replies stopped stage 2 after 7 of its 60 epochs, and the demo bot's express
shipping answer lost its price ("Express delivery takes within 1 to show it.").

Only replies that teach the decoder count (weight > 0: references, teacher replies, rated and
corrected replies); the reward head's negatives stay in training.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field

from distill_worker.data.examples import ReplyExample

MIN_DEV = 32
MAX_DEV = 200
SET_ASIDE = 0.1


@dataclass(frozen=True)
class ReplyDev:
    train: list[ReplyExample]
    dev: list[ReplyExample] = field(default_factory=list)
    where: str = "none"  # calibration | set_aside | none


def reply_dev(
    train: Sequence[ReplyExample], calibration: Sequence[ReplyExample], seed: int
) -> ReplyDev:
    """Split off the replies to stop early on (see the module docstring)."""
    held_out = [e for e in calibration if e.weight > 0]
    if len(held_out) >= MIN_DEV:
        return ReplyDev(list(train), held_out[:MAX_DEV], "calibration")
    teaching = [i for i, e in enumerate(train) if e.weight > 0]
    if len(teaching) < 10 * MIN_DEV:
        return ReplyDev(list(train))
    n = min(MAX_DEV, max(MIN_DEV, round(SET_ASIDE * len(teaching))))
    chosen = set(random.Random(seed).sample(teaching, n))
    return ReplyDev(
        [e for i, e in enumerate(train) if i not in chosen],
        [train[i] for i in sorted(chosen)],
        "set_aside",
    )
