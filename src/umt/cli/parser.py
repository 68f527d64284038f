"""The ``umt`` command's arguments and the help that teaches them (``umt --help``,
``umt run --help``, ``umt data --help`` ...)."""

from __future__ import annotations

import argparse

_DESCRIPTION = """\
Find and fix modality failure in multi-modal learning.

A jointly trained fusion model (audio + video, RGB + depth, ...) often learns worse per-modality
encoders than training each modality alone (Du et al., "modality failure"). A study trains one
uni-modal model per modality (the teachers), naive joint fusion, UMT (joint fusion + feature
distillation from the frozen teachers) and UME (the teachers' ensemble); it probes every encoder
with a linear classifier, chooses between UMT and UME, and writes a report.

  umt run                                   the default study: avdigits (spoken + written digits)
  umt run --set data.name=synthetic --set data.synthetic.preset=paired --set seeds=[0]
  umt run --config my_study.yaml --out runs
  umt config                                print the default configuration (all keys)
  umt config --describe                     ... with what each key does
  umt datasets                              list the data sets
  umt methods                               list the methods (UMT, UME and the peers)
  umt prepare vggsound --src RAW --out DATA decode a benchmark you have on disk
  umt prepare nyuv2 --src RAW --out DATA    convert NYU Depth V2 (RGB-D segmentation)
"""

_RUN_EPILOG = """\
Every key of the configuration (see `umt config`) can be set with --set KEY=VALUE, the value
read as YAML: --set train.epochs=5 --set seeds=[0,1] --set umt.weights={weak: 10}.
Stages are cached in OUT/NAME by a hash of their settings: running again reuses finished stages,
and changing a setting retrains only the stages that depend on it. An interrupted stage resumes
from its last checkpoint.
"""


# The umt-folder format, in the help itself (a pip user has no README; umt.data.folder's
# docstring says the same at length).
_DATA_EPILOG = """\
The umt-folder format: a folder with meta.json and one sub-folder per split (train, val, test),
each holding <modality>.npy for every modality and labels.npy (numpy.save files):

  DIR/
    meta.json
    train/  audio.npy  (N, 1, 40, 100) float32   one row per sample
            visual.npy (N, 3, 64, 64)  uint8     any integer or float dtype
            labels.npy (N,)            integers 0..num_classes-1 ((N, H, W) maps: segmentation)
    val/    audio.npy  visual.npy  labels.npy    (same shapes, its own N)
    test/   audio.npy  visual.npy  labels.npy

Row i of every file of a split is sample i; no split may be empty. meta.json:

  {"format": "umt-folder", "version": 1, "name": "my-data",
   "task": "classification", "num_classes": 10,
   "modalities": {"audio":  {"shape": [1, 40, 100], "dtype": "float32"},
                  "visual": {"shape": [3, 64, 64],  "dtype": "uint8"}},
   "class_names": ["zero", "one", ...], "description": "one line"}

Required: format, version, name, task (classification or segmentation), num_classes (>= 2),
modalities (name -> one sample's shape, and optionally its dtype; a name is letters, digits,
_ - . and not label/labels). Optional: class_names (K strings), description, label_shape ([] by
default; [H, W] for segmentation label maps), ignore_index (a label value to ignore, e.g. 255).

  umt data template DIR     write a small valid example folder to start from
  umt data check DIR        list every problem (shapes, dtypes, counts, labels, NaN/inf)
  umt run --set data.name=folder --set data.root=DIR    run a study on it
"""


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="umt", description=_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    # ... and after the command too (`umt run --debug`): every command's parser takes this parent.
    # Its default is SUPPRESS so that a command without it keeps the value parsed before it.
    debug = argparse.ArgumentParser(add_help=False)
    debug.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS
    )
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser(
        "run",
        parents=[debug],
        help="run a study: teachers, joint, UMT, UME, probes, choice, report",
        description="Run (or resume) a study and print its tables.",
        epilog=_RUN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument(
        "--config",
        metavar="FILE",
        help="YAML study configuration: a file, or a shipped recipe by name (vggsound, nyuv2, ...)",
    )
    run.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one configuration key (repeatable)",
    )
    run.add_argument(
        "--out", default="runs", metavar="DIR", help="parent of run directories (default: runs)"
    )

    cfg = sub.add_parser(
        "config",
        parents=[debug],
        help="print the resolved configuration as YAML",
        description="Print the configuration a `umt run` with the same arguments would use.",
    )
    cfg.add_argument(
        "--config", metavar="FILE", help="YAML study configuration: a file or a recipe name"
    )
    cfg.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    cfg.add_argument(
        "--describe",
        action="store_true",
        help="a `# comment` above every key saying what it does (still valid YAML)",
    )

    data = sub.add_parser(
        "data",
        parents=[debug],
        help="check a data folder, write an example one, or export a data set as one",
        description="Work with the umt-folder on-disk format: your own data for a study.",
        epilog=_DATA_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    data_sub = data.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    check = data_sub.add_parser(
        "check",
        parents=[debug],
        help="validate a data folder and list every problem found",
        description="Validate a umt-folder data set: meta.json, every split's files, shapes, "
        "dtypes, sample counts, label range, NaN/inf. Exits 1 if an error is found.",
    )
    check.add_argument("path", metavar="PATH")
    template = data_sub.add_parser(
        "template",
        parents=[debug],
        help="write a small valid example folder to start from",
        description="Write a small umt-folder at DIR (meta.json, train/val/test with two "
        "modalities, audio 1x8x8 float32 and visual 3x8x8 uint8, three classes, a few samples "
        "per split) that `umt data check` accepts and a study trains on. DIR must be new or "
        "empty.",
        epilog=_DATA_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    template.add_argument("path", metavar="DIR")
    export = data_sub.add_parser(
        "export",
        parents=[debug],
        help="write a data set (e.g. avdigits) as a umt-folder",
        description="Write a data set in the umt-folder format: an example to copy, or a "
        "starting point for your own data. NAME is a data set of `umt datasets`.",
    )
    export.add_argument("name", metavar="NAME")
    export.add_argument("path", metavar="PATH")
    export.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="data settings, e.g. synthetic.preset=paired",
    )
    export.add_argument("--overwrite", action="store_true", help="replace an existing umt-folder")

    prep = sub.add_parser(
        "prepare",
        parents=[debug],
        help="decode a raw benchmark (VGGSound, ..., NYU Depth V2) into a data folder",
        description="Decode a benchmark you have on disk (vggsound, kinetics-sounds, cremad, "
        "ave) into the umt-folder format: log-mel audio and a few frames per clip. Resumable: "
        "run it again to finish an interrupted run; unusable clips are listed in "
        "OUT/skipped.csv, and OUT/coverage.md compares the counts with the data set's manifest "
        "(its class lists, split rules and expected counts). Across machines: --shard i/n on "
        "each (every part into its own --out), then --merge PART ... --out DIR on one. nyuv2: "
        "RAW holds nyu_depth_v2_labeled.mat, splits.mat, classMapping40.mat (and optionally "
        "class13Mapping.mat); images are kept at 480x640 unless --height/--width are given. "
        "Then: umt run --config DATASET --set data.root=OUT (DATASET: a recipe shipped with the "
        "package, e.g. vggsound or nyuv2).",
    )
    prep.add_argument(
        "dataset", metavar="DATASET", help="vggsound, kinetics-sounds, cremad, ave or nyuv2"
    )
    prep.add_argument(
        "--src", metavar="RAW_DIR", help="the raw data set's folder (required, except with --merge)"
    )
    prep.add_argument("--out", required=True, metavar="DIR", help="the data folder to write")
    prep.add_argument("--workers", type=int, default=1, metavar="N", help="decoding processes")
    prep.add_argument("--frames", type=int, default=3, help="frames kept per clip (default 3)")
    prep.add_argument("--size", type=int, default=224, help="side of the square frames (224)")
    prep.add_argument(
        "--duration", type=float, metavar="S", help="seconds of audio per clip (10; CREMA-D 3)"
    )
    prep.add_argument("--n-mels", type=int, metavar="M", help="mel bands (default 128)")
    prep.add_argument("--hop-length", type=int, metavar="H", help="STFT hop in samples (160)")
    prep.add_argument(
        "--val-fraction", type=float, default=0.1, help="share carved from train as val (0.1)"
    )
    prep.add_argument("--seed", type=int, default=0, help="seed of the carved splits")
    prep.add_argument(
        "--classes",
        metavar="NAME|FILE",
        help="kinetics-sounds: a class list of its manifest (l3-32, the default; l3-33; "
        "public-31) or a file of class names, one per line",
    )
    prep.add_argument(
        "--split",
        metavar="RULE",
        help="a split rule of the data set's manifest (cremad: common, the default, or "
        "speaker-independent: no actor in two splits)",
    )
    prep.add_argument(
        "--shard",
        metavar="I/N",
        help="prepare only part I of N (0-based) into --out, to be merged with --merge",
    )
    prep.add_argument(
        "--merge",
        nargs="+",
        metavar="PART",
        help="merge the finished parts of --shard runs into --out (no --src needed)",
    )
    prep.add_argument("--height", type=int, metavar="H", help="nyuv2: resize images to H rows")
    prep.add_argument("--width", type=int, metavar="W", help="nyuv2: resize images to W columns")
    prep.add_argument("--clean", action="store_true", help="delete the work folder when done")
    prep.add_argument("--no-progress", action="store_true", help="no progress bar")

    sub.add_parser(
        "datasets",
        parents=[debug],
        help="list the available data sets",
        description="List data sets.",
    )
    sub.add_parser(
        "methods",
        parents=[debug],
        help="list the training methods a study can run (`methods=[...]`)",
        description="List the methods a study's `methods` list can name; the uni-modal "
        "teachers are always trained.",
    )
    return p
