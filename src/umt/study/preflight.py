"""Checks a study passes before anything trains, and the lock on its run directory.

Every configuration value is checked where its dataclass is built (``__post_init__``); what can
only be checked against the loaded data or this machine (a modality a weight names, a GPU, a
writable ``--out``) is checked here, once the data is loaded and before the first stage starts,
so that a bad value never costs a trained stage nor deletes a cached one.
"""

from __future__ import annotations

import errno
import fcntl
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from torch import nn

from umt.data import DataConfig, dataset
from umt.data.base import DataBundle
from umt.engine.config import check_accelerator
from umt.errors import UMTError
from umt.io import read_json, remove_stale_temps, write_json
from umt.methods import METHODS
from umt.study.config import StudyConfig
from umt.tasks import Task

LOCK_NAME = ".lock"
CHECKED_NAME = ".data-checked.json"  # the data key whose folder passed the value check


def check_before_training(cfg: StudyConfig, data: DataBundle, task: Task) -> None:
    """What the loaded data set, its task or this machine must allow for ``cfg`` to run to its
    end."""
    unsupported = [m for m in cfg.methods if task.name not in METHODS[m].tasks]
    if unsupported:
        supported = [m for m, spec in METHODS.items() if task.name in spec.tasks]
        raise UMTError(
            f"methods: {unsupported} do not support {task.name} (data set {data.name!r}); "
            f"choose among {supported}"
        )
    if cfg.fusion and not task.fusion_sweep:
        raise UMTError(
            "fusion: the sweep is over classification fusion modules; a segmentation "
            "model fuses per stage, set model.seg.fusion (add or attention) instead"
        )
    check_accelerator(cfg.train)
    modalities = list(data.modalities)
    if cfg.methods and len(modalities) < 2:
        raise UMTError(
            f"methods: {list(cfg.methods)} fuse modalities, but data set {data.name!r} has one "
            f"modality ({modalities}); add a modality to the data, or set methods=[] to train "
            "the uni-modal model alone"
        )
    for section in ("umt", "ume"):
        weights = getattr(getattr(cfg, section, None), "weights", None) or {}
        unknown = sorted(set(weights) - set(modalities))
        if unknown:
            raise UMTError(
                f"{section}.weights: no modality {unknown} in data set {data.name!r}; "
                f"its modalities are {modalities}"
            )
    n, batch = len(data.train), cfg.train.batch_size
    size_key = "data.synthetic.n_train" if cfg.data.name == "synthetic" else "the training split"
    if n < 2:
        raise UMTError(
            f"{size_key}: the training split of data set {data.name!r} has {n} sample(s); "
            "training needs at least 2"
        )
    if n % batch == 1 and _has_batch_norm(cfg, data, task):
        # The last batch of each epoch would hold one sample, which BatchNorm cannot train on.
        raise UMTError(
            f"train.batch_size: {n} training samples in batches of {batch} leave a last batch "
            f"of 1 sample, which BatchNorm cannot train on; choose another train.batch_size "
            f"(e.g. {batch + 1}) or change {size_key}"
        )


def _has_batch_norm(cfg: StudyConfig, data: DataBundle, task: Task) -> bool:
    m = data.modalities[0]
    model = task.build_model(cfg.model, {m: data.input_shapes[m]}, data.num_classes, uni=True)
    return any(isinstance(x, nn.modules.batchnorm._BatchNorm) for x in model.modules())


def check_data_values(cfg: DataConfig, key: str, run_dir: Path) -> None:
    """Run ``umt data check``'s full check (every value: NaN/inf, labels) on a data folder
    before training, once per content: ``key`` (the data's content key) is remembered in
    ``run_dir`` when the folder passes. Other data sets are generated or embedded: no check."""
    if not dataset(cfg.name).reads_folder or cfg.root is None:
        return
    root = Path(cfg.root).expanduser()
    marker = run_dir / CHECKED_NAME
    if marker.is_file():
        try:
            if read_json(marker).get("key") == key:
                return
        except (OSError, ValueError, AttributeError):
            pass  # a damaged marker: check again
    from umt.data.folder import check_folder, format_problems

    errors = [p for p in check_folder(root) if p.severity == "error"]
    if errors:
        raise UMTError(
            f"data.root: {str(root)!r} has {len(errors)} problem(s) that would spoil training "
            f"(`umt data check {root}` lists them too):\n{format_problems(errors)}"
        )
    write_json(marker, {"key": key})


def writable_run_dir(run_dir: Path) -> None:
    """Create ``run_dir`` (and its parents), or one clear error saying why ``--out`` is unusable."""
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise UMTError(
            f"--out: cannot write the run directory {str(run_dir)!r}: "
            f"{e.strerror or e}; choose another --out"
        ) from e


@contextmanager
def claim_run_dir(
    run_dir: Path, main: bool = True, log: Callable[[str], None] = print
) -> Iterator[None]:
    """Create ``run_dir`` (or one clear error) and hold its lock while a study runs there; the
    other processes of a DDP run (``main=False``) neither create nor lock it. Once locked, the
    temporary files a killed run's atomic writes left behind are removed (``log`` says how
    many): no other run can be writing them then."""
    if not main:
        yield
        return
    writable_run_dir(run_dir)
    with lock_study(run_dir):
        stale = remove_stale_temps(run_dir)
        if stale:
            log(f"removed {len(stale)} temporary file(s) left in {run_dir} by an interrupted run")
        yield


@contextmanager
def lock_study(run_dir: Path) -> Iterator[None]:
    """Hold ``run_dir/.lock`` (``flock``) while a study runs there; refuse a second run.

    The lock is the kernel's, tied to the open file: a killed run leaves no stale lock.
    """
    path = run_dir / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            raise UMTError(
                f"another umt run (pid {holder}) is running the study in {str(run_dir)!r}; "
                "wait for it to finish, or give this run another --out or --set name=..."
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock
