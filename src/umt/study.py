"""A study: teachers -> naive joint fusion -> UMT / UME -> probes -> choice -> report.

Every stage is cached in the run directory under a hash of everything it depends on (its own
settings, the data, the seed, and the hashes of the stages it builds on). Running the same study
again reuses finished stages; changing a setting retrains only the stages that depend on it.

    runs/<study>/
      study.yaml                  the resolved configuration
      seed<k>/<stage>/            teacher-<m>, joint, umt, ume
        config.yaml  metrics.csv  checkpoints/  model.pt  result.json  probe.json
      summary.json  report.md  report.html  figures/probes.png
"""

from __future__ import annotations

import io
import shutil
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from umt.config import apply_overrides, config_hash, from_dict, read_yaml, to_dict
from umt.data import DataBundle, DataConfig, load_data
from umt.engine import (
    DivergenceError,
    TrainConfig,
    accuracy,
    eval_device,
    fit,
    is_main_process,
    modality_accuracies,
    save_model,
    segmentation_scores,
)
from umt.errors import UMTError
from umt.faults import fault_point
from umt.io import read_json, write_bytes, write_json, write_text
from umt.methods import (
    METHODS,
    ChoiceConfig,
    Ensemble,
    G2DConfig,
    GBlendConfig,
    InfoRegConfig,
    Joint,
    Method,
    MethodContext,
    MLAConfig,
    MMParetoConfig,
    OGMGEConfig,
    PMRConfig,
    ReconBoostConfig,
    RelearnConfig,
    UMEConfig,
    UMTConfig,
    choose,
)
from umt.models import FUSIONS, ModelConfig, MultimodalModel, build_model, build_seg_model
from umt.probe import ProbeConfig, extract_features, probe

MASK_FILLS = ("zero", "mean")
#: Methods a segmentation study can run (the others are written for pooled feature vectors).
SEGMENTATION_METHODS = ("joint", "umt", "ume")


@dataclass(frozen=True)
class StudyConfig:
    """Everything a study does. ``umt run --set key=value`` sets any field by its dotted name.

    Attributes:
        name: the run directory's name under ``--out``.
        seeds: training seeds; every number is reported as mean ± std over them.
        methods: which of ``umt.methods.METHODS`` to run (``joint``, ``umt``, ``ume``, and the
            peers ``gblend``, ``ogm_ge``, ``mmpareto``, ``mla``, ``pmr``, ``reconboost``,
            ``inforeg``, ``relearn``; ``g2d`` is UMT with G2D's settings); teachers always run.
        data, model, train: the data set, the architecture, the training recipe.
        umt, ume, gblend, ogm_ge, mmpareto, mla, pmr, reconboost, g2d, inforeg, relearn: the
            methods' settings (each named as its method; ``g2d`` takes UMT's keys).
        probe, choice: the linear probe, the UMT/UME rule.
        mask_fill: how a modality is removed to measure a fused model per modality
            (``zero`` or its training ``mean``).
        fusion: a sweep over fusion modules (e.g. ``[concat, sum, gated, film, attention]``):
            each trained method runs once per fusion, as stage ``<method>-<fusion>``. Empty:
            ``model.fusion`` alone, stages named ``<method>``.
    """

    name: str = "default"
    seeds: tuple[int, ...] = (0, 1, 2)
    methods: tuple[str, ...] = ("joint", "umt", "ume")
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    umt: UMTConfig = field(default_factory=UMTConfig)
    gblend: GBlendConfig = field(default_factory=GBlendConfig)
    ogm_ge: OGMGEConfig = field(default_factory=OGMGEConfig)
    mmpareto: MMParetoConfig = field(default_factory=MMParetoConfig)
    mla: MLAConfig = field(default_factory=MLAConfig)
    pmr: PMRConfig = field(default_factory=PMRConfig)
    reconboost: ReconBoostConfig = field(default_factory=ReconBoostConfig)
    g2d: G2DConfig = field(default_factory=G2DConfig)
    inforeg: InfoRegConfig = field(default_factory=InfoRegConfig)
    relearn: RelearnConfig = field(default_factory=RelearnConfig)
    ume: UMEConfig = field(default_factory=UMEConfig)
    probe: ProbeConfig = field(default_factory=ProbeConfig)
    choice: ChoiceConfig = field(default_factory=ChoiceConfig)
    mask_fill: str = "zero"
    fusion: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown:
            raise UMTError(f"methods: unknown {unknown}; expected some of {list(METHODS)}")
        if len(set(self.methods)) != len(self.methods):
            raise UMTError(f"methods: each method once, got {list(self.methods)}")
        if not self.seeds:
            raise UMTError("seeds: give at least one seed")
        if self.mask_fill not in MASK_FILLS:
            raise UMTError(f"mask_fill: expected one of {MASK_FILLS}, got {self.mask_fill!r}")
        if self.choice.split == "test":
            raise UMTError("choice.split: the rule must not look at the test split; use 'val'")
        if self.choice.split not in ("train", "val"):
            raise UMTError(f"choice.split: expected 'val' (or 'train'), got {self.choice.split!r}")
        bad = [f for f in (*self.fusion, self.model.fusion) if f not in FUSIONS]
        if bad:
            raise UMTError(f"fusion: unknown {bad}; expected some of {sorted(FUSIONS)}")
        if self.train.epochs < 1:
            raise UMTError(f"train.epochs: expected at least 1, got {self.train.epochs}")


def load_config(path: str | Path | None = None, overrides: Sequence[str] = ()) -> StudyConfig:
    """A study config from an optional YAML file plus ``key=value`` overrides.

    Example:
        >>> load_config(overrides=["train.epochs=3", "seeds=[1]"]).train.epochs
        3
    """
    raw = read_yaml(path) if path is not None else {}
    raw = apply_overrides(raw, list(overrides))
    return from_dict(StudyConfig, raw)


def _hash_train(cfg: TrainConfig) -> dict[str, Any]:
    """The training settings that change the numbers (not progress bars or loader workers)."""
    d = to_dict(cfg)
    for key in ("progress", "num_workers", "threads"):
        d.pop(key)
    return d


@dataclass
class StudyResult:
    """What a study produced: the summary (also in ``summary.json``) and where it lives."""

    run_dir: Path
    summary: dict[str, Any]
    trained: list[str] = field(default_factory=list)  # stages trained by this call (not cached)
    main: bool = True  # False in the other processes of a DDP run (their summary is empty)


Log = Callable[[str], None]


def _silent(_: str) -> None:
    pass


class _Runner:
    """Runs one study's stages with caching. Internal to ``run_study``."""

    def __init__(self, cfg: StudyConfig, data: DataBundle, run_dir: Path, log: Log) -> None:
        self.cfg, self.data, self.run_dir, self.log = cfg, data, run_dir, log
        # Under DDP every process runs the study (each fit is collective); only the main one
        # evaluates, probes and writes, so the run directory is written once.
        self.main = is_main_process()
        if not self.main:
            self.log = _silent
        self.device = eval_device(cfg.train)
        self.means = data.modality_means() if cfg.mask_fill == "mean" else None
        self.trained: list[str] = []
        self.data_key = config_hash(cfg.data)
        # The score checkpoints, tables and the choice use: accuracy, or mean IoU (segmentation).
        self.metric = "acc" if data.task == "classification" else "miou"
        self.examples: dict[str, torch.nn.Module] = {}  # first seed's models, for the figure

    # -- caching ------------------------------------------------------------------------------
    def _cached(self, stage_dir: Path, key: str) -> dict[str, Any] | None:
        result = stage_dir / "result.json"
        if result.is_file():
            done = read_json(result)
            if done.get("key") == key:
                return dict(done)
        if stage_dir.exists():
            config = stage_dir / "config.yaml"
            old = yaml.safe_load(config.read_text()) if config.is_file() else None
            if not (isinstance(old, dict) and old.get("key") == key):
                # Settings changed since this directory was written: its checkpoints are stale.
                self.log(f"  {stage_dir.name}: settings changed, retraining")
                if self.main:
                    shutil.rmtree(stage_dir)
        return None

    def _begin(self, stage_dir: Path, key: str, settings: dict[str, Any]) -> None:
        if not self.main:
            return
        stage_dir.mkdir(parents=True, exist_ok=True)
        write_text(
            stage_dir / "config.yaml", yaml.safe_dump({"key": key, **settings}, sort_keys=False)
        )

    # -- stages -------------------------------------------------------------------------------
    def train_stage(
        self,
        seed: int,
        name: str,
        model: MultimodalModel,
        method: Method,
        data: DataBundle,
        key_parts: dict[str, Any],
    ) -> tuple[MultimodalModel, dict[str, Any]]:
        stage_dir = self.run_dir / f"seed{seed}" / name
        key = config_hash(
            self.data_key, _hash_train(self.cfg.train), self.cfg.model, seed, key_parts
        )
        done = self._cached(stage_dir, key)
        if done is not None and self._load(model, stage_dir / "model.pt"):
            k = self.metric
            self.log(
                f"[seed {seed}] {name}: cached (val {done[f'val_{k}']:.4f}, "
                f"test {done[f'test_{k}']:.4f})"
            )
            return model, done
        self.log(f"[seed {seed}] {name}: training ({self.cfg.train.epochs} epochs)")
        self._begin(stage_dir, key, {"stage": name, "seed": seed, **to_dict(key_parts)})
        try:
            fitted = fit(model, method, data, self.cfg.train, stage_dir, seed=seed, stage=name)
        except DivergenceError as e:
            if self.main:
                write_json(stage_dir / "failed.json", {"key": key, "error": str(e)})
            self.log(f"[seed {seed}] {name}: FAILED: {e}")
            raise StageFailed(f"seed{seed}/{name}", str(e)) from e
        if not self.main:
            return model, {"key": key}
        (stage_dir / "failed.json").unlink(missing_ok=True)
        result = self._evaluate(model, data, key, name, seed)
        result.update(
            **{f"fit_val_{self.metric}": fitted.best_val_acc},  # as logged in training (synced)
            best_epoch=fitted.best_epoch,
            epochs=fitted.epochs,
            train_seconds=round(fitted.seconds, 3),
        )
        save_model(model, stage_dir / "model.pt")
        write_json(stage_dir / "result.json", result)  # written last: marks the stage finished
        fault_point(f"done:seed{seed}/{name}")
        self.trained.append(f"seed{seed}/{name}")
        k = self.metric
        self.log(
            f"[seed {seed}] {name}: val {result[f'val_{k}']:.4f}, test {result[f'test_{k}']:.4f}"
        )
        return model, result

    def _load(self, model: MultimodalModel, path: Path) -> bool:
        """Load a finished stage's weights; False (and the stage retrains) if they are unusable."""
        if not path.is_file():
            return False
        try:
            model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        except Exception as e:  # a cut-off file, or weights of another architecture
            self.log(f"  {path} is unusable ({type(e).__name__}); retraining that stage")
            path.unlink()
            return False
        return True

    def _evaluate(
        self, model: torch.nn.Module, data: DataBundle, key: str, name: str, seed: int
    ) -> dict[str, Any]:
        k = data.num_classes
        result: dict[str, Any] = {"key": key, "stage": name, "seed": seed}
        if data.task == "segmentation":
            return self._evaluate_segmentation(model, data, result)
        result["val_acc"] = accuracy(model, data.val, k, device=self.device)
        result["test_acc"] = accuracy(model, data.test, k, device=self.device)  # read once, here
        self._per_modality(model, data, result, "acc")
        return result

    def _per_modality(
        self, model: torch.nn.Module, data: DataBundle, result: dict[str, Any], metric: str
    ) -> None:
        """Test score with each modality alone (``modality_test_<metric>``) and with each one
        removed (``missing_test_<metric>``), for models of two modalities or more."""
        if len(data.modalities) < 2:
            return
        score = (lambda sc: float(sc["miou"])) if metric == "miou" else None
        for mode, key in (("only", "modality_test"), ("without", "missing_test")):
            result[f"{key}_{metric}"] = modality_accuracies(
                model,
                data.test,
                data.num_classes,
                data.modalities,
                mode=mode,
                fill=self.cfg.mask_fill,
                means=self.means,
                device=self.device,
                score=score,
            )

    def _evaluate_segmentation(
        self, model: torch.nn.Module, data: DataBundle, result: dict[str, Any]
    ) -> dict[str, Any]:
        """Val/test mean IoU, pixel accuracy, per-class IoU; per modality alone and missing."""
        k = data.num_classes
        val = segmentation_scores(model, data.val, k, device=self.device)
        test = segmentation_scores(model, data.test, k, device=self.device)  # read once, here
        result.update(val_miou=val["miou"], val_pixel_acc=val["pixel_acc"])
        result.update(
            test_miou=test["miou"], test_pixel_acc=test["pixel_acc"], test_iou=test["iou"]
        )
        self._per_modality(model, data, result, "miou")
        return result

    def keep_example(self, name: str, model: torch.nn.Module) -> None:
        """Segmentation: keep the first seed's models for the report's examples figure."""
        if self.data.task == "segmentation" and self.main:
            self.examples.setdefault(name, model)

    def build(self, shapes: dict[str, tuple[int, ...]], *, uni: bool = False) -> Any:
        """A fresh model for the data's task (``uni``: a uni-modal teacher / UME member)."""
        if self.data.task == "segmentation":
            return build_seg_model(self.cfg.model.seg, shapes, self.data.num_classes)
        return build_model(self.cfg.model, shapes, self.data.num_classes, linear_head=uni)

    def probe_stage(
        self, seed: int, name: str, model: MultimodalModel, stage_key: str
    ) -> dict[str, Any]:
        if not self.main:
            return {}
        path = self.run_dir / f"seed{seed}" / name / "probe.json"
        key = config_hash(stage_key, self.cfg.probe)
        if path.is_file():
            done = read_json(path)
            if done.get("key") == key:
                return dict(done["encoders"])
        encoders = {
            m: probe(enc, self.data, m, self.cfg.probe, device=self.device).as_dict()
            for m, enc in model.encoders.items()
        }
        write_json(path, {"key": key, "encoders": encoders})
        shown = ", ".join(f"{m} {r[f'test_{self.metric}']:.4f}" for m, r in encoders.items())
        what = "accuracy" if self.metric == "acc" else "mIoU"
        self.log(f"[seed {seed}] {name}: probe test {what} {shown}")
        return encoders

    def teacher_features(
        self, seed: int, modality: str, teacher: MultimodalModel, teacher_key: str
    ) -> np.ndarray:
        """The teacher encoder's features of every training sample, computed once per teacher
        and kept memory-mapped beside it (``features-train.npy``)."""
        stage_dir = self.run_dir / f"seed{seed}" / f"teacher-{modality}"
        path, meta = stage_dir / "features-train.npy", stage_dir / "features-train.json"
        if not self.main:  # other DDP processes compute their own copy, write nothing
            enc = teacher.encoders[modality]
            return extract_features(enc, self.data.train, modality, device=self.device)[0].numpy()
        if not (path.is_file() and meta.is_file() and read_json(meta).get("key") == teacher_key):
            feats, _ = extract_features(
                teacher.encoders[modality], self.data.train, modality, device=self.device
            )
            buf = io.BytesIO()
            np.save(buf, feats.numpy())
            write_bytes(path, buf.getvalue())
            write_json(meta, {"key": teacher_key, "shape": list(feats.shape)})
            self.log(
                f"[seed {seed}] teacher-{modality}: cached {tuple(feats.shape)} train features"
            )
        return np.load(path, mmap_mode="r")

    def ume_stage(
        self, seed: int, teachers: dict[str, MultimodalModel], teacher_keys: list[str]
    ) -> dict[str, Any]:
        if not self.main:
            return {}
        stage_dir = self.run_dir / f"seed{seed}" / "ume"
        key = config_hash(teacher_keys, self.cfg.ume, self.cfg.mask_fill)
        done = self._cached(stage_dir, key)
        if done is not None:
            return done
        self._begin(stage_dir, key, {"stage": "ume", "seed": seed, "ume": to_dict(self.cfg.ume)})
        result = self._evaluate(Ensemble(teachers, self.cfg.ume), self.data, key, "ume", seed)
        write_json(stage_dir / "result.json", result)
        k = self.metric
        self.log(f"[seed {seed}] ume: val {result[f'val_{k}']:.4f}, test {result[f'test_{k}']:.4f}")
        return result

    def run_seed(self, seed: int) -> dict[str, Any]:
        cfg, data = self.cfg, self.data
        out: dict[str, Any] = {"stages": {}, "probes": {}, "failed": {}}
        teachers: dict[str, MultimodalModel] = {}
        teacher_keys = []
        for m in data.modalities:
            name = f"teacher-{m}"
            torch.manual_seed(seed)
            model = self.build({m: data.input_shapes[m]}, uni=True)
            parts = {"method": "unimodal", "modality": m}
            try:
                model, result = self.train_stage(
                    seed, name, model, Joint(), data.restrict([m]), parts
                )
            except StageFailed as e:
                out["failed"][name] = e.message
                continue
            teachers[m] = model
            self.keep_example(name, model)
            teacher_keys.append(result["key"])
            out["stages"][name] = result
            out["probes"][name] = self.probe_stage(seed, name, model, result["key"])
        missing = [f"teacher-{m}" for m in data.modalities if m not in teachers]
        keys = dict(zip(teachers, teacher_keys, strict=True))

        def teacher_features(m: str) -> np.ndarray:
            return self.teacher_features(seed, m, teachers[m], keys[m])

        fusions = cfg.fusion or (cfg.model.fusion,)
        for method in cfg.methods:
            spec = METHODS[method]
            if spec.uses_teachers and missing:
                out["failed"][method] = f"skipped: it needs {', '.join(missing)}, which failed"
                continue
            if spec.build is None:  # UME: combines the teachers, trains nothing, has no fusion
                out["stages"][method] = self.ume_stage(seed, teachers, teacher_keys)
                self.keep_example(method, Ensemble(teachers, cfg.ume))
                continue
            for fusion in fusions:
                name = method if len(fusions) == 1 else f"{method}-{fusion}"
                torch.manual_seed(seed)
                if data.task == "segmentation":
                    model = self.build(data.input_shapes)
                else:
                    model_cfg = replace(cfg.model, fusion=fusion)
                    model = build_model(model_cfg, data.input_shapes, data.num_classes)
                settings = getattr(cfg, method, None)
                step = spec.build(
                    MethodContext(settings, model, teachers, data, seed, teacher_features)
                )
                key_parts: dict[str, Any] = {
                    "method": method,
                    "settings": to_dict(settings),
                    "fusion": fusion,
                }
                if spec.uses_teachers:
                    key_parts["teachers"] = teacher_keys
                try:
                    model, result = self.train_stage(seed, name, model, step, data, key_parts)
                except StageFailed as e:
                    out["failed"][name] = e.message
                    continue
                out["stages"][name] = result
                out["probes"][name] = self.probe_stage(seed, name, model, result["key"])
                self.keep_example(name, model)
        return out


class StageFailed(Exception):
    """A stage stopped (e.g. diverged); the study goes on with what does not depend on it."""

    def __init__(self, stage: str, message: str) -> None:
        super().__init__(f"{stage}: {message}")
        self.stage, self.message = stage, message


def _stats(values: Sequence[float]) -> dict[str, Any]:
    return {
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        "values": list(values),
    }


def summarize(
    cfg: StudyConfig, data: DataBundle, per_seed: dict[int, dict[str, Any]]
) -> dict[str, Any]:
    """Aggregate the seeds: accuracy (segmentation: mean IoU, pixel accuracy, per-class IoU) per
    stage, probe per encoder, the UMT/UME choice."""
    seeds = list(per_seed)
    k = "acc" if data.task == "classification" else "miou"
    # A stage counts where it finished in every seed; failures are listed, never averaged in.
    stages = [
        st for st in per_seed[seeds[0]]["stages"] if all(st in per_seed[s]["stages"] for s in seeds)
    ]
    failed = {f"seed{s}/{st}": msg for s in seeds for st, msg in per_seed[s]["failed"].items()}
    methods: dict[str, Any] = {}
    for stage in stages:
        rows = [per_seed[s]["stages"][stage] for s in seeds]
        entry: dict[str, Any] = {
            f"val_{k}": _stats([r[f"val_{k}"] for r in rows]),
            f"test_{k}": _stats([r[f"test_{k}"] for r in rows]),
        }
        if k == "miou":
            entry["test_pixel_acc"] = _stats([r["test_pixel_acc"] for r in rows])
            entry["test_iou"] = [
                _stats(list(c)) for c in zip(*(r["test_iou"] for r in rows), strict=True)
            ]
        for key in (f"modality_test_{k}", f"missing_test_{k}"):
            if key in rows[0]:
                entry[key] = {m: _stats([r[key][m] for r in rows]) for m in data.modalities}
        if "train_seconds" in rows[0]:
            entry["train_seconds"] = _stats([r["train_seconds"] for r in rows])
        methods[stage] = entry
    probes: dict[str, Any] = {}
    for m in data.modalities:
        probes[m] = {}
        for stage in stages:
            if stage not in per_seed[seeds[0]]["probes"]:
                continue
            if stage.startswith("teacher-") and stage != f"teacher-{m}":
                continue
            owner = "teacher" if stage.startswith("teacher-") else stage
            probes[m][owner] = _stats([per_seed[s]["probes"][stage][m][f"test_{k}"] for s in seeds])
    choice = None
    split = cfg.choice.split
    compare = cfg.choice.compare
    if compare not in methods and f"{compare}-{cfg.model.fusion}" in methods:
        compare = f"{compare}-{cfg.model.fusion}"  # in a fusion sweep: the model.fusion one
    if "ume" in methods and compare in methods:
        ume_acc = methods["ume"][f"{split}_{k}"]["mean"]
        other = methods[compare][f"{split}_{k}"]["mean"]
        metric = "accuracy" if k == "acc" else "mIoU"
        c = choose(ume_acc, other, margin=cfg.choice.margin, label=split, metric=metric)
        choice = {
            "method": c.method,
            "reason": c.reason,
            f"ume_{k}": ume_acc,
            f"{compare}_{k}": other,
            "split": split,
        }
    return {
        "study": cfg.name,
        "data": {
            "name": data.name,
            "description": data.description,
            "modalities": list(data.modalities),
            "num_classes": data.num_classes,
            "sizes": {s: len(data.split(s)) for s in ("train", "val", "test")},
            "task": data.task,
            **({"class_names": data.info.get("class_names")} if k == "miou" else {}),
        },
        "seeds": seeds,
        "mask_fill": cfg.mask_fill,
        "methods": methods,
        "probes": probes,
        "choice": choice,
        "failed": failed,
        "per_seed": {str(s): per_seed[s] for s in seeds},
    }


def run_study(
    cfg: StudyConfig, out: str | Path = "runs", *, log: Log = print, report: bool = True
) -> StudyResult:
    """Run (or resume) the study ``cfg`` under ``out/cfg.name`` and write its summary and report.

    Example::

        cfg = umt.load_config(overrides=["seeds=[0]"])   # the default study: avdigits
        result = umt.run_study(cfg, "runs")
        result.summary["probes"]["visual"]   # teacher / joint / umt probe accuracies
    """
    start = time.perf_counter()
    if cfg.train.threads > 0:
        torch.set_num_threads(cfg.train.threads)
    data = load_data(cfg.data)
    if data.task not in ("classification", "segmentation"):
        raise UMTError(
            f"data set {data.name!r} is a {data.task} task; a study handles classification and "
            "segmentation"
        )
    if data.task == "segmentation":
        unsupported = [m for m in cfg.methods if m not in SEGMENTATION_METHODS]
        if unsupported:
            raise UMTError(
                f"methods: {unsupported} do not support segmentation (data set {data.name!r}); "
                f"choose among {list(SEGMENTATION_METHODS)}"
            )
        if cfg.fusion:
            raise UMTError(
                "fusion: the sweep is over classification fusion modules; a segmentation "
                "model fuses per stage, set model.seg.fusion (add or attention) instead"
            )
    run_dir = Path(out) / cfg.name
    runner = _Runner(cfg, data, run_dir, log)
    if runner.main:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_text(run_dir / "study.yaml", yaml.safe_dump(to_dict(cfg), sort_keys=False))
    per_seed = {seed: runner.run_seed(seed) for seed in cfg.seeds}
    if not runner.main:
        return StudyResult(run_dir=run_dir, summary={}, trained=runner.trained, main=False)
    summary = summarize(cfg, data, per_seed)
    summary["wall_seconds"] = round(time.perf_counter() - start, 2)
    write_json(run_dir / "summary.json", summary)
    if report and data.task == "segmentation" and runner.examples:
        from umt.report import segmentation_examples

        png = segmentation_examples(runner.examples, data, device=runner.device)
        write_bytes(run_dir / "figures" / "examples.png", png)
    if report:
        from umt.report import write_report

        write_report(summary, run_dir)
    return StudyResult(run_dir=run_dir, summary=summary, trained=runner.trained)
