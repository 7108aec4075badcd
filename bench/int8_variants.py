"""What INT8 costs in intent accuracy, per way of quantizing: one bundle's student weights are
exported again with each `Int8Options` variant and every copy is scored as served (the
bundle's handoff threshold applied) on the same labelled rows, beside the FP32 graphs, in one
run. Latency per row (batch 64, tokenization included) is printed beside.

    .venv/bin/python bench/int8_variants.py --bundle B --data report.csv \\
        --json bench/results/int8_variants.json

`--data`: any `--data` format of `chatdistill distill`; give rows the run did not train on
(its report rows, or the data set's own dev split).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bundle_runtime.intents import evaluate_intents  # noqa: E402
from distill_worker.data.loaders import load_utterances  # noqa: E402
from distill_worker.stages.export_onnx import Int8Options  # noqa: E402
from distill_worker.stages.reexport import reexport_bundle  # noqa: E402

VARIANTS = {  # the export's default is per-channel
    "per-tensor": Int8Options(fp32_heads=False, per_channel=False),
    "per-tensor, FP32 heads": Int8Options(fp32_heads=True, per_channel=False),
    "per-channel": Int8Options(fp32_heads=False, per_channel=True),
    "per-channel, FP32 heads": Int8Options(fp32_heads=True, per_channel=True),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--split", default="val", help="Split of a CLINC150 JSON.")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    rows = load_utterances(args.data, split=args.split)
    results: list[dict[str, Any]] = []
    fp32 = evaluate_intents(args.bundle, rows, precision="fp32")
    results.append({"variant": "FP32", **fp32})
    with tempfile.TemporaryDirectory() as tmp:
        for name, options in VARIANTS.items():
            out = Path(tmp) / name.replace(" ", "").replace(",", "-")
            reexport_bundle(args.bundle, out, version=None, int8=True, int8_options=options)
            figures = evaluate_intents(out, rows, precision="int8")
            size = (out / "encoder.int8.onnx").stat().st_size
            results.append({"variant": name, **figures, "encoder_mb": round(size / 1e6, 2)})
    print(f"{len(rows)} rows of {args.data}; bundle {fp32['bundle']}")
    print("| graphs | accuracy (as served) | vs FP32, points | classifier accuracy | ms/row |")
    print("|---|---|---|---|---|")
    for r in results:
        points = 100 * (r["accuracy"] - fp32["accuracy"])
        print(
            f"| {r['variant']} | {r['accuracy']:.4f} | {points:+.2f} | "
            f"{r['classifier_accuracy']:.4f} | {r['ms_per_row']:.3f} |"
        )
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
