"""The ``umt`` command: thin; it parses arguments and calls the Python API."""

from __future__ import annotations

import argparse
import errno
import os
import signal
import sys
import time
import warnings
from collections.abc import Sequence
from typing import TextIO

import yaml

from umt.errors import UMTError

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


def _parser() -> argparse.ArgumentParser:
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
        "OUT/skipped.csv. nyuv2: RAW holds nyu_depth_v2_labeled.mat, splits.mat, "
        "classMapping40.mat (and optionally class13Mapping.mat); images are kept at 480x640 "
        "unless --height/--width are given. Then: umt run --config DATASET --set data.root=OUT "
        "(DATASET: a recipe shipped with the package, e.g. vggsound or nyuv2).",
    )
    prep.add_argument(
        "dataset", metavar="DATASET", help="vggsound, kinetics-sounds, cremad, ave or nyuv2"
    )
    prep.add_argument("--src", required=True, metavar="RAW_DIR", help="the raw data set's folder")
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
    prep.add_argument("--classes", metavar="FILE", help="class names, one per line")
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
    return p


def _cmd_run(args: argparse.Namespace) -> int:
    from umt.report import tables
    from umt.study import load_config, run_study

    cfg = load_config(args.config, args.overrides)
    start = time.perf_counter()
    signal.signal(signal.SIGTERM, _terminate)  # a polite kill: stop like Ctrl-C, resumable
    result = run_study(cfg, args.out)
    if not result.main:  # another process of a DDP run: the main one prints and writes
        return 0
    print()
    print(tables(result.summary))
    print()
    trained = len(result.trained)
    print(
        f"Run directory: {result.run_dir} (report.md, report.html, summary.json); "
        f"{trained} stage(s) trained, the rest cached; {time.perf_counter() - start:.1f} s."
    )
    if result.summary["failed"]:
        print(f"umt: {len(result.summary['failed'])} stage(s) failed (see above)", file=sys.stderr)
        return 1
    return 0


class _Terminated(KeyboardInterrupt):
    """SIGTERM: stop like Ctrl-C (resumable), exit 143 as a process killed by it would."""


def _terminate(signum: int, frame: object) -> None:
    raise _Terminated


# A write failed for a reason the user can fix (space, permissions): one line, not a traceback.
_DISK_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS)


def _cmd_config(args: argparse.Namespace) -> int:
    from umt.config import to_dict
    from umt.study import load_config

    cfg = load_config(args.config, args.overrides)
    if args.describe:
        from umt.config_doc import described_yaml

        print(described_yaml(cfg), end="")
        return 0
    print(yaml.safe_dump(to_dict(cfg), sort_keys=False), end="")
    return 0


def _cmd_data(args: argparse.Namespace) -> int:
    from umt.data.folder import check_folder, export_folder, format_problems

    if args.data_command == "check":
        problems = check_folder(args.path)
        print(format_problems(problems))
        return 1 if any(p.severity == "error" for p in problems) else 0
    if args.data_command == "template":
        from umt.data.folder.template import write_template

        bundle = write_template(args.path)
        sizes = ", ".join(f"{s} {len(bundle.split(s))}" for s in ("train", "val", "test"))
        print(
            f"wrote a template ({', '.join(bundle.modalities)}; {bundle.num_classes} classes; "
            f"{sizes}) to {args.path}\nnext: umt data check {args.path}; "
            f"umt run --set data.name=folder --set data.root={args.path}"
        )
        return 0
    from umt.config import apply_overrides, from_dict
    from umt.data import DataConfig, load_data

    raw = apply_overrides({"name": args.name}, args.overrides)
    bundle = load_data(from_dict(DataConfig, raw, prefix="data"))
    export_folder(bundle, args.path, overwrite=args.overwrite)
    print(f"wrote {bundle.name} ({', '.join(bundle.modalities)}) to {args.path}")
    return 0


def _cmd_prepare(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from umt.data.prepare import BENCHMARKS, PrepareConfig, VideoSettings, prepare

    if args.dataset == "nyuv2":
        from umt.data.nyuv2 import prepare_nyuv2

        if (args.height is None) != (args.width is None):
            raise UMTError("--height and --width: give both (or neither, to keep 480x640)")
        size = (args.height, args.width) if args.height is not None else None
        prepare_nyuv2(args.src, args.out, size=size, val_fraction=args.val_fraction, seed=args.seed)
        return 0
    audio = None
    if args.dataset in BENCHMARKS:
        given = {"duration": args.duration, "n_mels": args.n_mels, "hop_length": args.hop_length}
        audio = replace(
            BENCHMARKS[args.dataset].audio, **{k: v for k, v in given.items() if v is not None}
        )
    cfg = PrepareConfig(
        dataset=args.dataset,
        src=args.src,
        out=args.out,
        workers=args.workers,
        video=VideoSettings(frames=args.frames, size=args.size),
        audio=audio,
        val_fraction=args.val_fraction,
        seed=args.seed,
        classes=args.classes,
        progress=not args.no_progress,
        clean=args.clean,
    )
    prepare(cfg)
    return 0


def _cmd_datasets(args: argparse.Namespace) -> int:
    from umt.data import DATASETS, DataConfig

    default = DataConfig().name
    for name, (_, description) in DATASETS.items():
        mark = " (default)" if name == default else ""
        print(f"{name:12s} {description}{mark}")
    return 0


def _show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    """A warning as one ``umt: warning: ...`` line, without Python's source line (a user reads
    it; ``--debug`` shows where it came from)."""
    if os.environ.get("UMT_DEBUG"):
        where = f" ({category.__name__} at {filename}:{lineno})"
    else:
        where = ""
    print(f"umt: warning: {message}{where}", file=file if file is not None else sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``umt`` command; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    commands = {
        "run": _cmd_run,
        "config": _cmd_config,
        "data": _cmd_data,
        "prepare": _cmd_prepare,
        "datasets": _cmd_datasets,
    }
    shown = warnings.showwarning
    warnings.showwarning = _show_warning  # while the command runs
    try:
        return commands[args.command](args)
    except UMTError as e:
        if args.debug or os.environ.get("UMT_DEBUG"):
            raise
        print(f"umt: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        if args.debug or os.environ.get("UMT_DEBUG") or e.errno not in _DISK_ERRORS:
            raise
        print(
            f"umt: error: cannot write {e.filename or 'a file'}: {e.strerror}; free some space "
            "(or fix the permissions, or choose another --out) and run the same command again "
            "to resume",
            file=sys.stderr,
        )
        return 2
    except KeyboardInterrupt as e:
        print("umt: interrupted; run the same command again to resume", file=sys.stderr)
        return 143 if isinstance(e, _Terminated) else 130
    finally:
        warnings.showwarning = shown


if __name__ == "__main__":
    sys.exit(main())
