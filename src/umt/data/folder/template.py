"""``umt data template DIR``: a small, valid umt-folder to copy from — two modalities (a 1x8x8
float "audio" map and a 3x8x8 uint8 "visual" image), three classes, a few samples per split, values
that carry the class (so a study trains on it).

Example:
    >>> import tempfile
    >>> from umt.data.folder import check_folder, format_problems
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     data = write_template(f"{tmp}/mine")
    ...     print(format_problems(check_folder(f"{tmp}/mine")))
    ...     sorted(p.name for p in Path(tmp, "mine", "val").iterdir())
    no problems found
    ['audio.npy', 'labels.npy', 'visual.npy']
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from umt.data.base import ArrayDataset, DataBundle
from umt.data.folder.export import export_folder
from umt.data.folder.spec import PathLike
from umt.errors import UMTError

#: Samples per split of the template.
SIZES = {"train": 24, "val": 9, "test": 9}
CLASS_NAMES = ("low", "middle", "high")


def _split(rng: np.random.Generator, n: int) -> ArrayDataset:
    """``n`` samples: labels cycle through the classes; each modality shows its class as a
    brighter band (audio: rows, visual: one colour channel), under noise."""
    labels = rng.permutation(np.arange(n) % len(CLASS_NAMES)).astype(np.int64)
    audio = rng.normal(0.0, 1.0, size=(n, 1, 8, 8)).astype(np.float32)  # (N, 1, 8, 8)
    visual = rng.integers(0, 96, size=(n, 3, 8, 8)).astype(np.uint8)  # (N, 3, 8, 8)
    for i, y in enumerate(labels):
        audio[i, 0, 2 * y : 2 * y + 3] += 2.0
        visual[i, y] += 128
    return ArrayDataset({"audio": audio, "visual": visual}, labels)


def template_bundle(seed: int = 0) -> DataBundle:
    """The template's data set (:data:`SIZES` samples per split, three classes)."""
    rng = np.random.default_rng(seed)
    splits = {name: _split(rng, n) for name, n in SIZES.items()}
    return DataBundle(
        name="template",
        train=splits["train"],
        val=splits["val"],
        test=splits["test"],
        num_classes=len(CLASS_NAMES),
        description="umt data template: random values with a class signal; replace with yours",
        info={"class_names": list(CLASS_NAMES)},
    )


def write_template(path: PathLike, seed: int = 0) -> DataBundle:
    """Write the template folder at ``path`` (created; an existing empty folder is used).

    Raises:
        UMTError: ``path`` exists and is not an empty folder (nothing is overwritten).
    """
    target = Path(path).expanduser()
    if target.exists() or target.is_symlink():
        if not target.is_dir() or target.is_symlink():
            raise UMTError(f"cannot write a template to {target}: it exists and is not a folder")
        entries = sorted(p.name for p in target.iterdir())
        if entries:
            shown = ", ".join(entries[:3]) + (", ..." if len(entries) > 3 else "")
            raise UMTError(
                f"cannot write a template to {target}: the folder is not empty ({shown}); "
                "choose a new or empty folder (nothing was written)"
            )
    bundle = template_bundle(seed)
    export_folder(bundle, target)
    return bundle
