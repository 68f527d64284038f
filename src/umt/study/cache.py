"""The cache of finished stages: a stage directory holds ``result.json`` (written last: the stage
finished) and ``config.yaml``, each with the stage's key, a hash of everything it depends on. A
stage is reused when its key matches; a directory of other settings is removed once the stage is
about to train again.

Content checks: ``result.json`` also records a hash of each file the stage left
(:data:`STAGE_FILES`), written atomically with it (:func:`finish_stage`). A file that no longer
matches (cut off, zeroed, edited, deleted) makes the stage unfinished again, and only that
stage is recomputed: from its checkpoints where they are intact, else from its start. A record
that is not readable JSON (``result.json``, ``probe.json``, ``features-train.json``) counts as
absent (:func:`read_record`), and cached features are checked against the hash of their content.
"""

from __future__ import annotations

import hashlib
import io
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch import nn

from umt.config import key_dict
from umt.engine import TrainConfig, is_main_process
from umt.errors import UMTError
from umt.io import read_json, write_bytes, write_json, write_text

Log = Callable[[str], None]

#: The files of a finished stage whose content its ``result.json`` records (those it has).
STAGE_FILES = (
    "model.pt",
    "val-outcomes.npy",
    "test-outcomes.npy",
    "metrics.csv",
    "checkpoints/best.ckpt",
    "checkpoints/last.ckpt",
)
#: Damaged, these cannot be made again from the checkpoints: the stage retrains from its start.
_FROM_START = ("metrics.csv", "checkpoints/best.ckpt", "checkpoints/last.ckpt")


def _silent(_: str) -> None:
    pass


def train_key(cfg: TrainConfig) -> dict[str, Any]:
    """The training settings that change the numbers (not progress bars, workers or loggers);
    fields added later (``KEY_OMITS_DEFAULT``) only when set, so that older stage keys hold."""
    d = key_dict(cfg)
    for key in ("progress", "num_workers", "threads", "logger"):
        d.pop(key)
    return d


def content_hash(path: Path) -> str:
    """A hash of the file's bytes (BLAKE2b, 32 hex digits)."""
    with path.open("rb") as f:
        return hashlib.file_digest(f, "blake2b").hexdigest()[:32]


def read_record(path: Path) -> dict[str, Any] | None:
    """The JSON object in ``path``; ``None`` where the file is missing or is not one (garbage,
    cut off, another type): a damaged record counts as absent, and what it recorded is made
    again."""
    try:
        data = read_json(path)
    except (OSError, ValueError):  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        return None
    return data if isinstance(data, dict) else None


def finish_stage(stage_dir: Path, result: dict[str, Any]) -> None:
    """Mark the stage finished: ``result.json``, written last, with the content hash of each of
    its :data:`STAGE_FILES` (under ``files``; :func:`cached` leaves them out of the result)."""
    files = {n: content_hash(stage_dir / n) for n in STAGE_FILES if (stage_dir / n).is_file()}
    write_json(stage_dir / "result.json", {**result, "files": files})


def damaged_files(stage_dir: Path, files: Any) -> list[str]:
    """The files of ``stage_dir`` whose content no longer matches the hashes ``files`` (a
    ``result.json``'s record; ``None``: a stage finished before hashes were recorded, trusted
    as before)."""
    if files is None:
        return []
    if not isinstance(files, dict):
        return ["result.json"]
    bad = []
    for name, digest in files.items():
        path = stage_dir / str(name)
        if name not in STAGE_FILES:
            bad.append("result.json")
        elif not path.is_file() or content_hash(path) != digest:
            bad.append(str(name))
    return sorted(set(bad))


def cached(stage_dir: Path, key: str, log: Log = _silent) -> dict[str, Any] | None:
    """The finished stage's result, if its key is ``key`` and its files are as it left them.

    A damaged ``result.json`` or stage file is logged and the stage made unfinished (by the
    main process): ``result.json`` removed, and its checkpoints and ``metrics.csv`` too where
    one of those is damaged, so that the stage is recomputed from its start."""
    path = stage_dir / "result.json"
    if not path.exists():
        return None
    done = read_record(path)
    if done is None:
        log(f"  {path} is damaged (not a JSON record); recomputing that stage")
        _discard(stage_dir, [])
        return None
    if done.get("key") != key:
        return None
    damaged = damaged_files(stage_dir, done.pop("files", None))
    if damaged:
        again = "from its start" if set(damaged) & {*_FROM_START, "result.json"} else ""
        log(
            f"  {stage_dir}: {', '.join(damaged)} changed since the stage finished (content "
            f"hash recorded in result.json); recomputing that stage {again}".rstrip()
        )
        _discard(stage_dir, damaged)
        return None
    return done


def _discard(stage_dir: Path, damaged: list[str]) -> None:
    if not is_main_process():  # the main process repairs; the others only read
        return
    (stage_dir / "result.json").unlink(missing_ok=True)
    if set(damaged) & {*_FROM_START, "result.json"}:
        shutil.rmtree(stage_dir / "checkpoints", ignore_errors=True)
        (stage_dir / "metrics.csv").unlink(missing_ok=True)


def cached_probe(path: Path, key: str) -> dict[str, Any] | None:
    """The probes a ``probe.json`` holds (``{encoder: scores}``), if its key is ``key``; ``None``
    where it is missing, of other settings, or damaged (the probes are computed again)."""
    done = read_record(path)
    if done is None or done.get("key") != key:
        return None
    encoders = done.get("encoders")
    if not (isinstance(encoders, dict) and all(isinstance(v, dict) for v in encoders.values())):
        return None
    return dict(encoders)


def _stage_config(stage_dir: Path) -> Any:
    """The stage's ``config.yaml`` as YAML data; ``None`` if missing or unreadable."""
    try:
        return yaml.safe_load((stage_dir / "config.yaml").read_text())
    except (OSError, ValueError, yaml.YAMLError):
        return None


def begin_stage(stage_dir: Path, key: str, settings: dict[str, Any], log: Log) -> None:
    """Prepare ``stage_dir`` for a stage about to train: a directory written under other settings
    (another key, or a ``config.yaml`` that cannot be read) is removed first, its checkpoints
    being stale; ``config.yaml`` records the key and ``settings``."""
    if stage_dir.is_symlink() or (stage_dir.exists() and not stage_dir.is_dir()):
        raise UMTError(
            f"{str(stage_dir)!r} is not a folder of this run (a link or a file); a stage writes "
            "and deletes there: remove it and run the same command again"
        )
    if stage_dir.exists():
        old = _stage_config(stage_dir)
        if not (isinstance(old, dict) and old.get("key") == key):
            why = "settings changed" if isinstance(old, dict) else "config.yaml unreadable"
            log(f"  {stage_dir.name}: {why}, retraining")
            shutil.rmtree(stage_dir)
    stage_dir.mkdir(parents=True, exist_ok=True)
    write_text(stage_dir / "config.yaml", yaml.safe_dump({"key": key, **settings}, sort_keys=False))


def load_weights(model: nn.Module, path: Path, log: Log) -> bool:
    """Load a finished stage's weights; False (and the file removed: the stage retrains) if they
    are unusable."""
    if not path.is_file():
        return False
    try:
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    except Exception as e:  # a cut-off file, or weights of another architecture
        log(f"  {path} is unusable ({type(e).__name__}); retraining that stage")
        path.unlink()
        return False
    return True


def cached_features(
    stem: Path, key: str, compute: Callable[[], np.ndarray], log: Log = _silent
) -> np.ndarray:
    """``compute()``'s features, kept memory-mapped at ``<stem>.npy`` beside ``<stem>.json``
    (their key, shape and content hash), computed again when the key changes or the file's
    content no longer matches its hash (a damaged file is never used as distillation targets).
    """
    path, meta = stem.with_suffix(".npy"), stem.with_suffix(".json")
    record = read_record(meta)
    if record is not None and record.get("key") == key:
        if path.is_file() and record.get("hash") == content_hash(path):
            return np.load(path, mmap_mode="r")
        if "hash" in record:
            log(f"  {path} is damaged (its content hash differs from {meta.name}'s); recomputing")
    feats = compute()
    buf = io.BytesIO()
    np.save(buf, feats)
    write_bytes(path, buf.getvalue())
    digest = hashlib.blake2b(buf.getvalue()).hexdigest()[:32]  # as content_hash(path)
    write_json(meta, {"key": key, "shape": list(feats.shape), "hash": digest})
    return np.load(path, mmap_mode="r")
