"""The content of a data folder as part of a stage's cache key: what changed, not where it is.

A stage cached on a data folder (``folder``, ``prepared``, ``nyuv2``: the ``umt-folder`` format)
must retrain when a file's content changes, and only then. Each file that a loader reads
(``*.json`` at the root, every split's ``*.npy``) is hashed in full (BLAKE2b); the hash is kept in
a small cache keyed by the file's size, modification and change times and inode, so an unchanged
folder is not read again. The folder's path is not part of the key: a moved folder keeps its
cached stages.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from umt.config import config_hash
from umt.data.config import DataConfig
from umt.data.folder.load import data_files
from umt.data.registry import dataset
from umt.io import read_json, write_json


def _stamp(path: Path) -> list[int]:
    st = path.stat()
    # ctime moves on any write (and cannot be set back), so an in-place overwrite that keeps
    # the size and mtime is still seen.
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]


def _digest(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "blake2b").hexdigest()[:32]


def folder_fingerprint(
    root: str | Path,
    cache: Path | None = None,
    *,
    update: bool = True,
    files: Callable[[Path], list[Path]] = data_files,
) -> dict[str, Any]:
    """``{relative path: [size, content hash]}`` of ``files(root)`` (by default a umt-folder's:
    ``*.json`` at the root and each split's ``*.npy``).

    ``cache`` (a JSON file) keeps each file's hash under its size, times and inode; a file whose
    stamp is unchanged is not read again. ``update=False`` reads the cache without writing it
    (the other processes of a DDP run: the main one writes).

    Example:
        >>> import tempfile
        >>> root = Path(tempfile.mkdtemp())
        >>> _ = (root / "meta.json").write_text("{}")
        >>> folder_fingerprint(root)
        {'meta.json': [2, '9327a492264ecac0806b031b780241d8']}
    """
    root = Path(root)
    known: dict[str, Any] = {}
    if cache is not None and cache.is_file():
        try:
            known = dict(read_json(cache))
        except (OSError, ValueError, TypeError):
            known = {}  # a damaged cache only costs a re-read
    out: dict[str, Any] = {}
    fresh: dict[str, Any] = {}
    for path in files(root):
        rel = path.relative_to(root).as_posix()
        stamp = _stamp(path)
        entry = known.get(os.fspath(path.resolve()))
        digest = entry[1] if isinstance(entry, list) and entry[0] == stamp else _digest(path)
        fresh[os.fspath(path.resolve())] = [stamp, digest]
        out[rel] = [stamp[0], digest]
    if cache is not None and update and fresh != known:
        write_json(cache, fresh)
    return out


CACHE_NAME = ".data-fingerprints.json"


def data_key(cfg: DataConfig, run_dir: Path | None = None, *, update: bool = True) -> str:
    """The data's part of a stage's cache key.

    A data set read from a folder: its settings without ``root``, plus the content fingerprint
    of the folder's files, their hashes cached in ``run_dir/.data-fingerprints.json`` (``update``:
    see :func:`folder_fingerprint`). Any other (embedded or
    generated) data set: the hash of its settings, which determine it.

    Example:
        >>> data_key(DataConfig(name="synthetic")) == config_hash(DataConfig(name="synthetic"))
        True
    """
    files = dataset(cfg.name).files
    if files is None or cfg.root is None:
        return config_hash(cfg)
    root = Path(cfg.root).expanduser()
    cache = run_dir / CACHE_NAME if run_dir is not None else None
    return config_hash(
        replace(cfg, root=None),
        {"files": folder_fingerprint(root, cache, update=update, files=files)},
    )
