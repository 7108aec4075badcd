"""The unlabelled messages a benchmark run passes to `--unlabelled`, built from other public sets.

A customer's store holds messages nobody labelled; on the public data sets the stand-in is the
train messages of the *other* sets (HWU64's assistant requests and BANKING77's banking questions
for a CLINC150 run; CLINC150's banking and credit-card questions for a BANKING77 run), labels
dropped. Rows equal or close (TF-IDF cosine >= 0.6) to a row of the split the benchmark reports
on are left out, so the figure stays on unseen text: the run itself only filters against its
own held-out rows, and does not know the report split.

    python bench/unlabelled_corpus.py --data-root ../shared/data --include hwu64 banking77 \
        --exclude ../shared/data/clinc150/data_full.json:val \
        --exclude ../shared/data/clinc150/data_full.json:oos_val --out /tmp/unlabelled.jsonl

`--include` takes the source groups of `chatdistill ood-corpus` (`clinc150:banking`, `hwu64`).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from distill_worker.data.loaders import DataError, Utterance, load_utterances
from distill_worker.data.ood_corpus import SOURCES, drop_near, source_rows


def _excluded(spec: str) -> list[Utterance]:
    path, _, split = spec.partition(":")
    return load_utterances(Path(path), split=split or "train")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", type=Path, required=True)
    parser.add_argument(
        "--include", nargs="+", required=True, help="source groups: hwu64, clinc150:banking, ..."
    )
    parser.add_argument(
        "--exclude",
        action="append",
        default=[],
        help="FILE[:SPLIT] whose rows (and rows close to them) are left out; repeat",
    )
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    names = {group.split(":", 1)[0] for group in args.include}
    if not names <= set(SOURCES):
        print(f"error: unknown sources {sorted(names - set(SOURCES))}", file=sys.stderr)
        return 2
    try:
        rows_of = source_rows(args.data_root, sorted(names))
        texts = [  # in the order the groups were named, spaces tidied as the run's loaders do
            " ".join(text.split())
            for wanted in args.include
            for group, _, text in rows_of
            if group == wanted or group.startswith(f"{wanted}:")
        ]
        excluded = [row for spec in args.exclude for row in _excluded(spec)]
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    seen = {row.text.lower() for row in excluded}  # the loaders have tidied their spaces
    rows: list[Utterance] = []
    for text in texts:
        if text and text.lower() not in seen:
            seen.add(text.lower())
            rows.append(Utterance(text=text))
    kept = drop_near(rows, excluded)
    with args.out.open("w", encoding="utf-8") as out:
        for row in kept:
            out.write(json.dumps({"text": row.text}) + "\n")
    print(
        f"{len(kept)} messages from {', '.join(args.include)} written to {args.out} "
        f"({len(texts) - len(kept)} left out: repeated, or equal or close to an excluded row)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
