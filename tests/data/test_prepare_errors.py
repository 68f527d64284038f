"""`umt prepare` with values it cannot use (issue 28, item 8): one line naming the value and the
fix, exit status 2, and nothing left behind that refuses the corrected command."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("av")  # the optional `video` extra (in the `test` extra for CI)

from benchmarks.rehearsal_data import TINY, write_vggsound  # noqa: E402
from umt.cli import main  # noqa: E402

SMALL = ["--frames", "1", "--size", "16", "--n-mels", "16", "--no-progress"]
GOOD = ["--duration", "0.5"]


@pytest.fixture(scope="module")
def raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("raw-vggsound")
    write_vggsound(root, 12, ["dog barking", "people marching"], TINY, unique=1)
    return root


def _prepare(src: Path, out: Path, *extra: str) -> list[str]:
    return ["prepare", "vggsound", "--src", str(src), "--out", str(out), *SMALL, *extra]


def _one_line_error(capsys: pytest.CaptureFixture[str], *words: str) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("umt: error: "), err
    assert "Traceback" not in err and all(w in err for w in words), err
    return err


@pytest.mark.parametrize(
    "bad",
    [
        ["--duration", "nan"],
        ["--duration", "inf"],
        ["--duration", "-1"],
        ["--duration", "0.5", "--hop-length", "0"],
    ],
    ids=["duration-nan", "duration-inf", "duration-negative", "hop-length-0"],
)
def test_a_bad_audio_setting_is_one_line_and_the_corrected_rerun_works(
    bad: list[str], raw: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    assert main(_prepare(raw, out, *bad)) == 2
    flag = bad[-2]
    _one_line_error(capsys, f"{flag} {bad[-1]}", "expected")
    assert not (out / ".work").exists()
    assert main(_prepare(raw, out, *GOOD)) == 0  # the corrected command is not refused
    assert (out / "meta.json").is_file()


def test_a_work_folder_that_finished_nothing_does_not_block_a_rerun(
    raw: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """What an earlier version left after ``--duration nan``: settings, no finished clip."""
    out = tmp_path / "out"
    (out / ".work" / "train").mkdir(parents=True)
    settings = {"dataset": "vggsound", "audio": {"duration": None}, "video": {}}
    (out / ".work" / "settings.json").write_text(json.dumps(settings))
    assert main(_prepare(raw, out, *GOOD)) == 0
    assert "starting again" in capsys.readouterr().out


@pytest.mark.parametrize("dataset", ["vggsound", "kinetics-sounds"])
def test_a_csv_that_is_not_utf8_is_one_line_naming_file_and_line(
    dataset: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src, out = tmp_path / "raw", tmp_path / "out"
    src.mkdir()
    if dataset == "vggsound":
        csv = src / "vggsound.csv"
        csv.write_bytes(b"abc,1,dog barking,train\nabd,2,caf\xe9 noise,train\n")
    else:
        csv = src / "annotations" / "train.csv"
        csv.parent.mkdir()
        csv.write_bytes(b"label,youtube_id,time_start,time_end,split\nsinging,abc,0,10,tr\xe9in\n")
    argv = ["prepare", dataset, "--src", str(src), "--out", str(out), *SMALL, *GOOD]
    assert main(argv) == 2
    _one_line_error(capsys, str(csv), "line 2", "not UTF-8", "iconv")
    assert not out.exists()


def test_an_unknown_data_set_lists_every_one_nyuv2_included(
    raw: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["prepare", "foo", "--src", str(raw), "--out", str(tmp_path / "o")]) == 2
    _one_line_error(capsys, "'foo'", "vggsound", "kinetics-sounds", "cremad", "ave", "nyuv2")
