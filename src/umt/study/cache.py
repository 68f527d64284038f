"""The cache of finished stages: a stage directory holds ``result.json`` (written last: the stage
finished) and ``config.yaml``, each with the stage's key, a hash of everything it depends on. A
stage is reused when its key matches; a directory of other settings is removed once the stage is
about to train again."""

from __future__ import annotations

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
from umt.engine import TrainConfig
from umt.io import read_json, write_bytes, write_json, write_text


def train_key(cfg: TrainConfig) -> dict[str, Any]:
    """The training settings that change the numbers (not progress bars, workers or loggers);
    fields added later (``KEY_OMITS_DEFAULT``) only when set, so that older stage keys hold."""
    d = key_dict(cfg)
    for key in ("progress", "num_workers", "threads", "logger"):
        d.pop(key)
    return d


def cached(stage_dir: Path, key: str) -> dict[str, Any] | None:
    """The finished stage's result, if its key is ``key``."""
    result = stage_dir / "result.json"
    if result.is_file():
        done = read_json(result)
        if done.get("key") == key:
            return dict(done)
    return None


def begin_stage(
    stage_dir: Path, key: str, settings: dict[str, Any], log: Callable[[str], None]
) -> None:
    """Prepare ``stage_dir`` for a stage about to train: a directory written under other settings
    (another key) is removed first, its checkpoints being stale; ``config.yaml`` records the key
    and ``settings``."""
    if stage_dir.exists():
        config = stage_dir / "config.yaml"
        old = yaml.safe_load(config.read_text()) if config.is_file() else None
        if not (isinstance(old, dict) and old.get("key") == key):
            log(f"  {stage_dir.name}: settings changed, retraining")
            shutil.rmtree(stage_dir)
    stage_dir.mkdir(parents=True, exist_ok=True)
    write_text(stage_dir / "config.yaml", yaml.safe_dump({"key": key, **settings}, sort_keys=False))


def load_weights(model: nn.Module, path: Path, log: Callable[[str], None]) -> bool:
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


def cached_features(stem: Path, key: str, compute: Callable[[], np.ndarray]) -> np.ndarray:
    """``compute()``'s features, kept memory-mapped at ``<stem>.npy`` beside ``<stem>.json``
    (their key and shape) and computed again only when the key changes."""
    path, meta = stem.with_suffix(".npy"), stem.with_suffix(".json")
    if not (path.is_file() and meta.is_file() and read_json(meta).get("key") == key):
        feats = compute()
        buf = io.BytesIO()
        np.save(buf, feats)
        write_bytes(path, buf.getvalue())
        write_json(meta, {"key": key, "shape": list(feats.shape)})
    return np.load(path, mmap_mode="r")
