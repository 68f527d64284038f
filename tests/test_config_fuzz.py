"""Fuzz the config loader: malformed input raises UMTError (a readable message), never a crash."""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from umt.config import from_dict
from umt.errors import UMTError
from umt.study import StudyConfig, load_config

KEYS = ["name", "seeds", "methods", "data", "model", "train", "umt", "ume", "probe", "choice",
        "mask_fill", "fusion", "epochs", "lr", "encoder", "synthetic", "preset", "weight",
        "weights", "name", "root", "devices", "fusion_dim", "bogus"]  # fmt: skip
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 1000),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.sampled_from(KEYS), inner, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(KEYS), values, max_size=5))
def test_random_config_mappings_raise_only_umt_errors(raw: dict[str, object]) -> None:
    try:
        from_dict(StudyConfig, raw)
    except UMTError as e:
        assert str(e)


override_keys = st.lists(st.sampled_from(KEYS), min_size=1, max_size=3).map(".".join)
override_values = st.one_of(
    st.sampled_from(["", "[", "]", "{a: 1}", "[1, x]", "1e-3", "true", "null", "- a", ":", "'"]),
    st.text(max_size=10),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(override_keys, override_values), max_size=3), st.text(max_size=5))
def test_random_overrides_raise_only_umt_errors(pairs: list[tuple[str, str]], junk: str) -> None:
    overrides = [f"{k}={v}" for k, v in pairs] + ([junk] if junk else [])
    try:
        load_config(overrides=overrides)
    except UMTError as e:
        assert str(e)


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.binary(max_size=200) | st.text(max_size=200))
def test_random_yaml_files_raise_only_umt_errors(tmp_path: Path, content: bytes | str) -> None:
    path = tmp_path / "study.yaml"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    try:
        load_config(path)
    except UMTError as e:
        assert str(e)
