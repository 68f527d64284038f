"""The plain-loop example under DistributedDataParallel: two CPU processes (gloo), one script.

Rank 0 diagnoses the jointly trained model and writes the diagnosis with its teachers
(``diagnose(..., out=)``); every rank loads the same teachers from that folder
(``Diagnosis.load``), wraps its student in DDP (the teachers are not parameters: DDP neither
broadcasts nor synchronises them) and trains with ``UMTLoss``. On GPUs, use the "nccl" backend
and one device per rank.

    python examples/own_model_ddp.py      # seconds on two CPU cores
"""

from __future__ import annotations

import os
import socket
import sys
import tempfile
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader, DistributedSampler

import umt
from umt.yours.hooks import capture_features

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the plain example's data and model
from own_model_plain_loop import ENCODERS, PairDataset, TwoBranch  # noqa: E402

WORLD = 2


def splits() -> tuple[PairDataset, PairDataset, PairDataset]:
    return PairDataset(1000, 0), PairDataset(300, 1), PairDataset(300, 2)


def train(model: TwoBranch, epochs: int, umt_loss: umt.UMTLoss | None = None) -> None:
    """The user's DDP loop: each rank its own shard of the data; UMT adds the marked lines."""
    train_set = splits()[0]
    sampler = DistributedSampler(train_set, shuffle=True, seed=0)
    loader = DataLoader(train_set, batch_size=32, sampler=sampler)  # 2 x 32 = 64 per step
    ddp = DDP(model)
    opt = torch.optim.Adam(
        [*ddp.parameters(), *(umt_loss.parameters() if umt_loss else [])], lr=1e-3
    )
    with capture_features(model, ENCODERS) as feats:  # UMT: hooks on the unwrapped model
        for epoch in range(epochs):
            sampler.set_epoch(epoch)
            for batch in loader:
                loss = F.cross_entropy(ddp(batch), batch["label"])
                if umt_loss is not None:
                    loss = loss + umt_loss(batch, feats)["loss"]  # UMT: the distillation term
                opt.zero_grad()
                loss.backward()
                opt.step()


def worker(rank: int, port: int, out: str, epochs: int) -> None:
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=WORLD, timeout=timedelta(seconds=120))
    torch.manual_seed(0)  # the same initial weights on every rank (DDP broadcasts them anyway)
    joint = TwoBranch()
    train(joint, epochs)
    if rank == 0:  # diagnose once; the teachers go to disk for every rank
        umt.diagnose(joint, *splits(), encoders=ENCODERS, out=f"{out}/before", progress=False)
    dist.barrier()
    diagnosis = umt.Diagnosis.load(f"{out}/before", model=TwoBranch())
    teachers = diagnosis.teachers
    torch.manual_seed(1)
    student = TwoBranch()  # the failing encoders start from their teachers: the same on every rank
    train(student, epochs, umt.UMTLoss.from_diagnosis(diagnosis, student, ENCODERS))
    if rank == 0:
        umt.diagnose(
            student, *splits(), encoders=ENCODERS, teachers=teachers, out=f"{out}/after",
            progress=False,
        )  # fmt: skip
    dist.barrier()
    dist.destroy_process_group()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main(epochs: int = 15) -> dict[str, Any]:
    out = tempfile.mkdtemp(prefix="umt-ddp-")
    # spawn, not fork: a process forked after PyTorch's thread pools started can deadlock
    mp.start_processes(worker, args=(free_port(), out, epochs), nprocs=WORLD, start_method="spawn")
    before = umt.Diagnosis.load(f"{out}/before")
    after = umt.Diagnosis.load(f"{out}/after")
    print("Naive joint training (DDP, 2 processes):\n" + before.table())
    print("\nWith UMTLoss (DDP, 2 processes):\n" + after.table())
    for m in ENCODERS:
        print(
            f"{m}: gap to the teacher {100 * before[m].gap:+.1f} -> {100 * after[m].gap:+.1f} pts"
        )
    return {"before": before, "after": after}


if __name__ == "__main__":
    main()
