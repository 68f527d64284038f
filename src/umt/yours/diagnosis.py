"""What ``umt.yours.diagnose`` finds: per modality, the probe of the model's encoder against its
teacher's, the gap with its 95 % interval and the verdict; as a table, JSON, and a report with a
figure. ``write`` keeps the teachers too, and :meth:`Diagnosis.load` reads it all back."""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torch import nn

from umt.errors import UMTError
from umt.io import write_bytes, write_json, write_text
from umt.probe import ProbeConfig, ProbeResult
from umt.report import html_page
from umt.report.stats import Interval
from umt.tasks.seg_probe import SegProbeResult
from umt.yours.hooks import submodule
from umt.yours.teachers import Teacher, load_teacher, save_teacher

if TYPE_CHECKING:
    from matplotlib.figure import Figure

Probe = ProbeResult | SegProbeResult


@dataclass(frozen=True)
class DiagnoseConfig:
    """Settings of :func:`diagnose`.

    Attributes:
        margin: a modality fails when its gap exceeds this (0.02: two points) *and* the gap's
            95 % interval excludes 0.
        epochs: training epochs of a teacher trained here (the best on ``val`` is kept).
        lr: Adam's learning rate for those teachers.
        batch_size: the teachers' training batch size where a ``Dataset`` (not a
            ``DataLoader``) is given; features are extracted in batches of
            ``probe.batch_size``.
        seed: seeds the teachers' initialisation and the order of their training batches.
        teacher_seeds: teachers trained per modality (seeds ``seed``, ``seed + 1``, ...); with
            three or more the interval holds the teachers' training noise too.
        n_boot: resamples of the test samples for the gap's interval.
        ignore_index: the unlabelled value of segmentation label maps.
        probe: the linear probe (the same settings as a study's ``probe``).
    """

    margin: float = 0.02
    epochs: int = 20
    lr: float = 1e-3
    batch_size: int = 64
    seed: int = 0
    teacher_seeds: int = 1
    n_boot: int = 400
    ignore_index: int = -100
    probe: ProbeConfig = field(default_factory=ProbeConfig)

    def __post_init__(self) -> None:
        for key in ("epochs", "batch_size", "teacher_seeds", "n_boot"):
            if not getattr(self, key) >= 1:
                raise UMTError(f"DiagnoseConfig.{key}={getattr(self, key)}: expected 1 or more")
        if not self.lr > 0 or not self.margin >= 0:
            raise UMTError(
                f"DiagnoseConfig: lr={self.lr} must be > 0 and margin={self.margin} >= 0"
            )


def score(p: Probe) -> float:
    """A probe's test score: accuracy, or mean IoU for segmentation."""
    return p.test_acc if isinstance(p, ProbeResult) else p.test_miou


def _probe_of(d: dict[str, Any]) -> Probe:
    if "test_miou" in d:
        return SegProbeResult(**d)
    return ProbeResult(**d)


@dataclass(frozen=True)
class ModalityDiagnosis:
    """One modality's verdict.

    Attributes:
        modality: the modality's name.
        encoder: the model's submodule probed.
        model: the probe of the model's encoder.
        teacher: the probe of the teacher's encoder (the kept teacher's).
        teacher_source: ``given`` (the user's) or ``trained`` (here).
        margin: the failure margin.
        teacher_val_acc: a trained teacher's validation score (its own head), else None.
        interval: the gap (teacher minus model, averaged over teacher seeds) and its 95 %
            interval over test samples (and teacher seeds); None where not computed.
        teacher_scores: each teacher seed's probe test score.
    """

    modality: str
    encoder: str
    model: Probe
    teacher: Probe
    teacher_source: str
    margin: float
    teacher_val_acc: float | None = None
    interval: Interval | None = None
    teacher_scores: tuple[float, ...] = ()

    @property
    def metric(self) -> str:
        return "accuracy" if isinstance(self.model, ProbeResult) else "mIoU"

    @property
    def gap(self) -> float:
        """Teacher's probe test score minus the model's (positive: the model is behind)."""
        if self.interval is not None:
            return self.interval.mean_diff
        return score(self.teacher) - score(self.model)

    @property
    def failure(self) -> bool:
        """Modality failure: the gap exceeds ``margin`` and its interval excludes 0."""
        return self.gap > self.margin and (self.interval is None or self.interval.lo > 0)

    @property
    def verdict(self) -> str:
        if self.failure:
            return "modality failure"
        if self.gap > self.margin:
            return "within noise"
        return "ok"

    def as_dict(self) -> dict[str, Any]:
        iv = self.interval
        return {
            "encoder": self.encoder,
            "metric": self.metric,
            "model": self.model.as_dict() | {"feature_dim": self.model.feature_dim},
            "teacher": self.teacher.as_dict() | {"feature_dim": self.teacher.feature_dim},
            "teacher_source": self.teacher_source,
            "teacher_val_acc": self.teacher_val_acc,
            "teacher_scores": list(self.teacher_scores),
            "gap": self.gap,
            "interval": None if iv is None else {"lo": iv.lo, "hi": iv.hi},
            "verdict": self.verdict,
            "failure": self.failure,
        }

    @classmethod
    def from_dict(cls, m: str, d: dict[str, Any], margin: float) -> ModalityDiagnosis:
        iv = d.get("interval")
        return cls(
            modality=m,
            encoder=d["encoder"],
            model=_probe_of(d["model"]),
            teacher=_probe_of(d["teacher"]),
            teacher_source=d["teacher_source"],
            margin=margin,
            teacher_val_acc=d.get("teacher_val_acc"),
            interval=None if iv is None else Interval(d["gap"], iv["lo"], iv["hi"]),
            teacher_scores=tuple(d.get("teacher_scores", ())),
        )


@dataclass(frozen=True)
class Diagnosis:
    """What :func:`diagnose` found, per modality (``diag["visual"]``).

    Attributes:
        modalities: ``{modality: ModalityDiagnosis}``.
        num_classes: the number of classes probed.
        sizes: samples per split.
        margin: the failure margin.
        seconds: the wall time of the diagnosis.
        teachers: the teachers' encoders ``{modality: nn.Module}`` (given or trained here),
            frozen; e.g. for :class:`umt.UMTLoss`.
    """

    modalities: dict[str, ModalityDiagnosis]
    num_classes: int
    sizes: dict[str, int]
    margin: float
    seconds: float
    teachers: dict[str, nn.Module] = field(default_factory=dict, repr=False, compare=False)

    def __getitem__(self, modality: str) -> ModalityDiagnosis:
        if modality not in self.modalities:
            raise UMTError(f"no modality {modality!r} diagnosed; have {list(self.modalities)}")
        return self.modalities[modality]

    @property
    def failures(self) -> list[str]:
        """The modalities with modality failure."""
        return [m for m, d in self.modalities.items() if d.failure]

    def table(self) -> str:
        """A markdown table: probe test score (%) of the model's and the teacher's encoder, the
        gap with its 95 % interval and the verdict, one row per modality."""
        lines = [
            "| modality | encoder | model probe (%) | teacher probe (%) | gap (pts) [95% CI] "
            "| verdict |",
            "|---|---|---|---|---|---|",
        ]
        for m, d in self.modalities.items():
            verdict = f"**{d.verdict}**" if d.failure else d.verdict
            iv = d.interval
            ci = "" if iv is None else f" [{100 * iv.lo:+.2f}, {100 * iv.hi:+.2f}]"
            seeds = f", {len(d.teacher_scores)} seeds" if len(d.teacher_scores) > 1 else ""
            lines.append(
                f"| {m} | `{d.encoder}` | {100 * score(d.model):.2f} | "
                f"{100 * score(d.teacher):.2f} ({d.teacher_source}{seeds}) | "
                f"{100 * d.gap:+.2f}{ci} | {verdict} |"
            )
        return "\n".join(lines)

    def as_dict(self) -> dict[str, Any]:
        return {
            "num_classes": self.num_classes,
            "sizes": self.sizes,
            "margin": self.margin,
            "seconds": self.seconds,
            "failures": self.failures,
            "modalities": {m: d.as_dict() for m, d in self.modalities.items()},
        }

    def markdown(self) -> str:
        sizes = ", ".join(f"{k} {v}" for k, v in self.sizes.items())
        return "\n\n".join(
            [
                "# Diagnosis: modality failure",
                f"{self.num_classes} classes; {sizes}. Linear probes of the frozen encoders "
                "(L2 chosen on val, test read once). The gap is the teacher's probe minus the "
                "model's, with a 95 % paired interval over the test samples (and the "
                "teachers' seeds, three or more); a modality fails when the gap exceeds "
                f"{100 * self.margin:.1f} points and its interval excludes 0 (above the margin "
                "but not excluding 0: within noise).",
                self.table(),
                "![probes](figures/probes.png)",
                f"Failures: {', '.join(self.failures) or 'none'}.",
            ]
        )

    def write(self, out: str | Path) -> None:
        """``diagnosis.json``, ``report.md``, ``report.html``, ``figures/probes.png`` and the
        teachers' weights ``teachers/<modality>.pt`` (with their fingerprints in the JSON),
        so that :meth:`load` gives the same diagnosis and teachers back."""
        out = Path(out)
        png = self.figure()
        write_bytes(out / "figures" / "probes.png", png)
        saved = {}
        for m, t in self.teachers.items():
            file = f"teachers/{m}.pt"
            saved[m] = {
                "file": file,
                "sha256": save_teacher(t, out / file),
                "layer": getattr(t, "layer", None),
                "layout": getattr(t, "layout", None),
            }
        write_json(out / "diagnosis.json", self.as_dict() | {"teachers": saved})
        md = self.markdown()
        write_text(out / "report.md", md + "\n")
        write_text(out / "report.html", html_page(md, {"figures/probes.png": png}))

    @classmethod
    def load(
        cls,
        out: str | Path,
        *,
        model: nn.Module | None = None,
        teachers: dict[str, nn.Module] | None = None,
    ) -> Diagnosis:
        """A diagnosis written by :meth:`write`, with its teachers where their architecture is
        at hand: a trained teacher is a copy of ``model``'s encoder (pass the model); a given
        one is the module of ``teachers[m]`` (the same architecture, e.g. a fresh
        ``Teacher(net, layer=..., transform=...)``). The weights are checked against their
        recorded fingerprints. Without either, the numbers come back and ``teachers`` is empty.
        """
        out = Path(out)
        path = out / "diagnosis.json"
        if not path.is_file():
            raise UMTError(f"Diagnosis.load: no {path}; give the folder diagnose(out=...) wrote")
        raw = json.loads(path.read_text())
        mods = {
            m: ModalityDiagnosis.from_dict(m, d, raw["margin"])
            for m, d in raw["modalities"].items()
        }
        given = dict(teachers or {})
        kept: dict[str, nn.Module] = {}
        for m, rec in raw.get("teachers", {}).items():
            what = f"Diagnosis.load: the teacher of {m!r}"
            if m in given:
                t = given[m]
                if not isinstance(t, Teacher):
                    t = Teacher(t, layer=rec.get("layer"), layout=rec.get("layout"))
            elif model is not None and mods[m].teacher_source == "trained":
                arch = copy.deepcopy(submodule(model, mods[m].encoder))
                t = Teacher(arch, layout=rec.get("layout"))
            else:
                continue
            load_teacher(t.module, out / rec["file"], rec["sha256"], what)
            kept[m] = t.eval().requires_grad_(False)
        missing = [m for m in given if m not in raw.get("teachers", {})]
        if missing:
            raise UMTError(f"Diagnosis.load: {out} holds no teacher of {missing}")
        return cls(
            modalities=mods,
            num_classes=raw["num_classes"],
            sizes=raw["sizes"],
            margin=raw["margin"],
            seconds=raw["seconds"],
            teachers=kept,
        )

    def figure(self) -> bytes:
        """A PNG of :meth:`draw`."""
        from umt.report.figures import render

        return render(self.draw())["png"]

    def draw(self) -> Figure:
        """Per modality, bars of the model's and the teacher's probe test score, the y-axis
        from 0 to 100, the legend right of the axes (never over a bar)."""
        from umt.report.figures import pyplot

        plt = pyplot()
        mods = list(self.modalities)
        fig, ax = plt.subplots(figsize=(1.8 + 1.6 * len(mods), 3.6), dpi=120)
        for i, (who, label) in enumerate((("model", "your model"), ("teacher", "teacher"))):
            accs = [100 * score(getattr(self.modalities[m], who)) for m in mods]
            ax.bar([j + (i - 0.5) * 0.4 for j in range(len(mods))], accs, 0.4, label=label)
        ax.set_xticks(range(len(mods)), mods)
        metrics = {d.metric for d in self.modalities.values()}
        ax.set_ylabel(f"linear-probe test {'/'.join(sorted(metrics)) or 'accuracy'} (%)")
        ax.set_title("Encoders: your model vs the uni-modal teachers")
        ax.set_ylim(0, 100)
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)
        ax.grid(axis="y", alpha=0.3)
        fig.tight_layout()
        return fig
