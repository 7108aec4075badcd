"""The report of `bench/intents.py`: a progress line per model, each model's latencies placed
beside its metrics, the ratios between the models, and the printed table (rows: data set x
model) with each data set's ratios and the rows they come from."""

from __future__ import annotations

from typing import Any


def progress(name: str, model: str, metrics: dict[str, Any]) -> None:
    print(
        f"{name} {model}: accuracy {metrics['accuracy']:.4f}, "
        f"handoff {metrics['handoff']['share']}, threshold {metrics['handoff']['threshold']}",
        flush=True,
    )


def place_latencies(result: dict[str, Any], latency: dict[str, dict[str, float]]) -> None:
    """Put each timed call's figures beside its model's metrics in the result."""
    for call, figures in latency.items():
        model, _, runtime = call.partition(" onnx ")
        if runtime:
            result[model]["onnx"].setdefault(runtime, {})["latency"] = figures
        else:
            key = "latency_sklearn" if model == "tfidf_lr" else "latency_torch"
            result[model][key] = figures


def ratios(result: dict[str, Any], student_key: str) -> dict[str, Any]:
    """The issue's figures as numbers, all from this run: the served student vs the teacher
    (accuracy; speed torch to torch and ONNX to ONNX), vs TF-IDF and the other variants."""
    teacher, student = result["teacher"], result[student_key]

    def ms(model: dict[str, Any], runtime: str) -> float:
        if runtime == "torch":
            return float(model["latency_torch"]["median_ms"])
        return float(model["onnx"][runtime]["latency"]["median_ms"])

    fp32, int8 = student["onnx"]["fp32"], student["onnx"]["int8"]
    out: dict[str, Any] = {
        "student": student_key,
        "student_vs_teacher_accuracy": student["accuracy"] / teacher["accuracy"],
        "speedup_torch": ms(teacher, "torch") / ms(student, "torch"),
        "speedup_onnx_fp32": ms(teacher, "fp32") / ms(student, "fp32"),
        "speedup_onnx_student_int8_vs_teacher_fp32": ms(teacher, "fp32") / ms(student, "int8"),
        "student_minus_tfidf_accuracy": student["accuracy"] - result["tfidf_lr"]["accuracy"],
        "student_int8_minus_tfidf_accuracy": int8["accuracy"] - result["tfidf_lr"]["accuracy"],
        "int8_minus_fp32_accuracy": int8["accuracy"] - fp32["accuracy"],
        "onnx_fp32_minus_torch_accuracy": fp32["accuracy"] - student["accuracy"],
    }
    if student_key == "student_kd" and "student_ce" in result:
        out["kd_minus_ce_accuracy"] = student["accuracy"] - result["student_ce"]["accuracy"]
    if student_key == "student_kd" and "student_kd_unlabelled" in result:
        out["kd_unlabelled_minus_kd_accuracy"] = (
            result["student_kd_unlabelled"]["accuracy"] - student["accuracy"]
        )
    if "student_ce" in result and "student_kd_unlabelled" in result:
        out["kd_unlabelled_minus_ce_accuracy"] = (
            result["student_kd_unlabelled"]["accuracy"] - result["student_ce"]["accuracy"]
        )
    if student_key == "student_kd" and "student_kd_random" in result:
        out["structural_minus_random_accuracy"] = (
            student["accuracy"] - result["student_kd_random"]["accuracy"]
        )
    return out


# ------------------------------------------------------------------------------------ table

COLUMNS = (
    "data set",
    "model",
    "accuracy",
    "in-scope",
    "OOS rec.",
    "handoff",
    "threshold",
    "ms torch",
    "ms ONNX",
    "params",
)


def table_rows(name: str, result: dict[str, Any]) -> list[list[str]]:
    """One row per model; the served student's INT8 graph gets a row of its own."""
    rows: list[list[str]] = []
    models = [k for k in result if k == "tfidf_lr" or k == "teacher" or k.startswith("student_")]
    for model in models:
        metrics = result[model]
        in_process = metrics.get("latency_torch") or metrics.get("latency_sklearn")
        fp32 = metrics.get("onnx", {}).get("fp32", {}).get("latency")
        rows.append(row(name, model, metrics, in_process, fp32, metrics["parameters"]))
        int8 = metrics.get("onnx", {}).get("int8")
        if int8 is not None:
            rows.append(
                row(name, f"{model} int8", int8, None, int8["latency"], metrics["parameters"])
            )
    return rows


def row(
    name: str,
    model: str,
    metrics: dict[str, Any],
    torch_ms: dict[str, float] | None,
    onnx_ms: dict[str, float] | None,
    parameters: int,
) -> list[str]:
    def num(value: float | None, digits: int = 3) -> str:
        return "-" if value is None else f"{value:.{digits}f}"

    return [
        name,
        model,
        num(metrics["accuracy"]),
        num(metrics.get("in_scope_accuracy")),
        num(metrics.get("oos_recall")),
        num(metrics["handoff"]["share"]),
        num(metrics["handoff"]["threshold"])
        + ("" if met_target(metrics) else "*")
        + (" E" if metrics["handoff"]["calibration"].get("score") == "energy" else ""),
        num(torch_ms["median_ms"] if torch_ms else None, 2),
        num(onnx_ms["median_ms"] if onnx_ms else None, 2),
        f"{parameters / 1e6:.1f}M",
    ]


def met_target(metrics: dict[str, Any]) -> bool:
    """Whether the threshold reached the target precision on the calibration rows."""
    return bool(metrics["handoff"]["calibration"]["met_target"])


def aligned(rows: list[list[str]], align: str) -> str:
    """Plain-text columns, `align` one letter a column: l (text) or r (figures)."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(align))]
    lines = [
        "  ".join(
            cell.ljust(w) if a == "l" else cell.rjust(w)
            for cell, w, a in zip(r, widths, align, strict=True)
        ).rstrip()
        for r in rows
    ]
    return "\n".join(lines)


def ratio_rows(result: dict[str, Any]) -> list[list[str]]:
    """Per data set: (figure, value, what it is computed from), all measured in this run."""
    r, student = result["ratios"], result["ratios"]["student"]
    teacher, served = result["teacher"], result[student]

    def ms(model: dict[str, Any], runtime: str) -> str:
        figures = (
            model["latency_torch"] if runtime == "torch" else model["onnx"][runtime]["latency"]
        )
        return f"{figures['median_ms']:.2f}"

    torch_ms = f"teacher {ms(teacher, 'torch')} ms / {student} {ms(served, 'torch')} ms, torch"
    fp32_ms = f"teacher {ms(teacher, 'fp32')} ms / {student} {ms(served, 'fp32')} ms, ONNX FP32"
    int8_ms = f"teacher FP32 {ms(teacher, 'fp32')} ms / {student} INT8 {ms(served, 'int8')} ms"
    rows = [
        [f"{student} / teacher accuracy", f"{r['student_vs_teacher_accuracy']:.3f}", "dev, torch"],
        ["speed-up torch to torch", f"x{r['speedup_torch']:.2f}", torch_ms],
        ["speed-up ONNX to ONNX, FP32", f"x{r['speedup_onnx_fp32']:.2f}", fp32_ms],
        [
            "speed-up ONNX, student INT8",
            f"x{r['speedup_onnx_student_int8_vs_teacher_fp32']:.2f}",
            int8_ms,
        ],
        [f"{student} - TF-IDF accuracy", f"{r['student_minus_tfidf_accuracy']:+.3f}", "dev, torch"],
        [
            f"{student} INT8 - TF-IDF accuracy",
            f"{r['student_int8_minus_tfidf_accuracy']:+.3f}",
            "dev, ONNX INT8",
        ],
        ["INT8 - FP32 accuracy", f"{r['int8_minus_fp32_accuracy']:+.3f}", "dev, both ONNX"],
        [
            "ONNX FP32 - torch accuracy",
            f"{r['onnx_fp32_minus_torch_accuracy']:+.3f}",
            f"dev, {student} (the export's check)",
        ],
    ]
    if "kd_minus_ce_accuracy" in r:
        rows.append(["KD - CE accuracy", f"{r['kd_minus_ce_accuracy']:+.3f}", "dev, torch"])
    for key, label in (
        ("kd_unlabelled_minus_kd_accuracy", "KD + unlabelled - KD accuracy"),
        ("kd_unlabelled_minus_ce_accuracy", "KD + unlabelled - CE accuracy"),
    ):
        if key in r:
            steps = f"dev, torch; {result['student_kd_unlabelled']['examples']:,} examples an epoch"
            rows.append([label, f"{r[key]:+.3f}", steps])
    if "structural_minus_random_accuracy" in r:
        value = f"{r['structural_minus_random_accuracy']:+.3f}"
        rows.append(["structural - random init accuracy", value, "dev, torch"])
    difference = teacher["onnx"]["fp32"]["max_abs_diff_vs_torch"]
    rows.append(["teacher ONNX vs torch", f"{difference:.1e}", "max |logit difference|, 8 rows"])
    for model, metrics in result.items():
        if isinstance(metrics, dict) and "oos_auroc" in metrics:
            auroc = metrics["oos_auroc"]
            value = f"{auroc['max_softmax']:.3f} / {auroc['energy']:.3f}"
            rows.append([f"OOS AUROC {model}", value, "max-softmax / energy, dev"])
    return [[f"  {label}", value, source] for label, value, source in rows]


def print_report(results: dict[str, Any], names: list[str]) -> None:
    """The one table (every data set x model), then each data set's ratios and rows."""
    rows = [list(COLUMNS)]
    for name in names:
        rows.extend(table_rows(name, results[name]))
    print()
    print(aligned(rows, "ll" + "r" * (len(COLUMNS) - 2)))
    print(
        "accuracy, in-scope, OOS rec. (recall): dev rows as served, the handoff applied (with "
        "`oos` in the data a handed-off\nmessage counts as predicted oos); handoff: share of dev "
        "messages handed off; threshold: fitted on the calibration\nrows (E: on the energy "
        "score, else max-softmax); ms: median per "
        "request, batch 1, 1 thread, tokenization included (tfidf_lr's 'torch' is "
        "scikit-learn);\nONNX: ONNX Runtime FP32, the int8 row dynamic INT8 (accuracy as served "
        "in ONNX Runtime);\n* the precision target was not reached with 80% of in-scope "
        "calibration rows answered: the most precise such threshold"
    )
    for name in names:
        result = results[name]
        print(f"\n{name}: {result['rows']['note']}\n  latency: {result['latency_protocol']}")
        print(aligned(ratio_rows(result), "lrl"))
