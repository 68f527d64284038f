"""``avdigits``: the embedded audio-visual data set, spoken digits with degraded handwritten digits.

An AV-MNIST-like stand-in for VGGSound that ships with the package (``avdigits.npz``, made by
``scripts/make_avdigits.py``). Audio is the strong modality: "zero".."nine" spoken by espeak-ng in
many voices, speeds and pitches, in white noise, as log-mel spectrograms. Vision is the weak one:
scikit-learn's real 8x8 handwritten digits, each at a random position of a 16x16 canvas, with low
contrast and pixel noise. Joint training of the two under-trains the visual encoder (modality
failure): ``scripts/check_avdigits.py`` measures it with linear probes.

No image and no (voice, speed, pitch) utterance is in two splits; voice variants (speakers) are
disjoint between splits too. Each training image is paired with several utterances of its digit.
"""

from __future__ import annotations

import json
import zipfile
from importlib import resources
from pathlib import Path

import numpy as np

from umt.data.base import SPLITS, ArrayDataset, DataBundle
from umt.data.config import DataConfig
from umt.errors import UMTError

FILENAME = "avdigits.npz"
#: The ``script_version`` of ``scripts/make_avdigits.py`` whose files this loader reads.
SCRIPT_VERSION = "1"
_PER_SPLIT = ("audio", "visual", "label", "image_index", "voice")
_META = ("audio_db_min", "audio_db_step", "visual_scale")


def read_avdigits(path: str | Path) -> DataBundle:
    """Read a file written by ``scripts/make_avdigits.py`` into a :class:`DataBundle`.

    Audio is dequantised to dB and images to 0..1, then each modality is standardised with the
    mean and std of its *training* split (one scalar per modality), and given a channel axis.

    Args:
        path: the ``.npz`` file.

    Returns:
        Modalities ``"audio"`` ``(1, n_mels, frames)`` and ``"visual"`` ``(1, H, W)``, float32;
        ``info`` holds the generation metadata and the normalisation (JSON-safe). Each sample's
        sources are in the file: ``<split>_image_index`` (row of sklearn's ``load_digits``) and
        ``<split>_voice`` (accent, variant, speed, pitch).

    Raises:
        UMTError: the file is missing, is not such a file, or was made by another script version.
    """
    path = Path(path)
    if not path.is_file():
        raise UMTError(f"avdigits: no file at {path}; run scripts/make_avdigits.py to make it")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (OSError, ValueError, zipfile.BadZipFile) as err:
        raise UMTError(f"avdigits: cannot read {path} as an .npz file ({err})") from err
    if "meta" not in arrays:
        raise UMTError(f"avdigits: {path} has no 'meta' entry; is it a file of make_avdigits.py?")
    meta = json.loads(str(arrays["meta"]))
    if meta.get("script_version") != SCRIPT_VERSION:
        raise UMTError(
            f"avdigits: {path} was made by make_avdigits.py version "
            f"{meta.get('script_version')!r}; this loader reads version {SCRIPT_VERSION!r}"
        )
    missing = [f"{s}_{k}" for s in SPLITS for k in _PER_SPLIT if f"{s}_{k}" not in arrays]
    missing += [f"meta.{k}" for k in _META if k not in meta]
    if missing:
        raise UMTError(f"avdigits: {path} lacks the entries {missing}")

    raw = {
        split: {
            # dB = min + q * step; images 0..255 -> 0..1. Channel axis first: (N, 1, ...).
            "audio": meta["audio_db_min"]
            + meta["audio_db_step"] * arrays[f"{split}_audio"][:, None].astype(np.float32),
            "visual": meta["visual_scale"] * arrays[f"{split}_visual"][:, None].astype(np.float32),
        }
        for split in SPLITS
    }
    stats = {m: (float(x.mean()), float(x.std())) for m, x in raw["train"].items()}
    splits = {
        split: ArrayDataset(
            {m: ((x - stats[m][0]) / stats[m][1]).astype(np.float32) for m, x in mods.items()},
            arrays[f"{split}_label"].astype(np.int64),
        )
        for split, mods in raw.items()
    }
    return DataBundle(
        name="avdigits",
        num_classes=10,
        description="spoken digits in noise (strong) + noisy, shifted handwritten digits (weak)",
        info={
            "generation": meta,
            "normalisation": {m: {"mean": mu, "std": sd} for m, (mu, sd) in stats.items()},
        },
        train=splits["train"],
        val=splits["val"],
        test=splits["test"],
    )


def load_avdigits(cfg: DataConfig | None = None) -> DataBundle:
    """The shipped ``avdigits`` data set (``umt/data/avdigits.npz``, package data).

    Args:
        cfg: the data configuration; ``avdigits`` has no settings, so it is not read.

    Example:
        >>> data = load_avdigits()
        >>> data.input_shapes["audio"], data.input_shapes["visual"], data.num_classes
        ((1, 32, 41), (1, 16, 16), 10)
    """
    with resources.as_file(resources.files("umt.data") / FILENAME) as path:
        return read_avdigits(path)
