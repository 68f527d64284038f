"""The umt-folder format: round trip, one test per problem the checker finds, export, fuzzing."""

from __future__ import annotations

import json
import mmap
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from umt.data import DATASETS, SPLITS, ArrayDataset, DataBundle, DataConfig, load_data
from umt.data.folder import (
    Problem,
    check_folder,
    export_folder,
    format_problems,
    load_folder,
)
from umt.data.folder import check as folder_check
from umt.data.folder import export as folder_export
from umt.data.synthetic import SyntheticConfig
from umt.errors import UMTError

SIZES = {"train": 6, "val": 4, "test": 4}
K = 3


def small_bundle(**info: Any) -> DataBundle:
    """Two modalities, ``a`` (N, 3) and ``b`` (N, 2, 2), three classes."""
    rng = np.random.default_rng(0)
    splits = {
        s: ArrayDataset(
            {
                "a": rng.standard_normal((n, 3)).astype(np.float32),
                "b": rng.standard_normal((n, 2, 2)).astype(np.float32),
            },
            np.arange(n) % K,
        )
        for s, n in SIZES.items()
    }
    return DataBundle(name="small", num_classes=K, info=dict(info), **splits)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    path = tmp_path / "data"
    export_folder(small_bundle(), path)
    return path


def read_meta(root: Path) -> dict[str, Any]:
    meta: dict[str, Any] = json.loads((root / "meta.json").read_text())
    return meta


def write_meta(root: Path, meta: object) -> None:
    (root / "meta.json").write_text(json.dumps(meta))


def errors(root: Path) -> list[Problem]:
    return [p for p in check_folder(root) if p.severity == "error"]


def only_problem(root: Path, file: str, *, index: int | None = None) -> Problem:
    """The one problem the checker reports, which must concern ``file`` (at ``index``)."""
    problems = check_folder(root)
    assert len(problems) == 1, format_problems(problems)
    (p,) = problems
    assert (p.file, p.index) == (file, index), str(p)
    return p


def is_mapped(arr: object) -> bool:
    while arr is not None:
        if isinstance(arr, np.memmap | mmap.mmap):
            return True
        arr = getattr(arr, "base", None)
    return False


# -- round trip ---------------------------------------------------------------------------


def test_round_trip_of_synthetic_data_is_exact_and_memory_mapped(tmp_path: Path) -> None:
    synth = SyntheticConfig(n_train=24, n_val=8, n_test=8)
    data = load_data(DataConfig(name="synthetic", synthetic=synth))
    export_folder(data, tmp_path / "synth")
    assert check_folder(tmp_path / "synth") == []

    loaded = load_data(DataConfig(name="folder", root=str(tmp_path / "synth")))
    assert DATASETS["folder"].load is load_folder
    assert (loaded.name, loaded.num_classes, loaded.task) == (
        "synthetic",
        data.num_classes,
        "classification",
    )
    assert loaded.modalities == data.modalities
    for split in SPLITS:
        ours, theirs = loaded.split(split), data.split(split)
        for m in data.modalities:
            assert isinstance(ours.arrays[m], np.memmap)
            np.testing.assert_array_equal(ours.arrays[m], theirs.arrays[m])
        assert is_mapped(ours.labels)
        np.testing.assert_array_equal(ours.labels, theirs.labels)
    batch = loaded.train[[0, 3]]
    assert batch["label"].dtype.is_floating_point is False
    np.testing.assert_array_equal(
        batch[data.modalities[0]].numpy(), data.train[[0, 3]][data.modalities[0]].numpy()
    )


def test_segmentation_label_maps_round_trip_with_ignore_index(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)

    def split(n: int) -> ArrayDataset:
        labels = rng.integers(0, K, (n, 4, 4))
        labels[0, 0, 0] = 255
        return ArrayDataset({"rgb": rng.random((n, 3, 4, 4)).astype(np.float16)}, labels)

    bundle = DataBundle(
        "seg",
        split(3),
        split(2),
        split(2),
        num_classes=K,
        task="segmentation",
        info={"ignore_index": 255, "class_names": ["sky", "road", "car"]},
    )
    export_folder(bundle, tmp_path / "seg")
    meta = read_meta(tmp_path / "seg")
    assert meta["label_shape"] == [4, 4] and meta["ignore_index"] == 255
    assert meta["modalities"]["rgb"] == {"shape": [3, 4, 4], "dtype": "float16"}
    assert check_folder(tmp_path / "seg") == []
    loaded = load_folder(DataConfig(name="folder", root=str(tmp_path / "seg")))
    assert loaded.task == "segmentation" and loaded.info["class_names"] == ["sky", "road", "car"]
    np.testing.assert_array_equal(loaded.val.labels, bundle.val.labels)

    labels = np.load(tmp_path / "seg/val/labels.npy")
    labels[1, 2, 3] = 7  # neither a class nor the ignore index
    np.save(tmp_path / "seg/val/labels.npy", labels)
    p = only_problem(tmp_path / "seg", "val/labels.npy", index=1)
    assert "label 7" in p.message and "ignore_index 255" in p.message


# -- the folder and meta.json -------------------------------------------------------------


def test_valid_folder_has_no_problems(root: Path) -> None:
    assert check_folder(root) == []
    assert format_problems(check_folder(root)) == "no problems found"


def test_missing_or_non_folder_root(tmp_path: Path) -> None:
    p = only_problem(tmp_path / "nope", ".")
    assert "does not exist" in p.message and "nope" in p.message
    (tmp_path / "file").write_text("x")
    assert "is not a folder" in only_problem(tmp_path / "file", ".").message


def test_meta_missing(root: Path) -> None:
    (root / "meta.json").unlink()
    problems = check_folder(root)
    assert [p.file for p in problems] == ["meta.json"]  # the files are still checked, and fine
    assert "missing" in problems[0].message


@pytest.mark.parametrize("kind", ["not-utf8", "directory"])
def test_meta_unreadable(root: Path, kind: str) -> None:
    (root / "meta.json").unlink()
    if kind == "directory":
        (root / "meta.json").mkdir()
    else:
        (root / "meta.json").write_bytes(b'{"name": "\xff\xfe"}')
    assert "cannot be read" in only_problem(root, "meta.json").message


def test_meta_bad_json(root: Path) -> None:
    (root / "meta.json").write_text('{"format": "umt-folder",\n "version": 1,,}')
    p = only_problem(root, "meta.json")
    assert "not valid JSON" in p.message and "line 2" in p.message


def test_meta_not_an_object(root: Path) -> None:
    write_meta(root, [1, 2])
    assert "JSON object" in only_problem(root, "meta.json").message


@pytest.mark.parametrize("key", ["format", "version", "name", "task", "num_classes", "modalities"])
def test_meta_missing_key(root: Path, key: str) -> None:
    meta = read_meta(root)
    del meta[key]
    write_meta(root, meta)
    problems = errors(root)
    assert problems[0].file == "meta.json"
    assert f"key {key!r} is missing" in problems[0].message
    if key != "modalities":  # without modalities the files cannot be matched, but are read
        assert len(problems) == 1


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("format", "npy", "'format' must be"),
        ("version", 2, "upgrade umt"),
        ("version", "1", "'version' must be the integer 1"),
        ("name", "", "'name' must be a non-empty string"),
        ("name", 5, "'name' must be a non-empty string"),
        ("task", "regression", "'task' must be one of"),
        ("num_classes", "3", '"3" (a string)'),
        ("num_classes", True, "true (a boolean)"),
        ("num_classes", 1, "'num_classes' must be an integer >= 2"),
        ("class_names", ["x"], "'class_names' has 1 names but num_classes is 3"),
        ("class_names", "abc", "'class_names' must be a list of strings"),
        ("description", 5, "'description' must be a string"),
        ("label_shape", [0], "'label_shape' must be a list of positive integers"),
        ("ignore_index", 1.5, "'ignore_index' must be an integer or null"),
        ("modalities", [], "'modalities' must be a non-empty object"),
        ("modalities", {}, "'modalities' must be a non-empty object"),
    ],
)
def test_meta_wrong_type(root: Path, key: str, value: object, expected: str) -> None:
    meta = read_meta(root)
    meta[key] = value
    write_meta(root, meta)
    meta_problems = [p for p in errors(root) if p.file == "meta.json"]
    assert len(meta_problems) == 1, format_problems(meta_problems)
    assert expected in meta_problems[0].message


def test_segmentation_needs_label_shape(root: Path) -> None:
    meta = read_meta(root)
    meta["task"] = "segmentation"
    write_meta(root, meta)
    assert "needs key 'label_shape'" in only_problem(root, "meta.json").message


@pytest.mark.parametrize(
    ("name", "entry", "expected"),
    [
        ("labels", {"shape": [3]}, "modality name 'labels' cannot be used"),
        ("label", {"shape": [3]}, "modality name 'label' cannot be used"),
        ("x/y", {"shape": [3]}, "modality name 'x/y' cannot be used"),
        ("a", 5, "modalities.a must be an object"),
        ("a", {"dtype": "float32"}, "modalities.a.shape must be the shape of one sample"),
        ("a", {"shape": "3"}, "modalities.a.shape must be"),
        ("a", {"shape": [3, 0]}, "modalities.a.shape must be"),
        ("a", {"shape": []}, "modalities.a.shape must be"),
        ("a", {"shape": [3], "dtype": "str"}, "'str' is not a number type"),
        ("a", {"shape": [3], "dtype": "no-such-type"}, "'no-such-type' is not a NumPy dtype"),
        ("a", {"shape": [3], "dtype": 32}, "modalities.a.dtype must be a string"),
    ],
)
def test_meta_bad_modality(root: Path, name: str, entry: object, expected: str) -> None:
    meta = read_meta(root)
    meta["modalities"][name] = entry
    write_meta(root, meta)
    meta_problems = [p for p in errors(root) if p.file == "meta.json"]
    assert len(meta_problems) == 1, format_problems(meta_problems)
    assert expected in meta_problems[0].message


def test_unknown_meta_keys_are_warnings(root: Path) -> None:
    meta = read_meta(root)
    meta["colour"] = "blue"
    meta["modalities"]["a"]["mean"] = 0.5
    write_meta(root, meta)
    problems = check_folder(root)
    assert [(p.file, p.severity) for p in problems] == [("meta.json", "warning")] * 2
    assert "'colour'" in problems[0].message and "modalities.a.mean" in problems[1].message


# -- split folders and files --------------------------------------------------------------


@pytest.mark.parametrize("as_file", [False, True])
def test_missing_split_folder(root: Path, as_file: bool) -> None:
    shutil.rmtree(root / "val")
    if as_file:
        (root / "val").write_text("")
    p = only_problem(root, "val/")  # and nothing about val's files
    assert ("is not a folder" if as_file else "split folder is missing") in p.message


def test_missing_modality_file(root: Path) -> None:
    (root / "train/a.npy").rename(root / "train/A.npy")
    problems = check_folder(root)
    missing = [p for p in problems if p.severity == "error"]
    assert [(p.file, p.index) for p in missing] == [("train/a.npy", None)]
    assert "declares modality 'a'" in missing[0].message and "A.npy" in missing[0].message
    assert [p.file for p in problems if p.severity == "warning"] == ["train/A.npy"]


def test_missing_labels_file(root: Path) -> None:
    (root / "test/labels.npy").unlink()
    assert "every split needs test/labels.npy" in only_problem(root, "test/labels.npy").message


def _object_array(path: Path) -> None:
    np.save(path, np.array([None, 1], dtype=object), allow_pickle=True)


def _truncated(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 8])


@pytest.mark.parametrize(
    ("breaker", "expected"),
    [
        (lambda p: p.write_bytes(b"not an array"), "cannot be read as a .npy array"),
        (_object_array, "cannot be read as a .npy array"),
        (_truncated, "cannot be read as a .npy array"),
        (
            lambda p: np.savez(p.with_suffix(""), x=np.zeros(3)) or p.with_suffix(".npz").rename(p),
            ".npz archive",
        ),
        (lambda p: p.unlink() or p.mkdir(), "is not a file"),
        (lambda p: np.save(p, np.float32(1)), "holds one value"),
    ],
    ids=["garbage", "object", "truncated", "npz", "directory", "scalar"],
)
def test_unreadable_npy(root: Path, breaker: Any, expected: str) -> None:
    breaker(root / "val/b.npy")
    assert expected in only_problem(root, "val/b.npy").message


def test_per_sample_shape_differs_from_meta(root: Path) -> None:
    np.save(root / "train/b.npy", np.zeros((6, 2, 3), np.float32))
    p = only_problem(root, "train/b.npy")
    assert "per-sample shape [2, 3]" in p.message and "modalities.b.shape [2, 2]" in p.message


@pytest.mark.parametrize(
    ("array", "expected"),
    [
        (np.full((6, 3), "x"), "dtype <U1 is not a number type"),
        (np.zeros((6, 3), bool), "dtype bool is not a number type"),
        (np.zeros((6, 3), np.complex64), "dtype complex64 is not a number type"),
        (np.zeros((6, 3), np.float64), "meta.json declares modalities.a.dtype 'float32'"),
    ],
    ids=["str", "bool", "complex", "undeclared"],
)
def test_dtype_problems(root: Path, array: np.ndarray, expected: str) -> None:
    np.save(root / "train/a.npy", array)
    assert expected in only_problem(root, "train/a.npy").message


def test_dtype_is_optional_in_meta(root: Path) -> None:
    meta = read_meta(root)
    del meta["modalities"]["a"]["dtype"]
    write_meta(root, meta)
    np.save(root / "train/a.npy", np.zeros((6, 3), np.uint8))
    assert check_folder(root) == []


def test_sample_counts_differ(root: Path) -> None:
    np.save(root / "train/a.npy", np.zeros((5, 3), np.float32))
    p = only_problem(root, "train/a.npy")
    assert "has 5 samples but train/labels.npy has 6" in p.message


def test_labels_not_integer(root: Path) -> None:
    np.save(root / "val/labels.npy", np.zeros(4, np.float32))
    assert "expected integers" in only_problem(root, "val/labels.npy").message


def test_labels_wrong_shape(root: Path) -> None:
    np.save(root / "val/labels.npy", np.zeros((4, 1), np.int64))
    assert "expected shape (N,)" in only_problem(root, "val/labels.npy").message


@pytest.mark.parametrize(("index", "value"), [(0, -1), (2, 3), (4, 200)])
@pytest.mark.parametrize("chunk_bytes", [1, 16, 2**20])
def test_labels_out_of_range(
    root: Path, monkeypatch: pytest.MonkeyPatch, index: int, value: int, chunk_bytes: int
) -> None:
    monkeypatch.setattr(folder_check, "_CHUNK_BYTES", chunk_bytes)  # cross chunk boundaries
    labels = np.load(root / "train/labels.npy")
    labels[index] = value
    labels[-1] = -5  # a second offender: the first one is reported, both counted
    np.save(root / "train/labels.npy", labels)
    p = only_problem(root, "train/labels.npy", index=index)
    assert f"label {value} is outside 0..2" in p.message
    assert "2 of 6 samples" in p.message


@pytest.mark.parametrize(("bad", "name"), [(np.nan, "NaN"), (np.inf, "inf"), (-np.inf, "inf")])
@pytest.mark.parametrize("chunk_bytes", [1, 40, 2**20])
def test_nan_and_inf_values(
    root: Path, monkeypatch: pytest.MonkeyPatch, bad: float, name: str, chunk_bytes: int
) -> None:
    monkeypatch.setattr(folder_check, "_CHUNK_BYTES", chunk_bytes)
    arr = np.load(root / "val/b.npy")
    arr[2, 1, 0] = bad
    arr[3, 0, 1] = np.nan
    np.save(root / "val/b.npy", arr)
    p = only_problem(root, "val/b.npy", index=2)
    assert f"holds {name}" in p.message and "2 of 4 samples" in p.message


def test_empty_split(root: Path) -> None:
    for m, shape in (("a", (0, 3)), ("b", (0, 2, 2)), ("labels", (0,))):
        np.save(root / f"test/{m}.npy", np.zeros(shape, np.int64 if m == "labels" else np.float32))
    assert "split is empty" in only_problem(root, "test/").message


def test_undeclared_npy_file_is_a_warning(root: Path) -> None:
    np.save(root / "train/c.npy", np.zeros((6, 1), np.float32))
    p = only_problem(root, "train/c.npy")
    assert p.severity == "warning" and "not declared" in p.message
    with pytest.warns(UserWarning, match="train/c.npy"):
        load_folder(DataConfig(name="folder", root=str(root)))


def test_every_problem_is_reported_at_once(root: Path) -> None:
    meta = read_meta(root)
    meta["num_classes"] = "three"
    write_meta(root, meta)
    shutil.rmtree(root / "test")
    np.save(root / "train/a.npy", np.full((6, 3), np.nan, np.float32))
    np.save(root / "train/b.npy", np.zeros((4, 2, 2), np.float32))
    (root / "val/labels.npy").write_bytes(b"junk")
    files = [(p.file, p.index) for p in check_folder(root)]
    assert files == [
        ("meta.json", None),
        ("train/b.npy", None),
        ("train/a.npy", 0),
        ("val/labels.npy", None),
        ("test/", None),
    ]


def test_files_are_checked_when_meta_is_broken(root: Path) -> None:
    (root / "meta.json").write_text("{")
    np.save(root / "val/a.npy", np.zeros((3, 3), np.float32))
    np.save(root / "val/b.npy", np.full((4, 2, 2), np.inf, np.float32))
    files = [(p.file, p.index) for p in check_folder(root)]
    assert files == [("meta.json", None), ("val/a.npy", None), ("val/b.npy", 0)]


def test_format_problems_one_line_each() -> None:
    text = format_problems(
        [Problem("meta.json", None, "bad"), Problem("a/b.npy", 4, "NaN", "warning")]
    )
    assert text.splitlines() == [
        "error:   meta.json: bad",
        "warning: a/b.npy, sample 4: NaN",
        "1 error, 1 warning",
    ]


# -- load_folder --------------------------------------------------------------------------


def test_load_folder_needs_an_existing_root(tmp_path: Path) -> None:
    with pytest.raises(UMTError, match="data.root is not set"):
        load_folder(DataConfig(name="folder"))
    with pytest.raises(UMTError, match="data.root: .*nope does not exist"):
        load_folder(DataConfig(name="folder", root=str(tmp_path / "nope")))


def test_load_folder_lists_every_problem(root: Path) -> None:
    (root / "val/a.npy").unlink()
    np.save(root / "test/labels.npy", np.array([0, 1, 2, 3]))  # 3 is out of range
    with pytest.raises(UMTError) as info:
        load_folder(DataConfig(name="folder", root=str(root)))
    message = str(info.value)
    assert "2 errors" in message and "val/a.npy" in message
    assert "test/labels.npy, sample 3: label 3" in message and "umt data check" in message


# -- export_folder ------------------------------------------------------------------------


def test_export_refuses_an_existing_path(root: Path, tmp_path: Path) -> None:
    with pytest.raises(UMTError, match="already exists"):
        export_folder(small_bundle(), root)
    (tmp_path / "other").mkdir()
    (tmp_path / "other/notes.txt").write_text("mine")
    with pytest.raises(UMTError, match="not an umt-folder data set"):
        export_folder(small_bundle(), tmp_path / "other", overwrite=True)
    assert (tmp_path / "other/notes.txt").read_text() == "mine"


def test_export_overwrite_and_empty_folder(root: Path, tmp_path: Path) -> None:
    np.save(root / "train/c.npy", np.zeros((6, 1), np.float32))
    export_folder(small_bundle(), root, overwrite=True)
    assert check_folder(root) == []  # c.npy went with the old folder
    (tmp_path / "empty").mkdir()
    export_folder(small_bundle(), tmp_path / "empty")
    assert check_folder(tmp_path / "empty") == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "empty"]  # no leftovers


def test_interrupted_export_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def failing_write(path: Path, arr: np.ndarray, dtype: np.dtype[Any]) -> None:
        calls.append(path)
        if len(calls) == 4:
            raise KeyboardInterrupt
        np.save(path, arr.astype(dtype))

    monkeypatch.setattr(folder_export, "_write_npy", failing_write)
    with pytest.raises(KeyboardInterrupt):
        export_folder(small_bundle(), tmp_path / "data")
    assert list(tmp_path.iterdir()) == []


def test_export_rejects_what_the_format_cannot_hold(tmp_path: Path) -> None:
    ds = ArrayDataset({"x/y": np.zeros((2, 3), np.float32)}, np.array([0, 1]))
    with pytest.raises(UMTError, match="modality name 'x/y' cannot be used"):
        export_folder(DataBundle("bad", ds, ds, ds, num_classes=2), tmp_path / "bad")
    ds = ArrayDataset({"x": np.full((2, 3), "s")}, np.array([0, 1]))
    with pytest.raises(UMTError, match="not a number type"):
        export_folder(DataBundle("bad", ds, ds, ds, num_classes=2), tmp_path / "bad")
    ds = ArrayDataset({"x": np.zeros((2, 3), np.float32)}, np.array([0.0, 1.0]))
    with pytest.raises(UMTError, match="labels of dtype float64; expected integers"):
        export_folder(DataBundle("bad", ds, ds, ds, num_classes=2), tmp_path / "bad")
    assert list(tmp_path.iterdir()) == []


# -- fuzzing ------------------------------------------------------------------------------

_DELETE = object()
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=6),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=6,
)
meta_paths = st.sampled_from(
    [
        ("format",),
        ("version",),
        ("name",),
        ("task",),
        ("num_classes",),
        ("class_names",),
        ("label_shape",),
        ("ignore_index",),
        ("description",),
        ("modalities",),
        ("modalities", "a"),
        ("modalities", "a", "shape"),
        ("modalities", "a", "dtype"),
        ("modalities", "b", "shape"),
        ("modalities", "c"),
        ("extra",),
    ]
)
meta_edits = st.lists(st.tuples(meta_paths, json_values | st.just(_DELETE)), min_size=1, max_size=3)
array_files = st.sampled_from([f"{s}/{f}.npy" for s in SPLITS for f in ("a", "b", "labels")])
arrays = hnp.arrays(
    dtype=st.sampled_from(
        [
            "float32",
            "float64",
            "float16",
            "int8",
            "int64",
            "uint64",
            "bool",
            "complex64",
            "U2",
            "M8[s]",
        ]
    ),
    shape=hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4),
)
file_contents = st.one_of(arrays, st.binary(max_size=200), st.just("object"), st.just("delete"))


def _edit(meta: dict[str, Any], path: tuple[str, ...], value: object) -> None:
    node: Any = meta
    for key in path[:-1]:
        if not isinstance(node, dict) or key not in node:
            return
        node = node[key]
    if isinstance(node, dict):
        if value is _DELETE:
            node.pop(path[-1], None)
        else:
            node[path[-1]] = value


def _assert_robust(root: Path) -> None:
    """The checker returns problems, the loader raises only UMTError and agrees with it."""
    problems = check_folder(root)
    assert all(isinstance(p, Problem) for p in problems)
    assert format_problems(problems)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            data = load_folder(DataConfig(name="folder", root=str(root)))
    except UMTError:
        assert any(p.severity == "error" for p in problems)
        return
    batch = data.train[[0]]
    assert all(t.dtype.is_floating_point for k, t in batch.items() if k != "label")


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("pristine") / "data"
    export_folder(small_bundle(), path)
    return path


_FUZZ = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@_FUZZ
@given(edits=meta_edits, whole=st.none() | json_values | st.binary(max_size=100))
def test_fuzz_meta_json(
    pristine: Path, edits: list[tuple[tuple[str, ...], object]], whole: object
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(shutil.copytree(pristine, Path(tmp) / "data"))
        if isinstance(whole, bytes):
            (root / "meta.json").write_bytes(whole)
        elif whole is not None:
            write_meta(root, whole)
        else:
            meta = read_meta(root)
            for path, value in edits:
                _edit(meta, path, value)
            write_meta(root, meta)
        _assert_robust(root)


@_FUZZ
@given(changes=st.lists(st.tuples(array_files, file_contents), min_size=1, max_size=3))
def test_fuzz_array_files(pristine: Path, changes: list[tuple[str, object]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(shutil.copytree(pristine, Path(tmp) / "data"))
        for name, content in changes:
            path = root / name
            path.unlink(missing_ok=True)
            if isinstance(content, np.ndarray):
                np.save(path, content)
            elif isinstance(content, bytes):
                path.write_bytes(content)
            elif content == "object":
                _object_array(path)
        _assert_robust(root)
