"""Starting a whole distillation run on N processes: the `torchrun` command line.

`chatdistill distill --nproc N ...` replaces itself with

    python -m torch.distributed.run --standalone --nproc-per-node N -m chat_api.cli distill ...

(the same options, less `--nproc`), which is also what a user may type by hand; the worker does
the same for a run of the loop (`distill_worker.loop.rank_runner`). One process per GPU on a GPU
machine; on a CPU machine each process gets `OMP_NUM_THREADS` threads (torchrun's default is 1:
give each process its share of the cores).
"""

from __future__ import annotations

import sys

__all__ = ["strip_option", "torchrun_command"]


def torchrun_command(nproc: int, module: str, args: list[str]) -> list[str]:
    """`python -m torch.distributed.run` for `nproc` local processes of `python -m module args`.
    `--standalone`: a rendezvous on this host only (a free port, no etcd)."""
    if nproc < 1:
        raise ValueError(f"nproc {nproc}: one process or more")
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        str(nproc),
        "-m",
        module,
        *args,
    ]


def strip_option(args: list[str], name: str) -> list[str]:
    """`args` without `name VALUE` / `name=VALUE` (an option that takes one value)."""
    out: list[str] = []
    skip = False
    for arg in args:
        if skip:
            skip = False
        elif arg == name:
            skip = True
        elif not arg.startswith(name + "="):
            out.append(arg)
    return out
