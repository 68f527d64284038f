"""``python -m benchmarks [--quick] [--out DIR] [--threads N]``: run every measurement, print the
tables, write ``results.json`` and ``results.md`` under ``--out``."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

from benchmarks.report import to_markdown
from benchmarks.suite import FULL, QUICK, run_all


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test")
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(__file__).parent / "results",
        help="folder for results.json, results.md and the profiles (default: benchmarks/results)",
    )
    parser.add_argument(
        "--threads", type=int, default=1, help="torch CPU threads (0: PyTorch's default)"
    )
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    sizes = QUICK if args.quick else FULL
    log = (lambda _: None) if args.quick else (lambda s: print(s, file=sys.stderr))
    results = run_all(sizes, threads=args.threads, out_dir=args.out, log=log)
    given = list(argv if argv is not None else sys.argv[1:])
    markdown = to_markdown(results, command=" ".join(["python -m benchmarks", shlex.join(given)]))
    (args.out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    (args.out / "results.md").write_text(markdown)
    print(markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
