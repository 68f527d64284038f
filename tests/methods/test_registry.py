"""The methods' registry: each peer registered with a config section of its own."""

from __future__ import annotations

from helpers.methods import PEERS

from umt.methods import METHODS
from umt.study import load_config


def test_peers_are_registered_with_a_config_section() -> None:
    cfg = load_config()
    for name in PEERS:
        assert METHODS[name].build is not None and not METHODS[name].uses_teachers
        assert getattr(cfg, name) is not None
    assert load_config(overrides=["ogm_ge.alpha=0.3"]).ogm_ge.alpha == 0.3
