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
import secrets
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
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
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
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
    check_classes(data)
    if (n % batch or batch) == 1 and _has_batch_norm(cfg, data, task):
        # The last batch of each epoch (every batch, for batches of 1) would hold one sample,
        # which BatchNorm cannot train on.
        raise UMTError(
            f"train.batch_size: {n} training samples in batches of {batch} leave a last batch "
            f"of 1 sample, which BatchNorm cannot train on; choose another train.batch_size "
            f"(e.g. {batch + 1}) or change {size_key}"
        )


def check_classes(data: DataBundle) -> None:
    """Classes a classifier can learn: no more than there are training samples (each class
    needs one; the head would have a row per class: ``num_classes: 1000000000`` is a 256 GB
    allocation), and at least two among the training labels (one class scores 100 % and
    teaches nothing)."""
    labels = getattr(data.train, "labels", None)
    if labels is None or np.ndim(labels) != 1:
        return  # label maps (segmentation): checked by their own sets
    where = f"data set {data.name!r}" + (f" ({data.info['root']})" if data.info.get("root") else "")
    n = len(labels)
    if data.num_classes > n:
        raise UMTError(
            f"num_classes: {data.num_classes} classes in {where}, more than its {n} training "
            "samples (most classes would have none to learn from); set num_classes (meta.json "
            "for a data folder) to the number of classes the labels use"
        )
    present = np.unique(np.asarray(labels))
    if len(present) == 1:
        raise UMTError(
            f"labels: every training label of {where} is {int(present[0])}; a classifier needs "
            "at least two classes in training (it would score 100 % and learn nothing): check "
            "the labels (`umt data check` for a data folder)"
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
        probe = run_dir / f".write-test-{os.getpid()}-{secrets.token_hex(4)}"
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW, 0o666))
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
    fd = _open_lock(path)
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


def _open_lock(path: Path) -> int:
    """The lock file, opened for writing its holder's pid: only a plain file of its own (a link
    to another file, symbolic or hard, would have that file truncated to a pid)."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | _NOFOLLOW | os.O_CLOEXEC, 0o666)
    except OSError as e:
        if e.errno != errno.ELOOP:
            raise UMTError(
                f"cannot open the lock file {str(path)!r}: {e.strerror}; remove it (or choose "
                "another --out) and run the same command again"
            ) from e
        fd = -1
    st = os.fstat(fd) if fd >= 0 else None
    if st is None or not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
        if fd >= 0:
            os.close(fd)
        what = "a symbolic link" if st is None else "not a plain file of its own"
        raise UMTError(
            f"{str(path)!r} is {what}; umt writes its pid there, which would overwrite what it "
            f"points to: remove it (rm {str(path)!r}) and run the same command again"
        )
    return fd
