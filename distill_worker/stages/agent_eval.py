"""How close a run's student comes to what human agents answered: chrF of its replies against
the agents' replies (the snapshot's records with reply source "agent", train and held-out
alike), next to the same figure for the champion the run started from, served through the
bundle runtime as in production. The run's `metrics["agent_replies"]`.

The contexts are the very turns the bot could not handle and a human answered; a run that
learnt from the agents should answer them closer to the agents than the champion does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bundle_runtime.onnx_student import OnnxStudent
from distill_worker.data.snapshots.build import HELDOUT, TRAIN
from distill_worker.data.snapshots.records import SnapshotRecord, read_records
from distill_worker.run_state import RunState
from distill_worker.stages.evaluate import corpus_chrf
from distill_worker.stages.run_eval import student_replies

AGENT = "agent"


def agent_records(snapshot_dir: Path, limit: int) -> list[SnapshotRecord]:
    """Up to `limit` records whose reference reply an agent wrote, train rows first."""
    rows = [*read_records(snapshot_dir / TRAIN), *read_records(snapshot_dir / HELDOUT)]
    return [r for r in rows if r.reply_source == AGENT and r.reply][:limit]


def agent_reply_figures(
    state: RunState, snapshot_dir: Path, *, max_rows: int, max_reply_tokens: int
) -> dict[str, Any] | None:
    """{"rows", "chrf_candidate", "chrf_champion" (None on a first run), "champion",
    "examples"}; None when the snapshot holds no agent reply."""
    records = agent_records(snapshot_dir, max_rows)
    if not records:
        return None
    turns = [[*r.context, ("customer", r.text)] for r in records]
    refs = [r.reply or "" for r in records]
    hyps, _ = student_replies(state, state.source.ids(turns), max_reply_tokens)
    champion = state.data.champion
    served: list[str] | None = None
    if champion is not None:
        model = OnnxStudent(champion.bundle_dir)
        served = [model.reply(t, max_reply_tokens).text for t in turns]
    return {
        "rows": len(records),
        "chrf_candidate": round(corpus_chrf(hyps, refs), 2),
        "chrf_champion": round(corpus_chrf(served, refs), 2) if served is not None else None,
        "champion": champion.bundle_dir.name if champion is not None else None,
        "examples": [
            {"prompt": r.text, "agent": ref, "candidate": hyp}
            for r, ref, hyp in list(zip(records, refs, hyps, strict=True))[:3]
        ],
    }
