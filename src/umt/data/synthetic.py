"""A synthetic multi-modal data set whose knobs make modality failure visible.

Each sample has a label ``y`` and one vector per modality. A modality's vector holds

* **uni-modal features**: a point near one of ``clusters`` prototypes of class ``y``, scaled by
  the modality's ``strength`` — how well the modality predicts the label alone;
* **paired features** (for a share ``paired_share`` of the samples): each modality shows a code
  ``a_m`` in ``0..K-1`` and the label is their sum modulo ``K``. One modality's code says nothing
  about the label; only the combination does. On those samples the uni-modal features are drawn for
  a random class, so they carry nothing either.

Both parts live in a few signal dimensions, rotated into ``dim`` dimensions of Gaussian noise, so
that an encoder has to learn where the signal is (a random encoder's linear probe is poor).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from umt.data.base import ArrayDataset, DataBundle
from umt.errors import UMTError


@dataclass(frozen=True)
class SyntheticConfig:
    """The generator's knobs. ``preset`` names a starting point; other keys set here override it.

    Attributes:
        preset: a key of ``PRESETS`` or ``"none"`` (use the fields as given).
        num_classes: K.
        modalities: names of the modalities (any number, at least one).
        strengths: per modality, the scale of the uni-modal signal against unit noise.
        dim: input dimension of every modality.
        signal_dim: dimensions holding the uni-modal (and, separately, the paired) signal.
        clusters: prototypes per class; more makes the uni-modal features less linear.
        paired_share: share of samples whose label only the combination of modalities reveals.
        pair_strength: scale of the paired codes' signal.
        n_train, n_val, n_test: split sizes.
        seed: the data's own seed (prototypes and samples), independent of the training seed.
    """

    preset: str = "imbalanced"
    num_classes: int | None = None
    modalities: tuple[str, ...] | None = None
    strengths: tuple[float, ...] | None = None
    dim: int | None = None
    signal_dim: int | None = None
    clusters: int | None = None
    paired_share: float | None = None
    pair_strength: float | None = None
    n_train: int | None = None
    n_val: int | None = None
    n_test: int | None = None
    seed: int | None = None


@dataclass(frozen=True)
class _Spec:
    num_classes: int
    modalities: tuple[str, ...]
    strengths: tuple[float, ...]
    dim: int
    signal_dim: int
    clusters: int
    paired_share: float
    pair_strength: float
    n_train: int
    n_val: int
    n_test: int
    seed: int


_BASE = _Spec(
    num_classes=10,
    modalities=("strong", "weak"),
    strengths=(6.0, 4.0),
    dim=64,
    signal_dim=8,
    clusters=3,
    paired_share=0.0,
    pair_strength=3.0,
    n_train=1500,
    n_val=1000,
    n_test=2000,
    seed=0,
)

#: Named starting points. "imbalanced": one strong and one weak modality, no paired features
#: (joint training under-trains the weak encoder; UMT fixes it). "paired": on 80 % of the samples
#: the label is only in the combination (sum of codes modulo 4): joint training and UMT can learn
#: it, the uni-modal models and their ensemble cannot. "balanced": two equal modalities.
#: "three": three modalities of decreasing strength.
PRESETS: dict[str, _Spec] = {
    "imbalanced": _BASE,
    "paired": replace(_BASE, num_classes=4, n_train=3000, paired_share=0.8, pair_strength=5.0),
    "balanced": replace(_BASE, modalities=("a", "b"), strengths=(5.0, 5.0)),
    "three": replace(_BASE, modalities=("strong", "medium", "weak"), strengths=(6.0, 5.0, 4.0)),
}


def resolve(cfg: SyntheticConfig) -> _Spec:
    """The preset with the fields ``cfg`` sets on top, checked."""
    if cfg.preset != "none" and cfg.preset not in PRESETS:
        raise UMTError(
            f"unknown synthetic preset {cfg.preset!r} (data.synthetic.preset); "
            f"expected one of {sorted(PRESETS)} or 'none'"
        )
    spec = PRESETS.get(cfg.preset, _BASE)
    overrides = {k: v for k, v in vars(cfg).items() if k != "preset" and v is not None}
    spec = replace(spec, **overrides)
    if len(spec.strengths) != len(spec.modalities):
        raise UMTError(
            f"data.synthetic.strengths has {len(spec.strengths)} values but there are "
            f"{len(spec.modalities)} modalities {list(spec.modalities)}; give one per modality"
        )
    if not 0.0 <= spec.paired_share <= 1.0:
        raise UMTError(f"data.synthetic.paired_share must be in [0, 1]; got {spec.paired_share}")
    least = {"num_classes": 2, "clusters": 1, "signal_dim": 1, "n_train": 0, "n_val": 0}
    least |= {"n_test": 0, "seed": 0}
    for key, low in least.items():  # what the generator can draw (found by tests/test_properties)
        if getattr(spec, key) < low:
            raise UMTError(
                f"data.synthetic.{key}: expected at least {low}, got {getattr(spec, key)}"
            )
    if not spec.modalities:
        raise UMTError("data.synthetic.modalities: give at least one modality")
    if spec.paired_share > 0 and len(spec.modalities) < 2:
        raise UMTError("paired features need at least two modalities (data.synthetic.modalities)")
    if 2 * spec.signal_dim > spec.dim:
        raise UMTError(
            f"data.synthetic.dim ({spec.dim}) must be at least twice signal_dim ({spec.signal_dim})"
        )
    return spec


def _unit_rows(rng: np.random.Generator, *shape: int) -> np.ndarray:
    v = rng.standard_normal(shape)
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def generate(
    spec: _Spec, n: int, rng: np.random.Generator, protos: dict[str, np.ndarray]
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Draw ``n`` samples with the given prototypes (see the module docstring)."""
    k, m = spec.num_classes, len(spec.modalities)
    y = rng.integers(0, k, n)
    paired = rng.random(n) < spec.paired_share
    # Paired codes: a_1..a_{M-1} uniform, a_M completes the sum to y on paired samples; on the
    # others it is uniform too, so no subset of fewer than M codes tells anything about y.
    codes = rng.integers(0, k, (n, m))
    codes[paired, -1] = (y[paired] - codes[paired, :-1].sum(1)) % k
    arrays = {}
    for i, name in enumerate(spec.modalities):
        uni_class = np.where(paired, rng.integers(0, k, n), y)
        cluster = rng.integers(0, spec.clusters, n)
        signal = np.zeros((n, spec.dim))
        signal[:, : spec.signal_dim] = spec.strengths[i] * protos[f"{name}/uni"][uni_class, cluster]
        if spec.paired_share > 0:
            pair = spec.pair_strength * protos[f"{name}/pair"][codes[:, i]]
            signal[:, spec.signal_dim : 2 * spec.signal_dim] = pair
        x = signal @ protos[f"{name}/rotation"] + rng.standard_normal((n, spec.dim))
        arrays[name] = x.astype(np.float32)
    return arrays, y.astype(np.int64)


def load_synthetic(cfg: SyntheticConfig) -> DataBundle:
    """Generate the data set that ``cfg`` describes (deterministic in ``seed``).

    Example:
        >>> data = load_synthetic(SyntheticConfig(preset="imbalanced", n_train=8, n_val=4, n_test=4))
        >>> data.modalities, data.input_shapes["weak"], len(data.train)
        (('strong', 'weak'), (64,), 8)
    """
    spec = resolve(cfg)
    rng = np.random.default_rng(spec.seed)
    protos: dict[str, np.ndarray] = {}
    for name in spec.modalities:
        protos[f"{name}/uni"] = _unit_rows(rng, spec.num_classes, spec.clusters, spec.signal_dim)
        protos[f"{name}/pair"] = _unit_rows(rng, spec.num_classes, spec.signal_dim)
        q, _ = np.linalg.qr(rng.standard_normal((spec.dim, spec.dim)))
        protos[f"{name}/rotation"] = q
    train, val, test = (
        ArrayDataset(*generate(spec, n, rng, protos))
        for n in (spec.n_train, spec.n_val, spec.n_test)
    )
    return DataBundle(
        name="synthetic",
        train=train,
        val=val,
        test=test,
        num_classes=spec.num_classes,
        description=f"synthetic preset {cfg.preset!r}",
        info={"spec": vars(spec)},
    )
