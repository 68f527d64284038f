"""A real full disk (issue 28, case 2): ``--out`` on a small tmpfs that fills up in training.

``torch.save`` turned the write's ``ENOSPC`` into ``RuntimeError: [enforce fail at
inline_container.cc:672] unexpected pos ...``, a traceback; the one-line message (tested only with
an injected ``OSError``) named no file. Now: one line naming the file, exit 2, no temporary file
left, and once space is freed the same command finishes with the numbers of a run that never
ran out. Skipped where a tmpfs cannot be mounted (not root, or no permission in a container).
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers.runs import TINY, half_written, numbers, umt_command

from umt.search import run_study
from umt.study import load_config

# A bigger model than TINY's: checkpoints of 0.4 MB, 5.8 MB for the whole study.
BIG = [*TINY, "model.encoder.hidden=128", "model.encoder.feature_dim=32"]
SIZE_KB = 8192


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """An 8 MB tmpfs mounted at a fresh folder (unmounted after the test)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    try:
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={SIZE_KB}k", "tmpfs", str(mount)],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.SubprocessError) as e:
        pytest.skip(f"cannot mount a tmpfs here: {e}")
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True, timeout=30)


@pytest.mark.parametrize("left_kb", [700, 3000])  # full in the first stage, or in the third
def test_a_full_disk_is_one_line_naming_the_file_and_the_rerun_recovers(
    small_disk: Path, tmp_path: Path, left_kb: int
) -> None:
    filler = small_disk / "filler"
    filler.write_bytes(b"\0" * (SIZE_KB - left_kb) * 1024)
    out = small_disk / "runs"

    full = umt_command(out, BIG)
    assert full.returncode == 2, (full.stdout, full.stderr)
    err = full.stderr.strip()
    assert "Traceback" not in err and "unexpected pos" not in err, err
    assert len(err.splitlines()) == 1, err
    assert err.startswith(f"umt: error: cannot write {out / 'default'}/"), err
    assert "No space left on device" in err and "run the same command again" in err
    assert half_written(out) == []

    filler.unlink()  # space freed: the same study resumes (in this process: quicker)
    again = run_study(load_config(overrides=BIG), out, log=lambda _: None)
    clean = run_study(load_config(overrides=BIG), tmp_path / "clean", log=lambda _: None)
    assert numbers(again.summary) == numbers(clean.summary)
