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

from umt.cli.parser import parser as _parser
from umt.errors import UMTError


def _cmd_run(args: argparse.Namespace) -> int:
    from umt.report import tables
    from umt.report.verdict import verdict_text
    from umt.search import run_study
    from umt.study import load_config

    cfg = load_config(args.config, args.overrides)
    start = time.perf_counter()
    signal.signal(signal.SIGTERM, _terminate)  # a polite kill: stop like Ctrl-C, resumable
    result = run_study(cfg, args.out)
    if not result.main:  # another process of a DDP run: the main one prints and writes
        return 0
    print()
    print(tables(result.summary, verdict=False))
    print()
    trained = len(result.trained)
    print(
        f"Run directory: {result.run_dir} (report.md, report.html, summary.json); "
        f"{trained} stage(s) trained, the rest cached; {time.perf_counter() - start:.1f} s."
    )
    if result.summary["failed"]:
        print(f"umt: {len(result.summary['failed'])} stage(s) failed (see above)", file=sys.stderr)
    print()
    print(verdict_text(result.summary, bold=False))  # the last line: the study's one verdict
    return 1 if result.summary["failed"] else 0


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
        from umt.cli.describe import described_yaml

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

    from umt.data.prepare import BENCHMARKS, PrepareConfig, VideoSettings, merge, prepare
    from umt.data.prepare.shards import parse_shard

    if args.merge:
        merge(args.merge, args.out, dataset=args.dataset)
        return 0
    if args.src is None:
        raise UMTError("umt prepare: --src RAW_DIR is required (the raw data set's folder)")
    if args.dataset == "nyuv2":
        from umt.data.prepare.nyuv2 import prepare_nyuv2

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
        split=args.split,
        shard=parse_shard(args.shard) if args.shard else None,
        progress=not args.no_progress,
        clean=args.clean,
    )
    prepare(cfg)
    return 0


def _cmd_datasets(args: argparse.Namespace) -> int:
    from umt.data import DATASETS, DataConfig

    default = DataConfig().name
    for name, spec in DATASETS.items():
        mark = " (default)" if name == default else ""
        print(f"{name:12s} {spec.description}{mark}")
    return 0


def _cmd_methods(args: argparse.Namespace) -> int:
    from umt.methods import METHODS
    from umt.study import StudyConfig

    default = StudyConfig().methods
    for name, spec in METHODS.items():
        mark = " (default)" if name in default else ""
        print(f"{name:12s} {spec.description}{mark}")
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
        "methods": _cmd_methods,
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
