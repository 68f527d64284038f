"""Every recipe's manifest (class lists, split rules, expected counts) is checked here as data;
CREMA-D's speaker-independent split keeps every actor in one split; Kinetics-Sounds' class
lists are named options; `umt prepare` reports what it prepared against the manifest."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import pytest

from umt.data.prepare.manifest import MANIFESTS, load_manifest

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "src" / "umt" / "configs"
#: The benchmarks' recipes (configs/*.yaml; configs/recipes/ holds the recipe layers the search
#: found for built-in sets, which read no raw files and have no manifest).
RECIPES = sorted(CONFIGS.glob("*.yaml"))


def test_every_recipe_ships_a_manifest_and_each_is_shipped() -> None:
    assert {p.stem for p in RECIPES} == {p.stem for p in MANIFESTS.glob("*.yaml")}
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert "configs/manifests/*.yaml" in data["package-data"]["umt"]


@pytest.mark.parametrize("recipe", [p.stem for p in RECIPES])
def test_a_manifest_is_well_formed(recipe: str) -> None:
    from umt.data.prepare import PREPARABLE
    from umt.study import load_config

    m = load_manifest(recipe)  # schema: unique names, defaults exist, counts add up
    assert m.recipe == recipe and m.title and m.source
    assert m.dataset is None or m.dataset in PREPARABLE
    for c in m.classes.values():
        assert c.version >= 1 and len(c.source) > 40  # where the list comes from, in words
        # the list's size is stated where it comes from
        assert re.search(rf"\b{len(c.names)}\b", c.source), (c.name, len(c.names))
    for rule in m.splits.values():
        assert rule.rule and (rule.expected is None or rule.expected_source)
    cfg = load_config(next(p for p in RECIPES if p.stem == recipe))
    assert cfg.data.name in ("prepared", "nyuv2", "rgbd")


def test_the_manifests_agree_with_the_code() -> None:
    from umt.data import rgbd
    from umt.data.prepare import BENCHMARKS, CREMAD_EMOTIONS, KINETICS_SOUNDS_CLASSES
    from umt.study import load_config

    assert {
        load_manifest(r).dataset for r in ("vggsound", "kinetics_sounds", "cremad", "ave")
    } == set(BENCHMARKS)
    ks = load_manifest("kinetics_sounds")
    assert ks.default_classes == "l3-32" and ks.class_list().names == KINETICS_SOUNDS_CLASSES
    assert {c.name: len(c.names) for c in ks.classes.values()} == {
        "l3-32": 32,
        "l3-33": 33,
        "public-31": 31,
    }
    assert load_manifest("cremad").class_list().names == CREMAD_EMOTIONS
    assert len(load_manifest("vggsound").class_list().names) == 309
    assert len(load_manifest("ave").class_list().names) == 28
    nyu = load_manifest("nyuv2")
    assert [len(c.names) for c in nyu.classes.values()] == [40, 13]
    rg = load_manifest("rgbd")
    assert rg.class_list().names == rgbd.CLASS_NAMES
    sizes = load_config(next(p for p in RECIPES if p.stem == "rgbd")).data.rgbd
    assert rg.split_rule().expected == {
        "train": sizes.n_train, "val": sizes.n_val, "test": sizes.n_test,
        "total": sizes.n_train + sizes.n_val + sizes.n_test,
    }  # fmt: skip


def test_cremad_speaker_independent_actor_lists_are_disjoint_and_cover_every_actor() -> None:
    m = load_manifest("cremad")
    assert m.default_split == "common"
    actors = m.split_rule("speaker-independent").actors
    assert actors is not None
    sets = {s: set(ids) for s, ids in actors.items()}
    assert not sets["train"] & sets["val"] and not sets["train"] & sets["test"]
    assert not sets["val"] & sets["test"]
    assert sets["train"] | sets["val"] | sets["test"] == {str(a) for a in range(1001, 1092)}


def test_named_class_lists_and_split_rules_and_their_errors(tmp_path: Path) -> None:
    from umt.data.prepare.readers import kinetics_sounds_classes
    from umt.errors import UMTError

    names, tag = kinetics_sounds_classes(None)
    assert len(names) == 32 and tag == "l3-32@1"
    names, tag = kinetics_sounds_classes("public-31")
    assert len(names) == 31 and "stomping grapes" in names and "typing" not in names
    mine = tmp_path / "mine.txt"
    mine.write_text("singing\nbowling\n")
    assert kinetics_sounds_classes(str(mine))[0] == ["singing", "bowling"]
    with pytest.raises(
        UMTError, match=r"--classes ks-34: .*\['l3-32', 'l3-33', 'public-31'\] \(default l3-32\)"
    ):
        kinetics_sounds_classes("ks-34")
    with pytest.raises(
        UMTError, match=r"--split by-speaker: .*\['common', 'speaker-independent'\]"
    ):
        load_manifest("cremad").split_rule("by-speaker")


# --------------------------------------------------------------------------------------------
# preparing against the manifest (tiny clips)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    pytest.importorskip("av")
    from benchmarks.rehearsal_data import TINY, write_cremad, write_vggsound
    from umt.data.prepare import AudioSettings, PrepareConfig, VideoSettings, prepare

    root = tmp_path_factory.mktemp("manifests")
    # actors of all three speaker-independent lists (1001 train, 1023 val, 1014 test, 1002
    # train) and one that is in none (9999)
    write_cremad(root / "cremad", [1001, 1002, 1014, 1023, 9999], 6, TINY)
    write_vggsound(root / "vgg", 20, ["dog barking", "people marching"], TINY, unique=1,
                   missing=2, corrupt=1)  # fmt: skip
    small = {"video": VideoSettings(frames=1, size=16), "progress": False}
    out = {}
    for name, dataset, src, extra in (
        ("common", "cremad", "cremad", {}),
        ("speaker", "cremad", "cremad", {"split": "speaker-independent"}),
        ("vgg", "vggsound", "vgg", {}),
    ):
        out[name] = root / f"out-{name}"
        audio = AudioSettings(n_mels=16, duration=0.5)
        cfg = PrepareConfig(dataset, str(root / src), str(out[name]), audio=audio, val_fraction=0.25,
                            **small, **extra)  # type: ignore[arg-type]  # fmt: skip
        prepare(cfg, log=lambda _: None)
    return out


def _actors(folder: Path, split: str) -> set[str]:
    return {c[:4] for c in (folder / split / "clips.txt").read_text().split()}


def test_speaker_independent_split_has_no_actor_in_two_splits(prepared: dict[str, Path]) -> None:
    si = prepared["speaker"]
    actors = {s: _actors(si, s) for s in ("train", "val", "test")}
    assert actors == {"train": {"1001", "1002"}, "val": {"1023"}, "test": {"1014"}}
    skipped = (si / "skipped.csv").read_text()
    assert "9999" in skipped and "in none of the manifest's actor lists" in skipped
    cov = json.loads((si / "coverage.json").read_text())
    assert cov["split_rule"]["name"] == "speaker-independent" and not cov["split_rule"]["default"]
    assert cov["counts"]["total"]["expected"] == 7442 and cov["skipped"]["train"] == {"excluded": 6}
    common = prepared["common"]  # the default: actors shared between train and test
    assert _actors(common, "train") & _actors(common, "test")
    cov = json.loads((common / "coverage.json").read_text())
    assert cov["split_rule"] == {**cov["split_rule"], "name": "common", "default": True}
    assert "common" in (common / "coverage.md").read_text()


def test_the_coverage_report_says_what_is_missing(prepared: dict[str, Path]) -> None:
    out = prepared["vgg"]
    cov = json.loads((out / "coverage.json").read_text())
    assert cov["class_list"]["manifest"] == "vggsound-309@1"
    assert len(cov["class_list"]["manifest_not_used"]) == 307
    assert cov["class_list"]["used_not_in_manifest"] == []
    c = cov["counts"]
    assert (c["total"]["annotated"], c["total"]["prepared"], c["total"]["expected"]) == (
        20,
        17,
        199176,
    )
    assert c["train"]["includes_val"] and c["val"]["carved_from"] == "train"
    kinds: dict[str, int] = {}
    for per in cov["skipped"].values():
        for k, n in per.items():
            kinds[k] = kinds.get(k, 0) + n
    assert kinds == {"missing": 2, "undecodable": 1}
    md = (out / "coverage.md").read_text()
    assert "2 missing (no file), 1 undecodable" in md and "| total | 199,176 | 20 | 17 |" in md
    meta = json.loads((out / "prepared.json").read_text())
    assert (
        meta["settings"]["split"] == "official" and meta["settings"]["class_list"] == "annotations"
    )
