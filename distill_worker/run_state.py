"""What a distillation run has prepared, passed from step to step (`distill_worker.pipeline`).

`RunData` is step 1's result (the rows and the labels); `RunState` is what steps 2 and 3 add
(the teachers, the tokenizers, the decoder vocabulary, the student) and what the later steps
train, evaluate and export. The student and `metrics` are updated in place by the later steps.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer

from bundle_runtime.vocab import DecoderVocab
from distill_worker.data.best_of_n import BestOfNReport
from distill_worker.data.building import SourceTokenizer
from distill_worker.data.examples import ReplyExample
from distill_worker.data.loaders import Utterance
from distill_worker.devices import Precision
from distill_worker.model.student import Student
from distill_worker.stages.calibrate import HandoffCalibration
from distill_worker.stages.warm_start import Champion
from distill_worker.teacher.base import Responder
from distill_worker.teacher.cache import CacheStats
from distill_worker.teacher.encoder import EncoderTeacher
from distill_worker.teacher.grounding import Knowledge


@dataclass
class RunData:
    """Step 1: the frozen train / held-out rows, the intent labels and the champion, if any."""

    train: list[Utterance]
    dev: list[Utterance]  # the whole held-out split: `calibration` + `report`
    labels: list[str]  # the champion's order first on an incremental run
    oos_label: str | None
    adversarial: dict[str, list[Utterance]]  # kind -> noisy copies of train rows
    champion: Champion | None
    warm_start_skipped: str | None  # why the champion could not seed the run

    # The held-out split in two halves, stratified by intent: `calibration` chooses (the intent
    # temperature, the handoff threshold, early stopping); `report` is only ever scored, so the
    # figures a run reports come from rows nothing was tuned on.
    calibration: list[Utterance] = field(default_factory=list)
    report: list[Utterance] = field(default_factory=list)
    # Rows of subjects the customer's data does not cover (RunConfig.ood_corpus): negatives
    # for the handoff threshold, never training rows.
    ood: list[Utterance] = field(default_factory=list)
    # What became of the corpus's rows (`data.run_corpora.ood_negatives`); empty without a corpus.
    ood_filter: dict[str, Any] = field(default_factory=dict)
    # Customer messages without labels (RunConfig.unlabelled_corpus): stage 1 KD rows only.
    unlabelled: list[Utterance] = field(default_factory=list)
    # How the reply token budget was chosen when the config left it to the data
    # (`data.reply_length`); empty when the config set it.
    reply_length: dict[str, object] = field(default_factory=dict)

    @property
    def stage1_rows(self) -> list[Utterance]:
        """The train rows, their noisy variants and the unlabelled messages (they train the
        encoders, never the decoder)."""
        noisy = (row for rows in self.adversarial.values() for row in rows)
        return [*self.train, *noisy, *self.unlabelled]


@dataclass
class RunState:
    """Steps 2-3 onwards: everything the stages, the evaluation and the export read."""

    data: RunData
    teacher: EncoderTeacher
    source: SourceTokenizer
    responder: Responder
    responder_dir: Path  # the responder's tokenizer.json and special tokens
    decoder_tokenizer: Tokenizer
    knowledge: Knowledge | None
    vocab: DecoderVocab
    stage2_examples: list[ReplyExample]
    student: Student
    prompts: int  # teacher prompts asked for replies
    bounded: bool  # whether reply_budget cut the prompts
    wanted: int  # the prompts the per-intent quotas asked for
    cache_stats: CacheStats
    best_of_n: BestOfNReport
    metrics: dict[str, Any] = field(default_factory=dict)  # the bundle's manifest metrics
    stage_metrics: dict[str, Any] = field(default_factory=dict)  # stage1 / stage2 figures
    handoff: HandoffCalibration | None = None  # the calibrated threshold (after stage 1)
    precision: Precision | None = None  # the stages' (None: fp32 on the student's device)
    stage2_dev: list[ReplyExample] = field(default_factory=list)  # held-out replies (stop early)
    stage2_dev_source: str = "none"  # calibration | set_aside | none (`data.reply_dev`)
