"""`umt prepare --shard i/n` and `--merge`: the parts, merged, are the folder one process writes
(byte for byte, as with --clean); a part resumes like any preparation; merges that cannot be
right are refused."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("av")  # the optional `video` extra (in the `test` extra for CI)

from benchmarks.rehearsal_data import TINY, write_ave, write_vggsound  # noqa: E402
from umt.cli import main  # noqa: E402
from umt.data import prepare as prep  # noqa: E402
from umt.data.prepare import (  # noqa: E402
    AudioSettings,
    PrepareConfig,
    VideoSettings,
    merge,
    prepare,
)
from umt.errors import UMTError  # noqa: E402

AUDIO = AudioSettings(n_mels=16, duration=0.5)
VIDEO = VideoSettings(frames=2, size=16)


def quiet(_: str) -> None:
    pass


@pytest.fixture(scope="module")
def raw(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A VGGSound folder (a missing and a corrupt clip) and an AVE folder (an ambiguous video,
    rejected by the annotations)."""
    vgg = tmp_path_factory.mktemp("raw-vggsound")
    write_vggsound(vgg, 22, ["dog barking", "people marching", "playing drums"], TINY, unique=1,
                   missing=1, corrupt=1)  # fmt: skip
    ave = tmp_path_factory.mktemp("raw-ave")
    write_ave(ave, 20, ["Bark", "Church bell", "Male speech, man speaking"], TINY, unique=1)
    return {"vggsound": vgg, "ave": ave}


def _cfg(dataset: str, src: Path, out: Path, **kw: object) -> PrepareConfig:
    return PrepareConfig(
        dataset, str(src), str(out), video=VIDEO, audio=AUDIO, val_fraction=0.25,
        progress=False, **kw,  # type: ignore[arg-type]
    )  # fmt: skip


def _tree(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


@pytest.mark.parametrize("dataset", ["vggsound", "ave"])
def test_merged_parts_equal_one_process_bit_for_bit(
    dataset: str, raw: dict[str, Path], tmp_path: Path
) -> None:
    one = tmp_path / "one"
    prepare(_cfg(dataset, raw[dataset], one, clean=True), log=quiet)
    parts = [tmp_path / f"part{i}" for i in range(3)]
    for i, part in enumerate(parts):
        prepare(_cfg(dataset, raw[dataset], part, shard=(i, 3), workers=2 if i == 1 else 1),
                log=quiet)  # fmt: skip
        assert (part / "shard.json").is_file() and not (part / "meta.json").exists()
    merged = tmp_path / "merged"
    merge(parts[::-1], merged, dataset=dataset, log=quiet)  # any order
    expected, got = _tree(one), _tree(merged)
    assert sorted(got) == sorted(expected)
    assert {"coverage.json", "coverage.md", "skipped.csv", "meta.json"} <= set(got)
    for name in expected:
        assert got[name] == expected[name], name
    merge(parts, merged, log=quiet)  # again: up to date, still the same
    assert _tree(merged) == expected


def test_a_part_resumes_and_the_merge_is_unchanged(
    raw: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = raw["vggsound"]
    one = tmp_path / "one"
    prepare(_cfg("vggsound", src, one, clean=True), log=quiet)
    calls = {"n": 0}
    real = prep.work._run_task

    def flaky(*args: object, **kwargs: object) -> object:
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt  # Ctrl-C after three clips of part 0
        return real(*args, **kwargs)  # type: ignore[arg-type]

    parts = [tmp_path / "p0", tmp_path / "p1"]
    monkeypatch.setattr(prep.work, "_run_task", flaky)
    with pytest.raises(KeyboardInterrupt):
        prepare(_cfg("vggsound", src, parts[0], shard=(0, 2)), log=quiet)
    monkeypatch.setattr(prep.work, "_run_task", real)
    assert not (parts[0] / "shard.json").exists()  # unfinished: the merge refuses it
    prepare(_cfg("vggsound", src, parts[1], shard=(1, 2)), log=quiet)
    with pytest.raises(UMTError, match="p0: has no shard.json"):
        merge(parts, tmp_path / "m", log=quiet)
    resumed = prepare(_cfg("vggsound", src, parts[0], shard=(0, 2)), log=quiet)
    assert sum(c.clips - c.new for c in resumed.splits.values()) == 3  # reused
    merge(parts, tmp_path / "m", log=quiet)
    assert _tree(tmp_path / "m") == _tree(one)


def test_merges_that_cannot_be_right_are_refused(
    raw: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = raw["vggsound"]
    a, b, c = (tmp_path / n for n in ("a", "b", "c"))
    prepare(_cfg("vggsound", src, a, shard=(0, 2)), log=quiet)
    prepare(_cfg("vggsound", src, b, shard=(0, 2)), log=quiet)
    prepare(_cfg("vggsound", src, c, shard=(1, 2), seed=1), log=quiet)
    with pytest.raises(UMTError, match="missing 1/2; given twice: 0/2"):
        merge([a, b], tmp_path / "m", log=quiet)
    with pytest.raises(UMTError, match="other settings"):
        merge([a, c], tmp_path / "m", log=quiet)
    with pytest.raises(UMTError, match="not 'ave'"):
        merge([a], tmp_path / "m", dataset="ave", log=quiet)
    base = ["prepare", "vggsound", "--src", str(src), "--no-progress"]
    assert main([*base, "--out", str(tmp_path / "x"), "--shard", "2/2"]) == 2
    assert "--shard 2/2: expected i/n with 0 <= i < n" in capsys.readouterr().err
    assert main([*base, "--out", str(tmp_path / "x"), "--shard", "0/2", "--clean"]) == 2
    assert "--clean with --shard" in capsys.readouterr().err
    assert main(["prepare", "vggsound", "--merge", str(a), "--out", str(tmp_path / "y")]) == 2
    assert "missing 1/2" in capsys.readouterr().err


def test_cli_shards_and_merge(raw: dict[str, Path], tmp_path: Path) -> None:
    src = raw["ave"]
    small = ["--frames", "2", "--size", "16", "--duration", "0.5", "--n-mels", "16",
             "--val-fraction", "0.25", "--no-progress"]  # fmt: skip
    parts = [str(tmp_path / f"part{i}") for i in range(2)]
    for i, part in enumerate(parts):
        argv = ["prepare", "ave", "--src", str(src), "--out", part, "--shard", f"{i}/2", *small]
        assert main(argv) == 0
    assert main(["prepare", "ave", "--merge", *parts, "--out", str(tmp_path / "m")]) == 0
    one = tmp_path / "one"
    assert main(["prepare", "ave", "--src", str(src), "--out", str(one), "--clean", *small]) == 0
    assert _tree(tmp_path / "m") == _tree(one)
