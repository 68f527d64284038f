"""What ``umt.yours.diagnose`` finds: per modality, the probe of the model's encoder against its
teacher's, the gap and the verdict; as a table, JSON, and a report with a figure."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torch import nn

from umt.errors import UMTError
from umt.io import write_bytes, write_json, write_text
from umt.probe import ProbeConfig, ProbeResult
from umt.report import html_page

if TYPE_CHECKING:
    from matplotlib.figure import Figure


@dataclass(frozen=True)
class DiagnoseConfig:
    """Settings of :func:`diagnose`.

    Attributes:
        margin: a modality fails when its teacher's probe test accuracy exceeds the model's
            by more than this (0.02: two points).
        epochs: training epochs of a teacher trained here (the best on ``val`` is kept).
        lr: Adam's learning rate for those teachers.
        batch_size: the teachers' training batch size where a ``Dataset`` (not a
            ``DataLoader``) is given; features are extracted in batches of
            ``probe.batch_size``.
        seed: seeds the teachers' initialisation and the order of their training batches.
        probe: the linear probe (the same settings as a study's ``probe``).
    """

    margin: float = 0.02
    epochs: int = 20
    lr: float = 1e-3
    batch_size: int = 64
    seed: int = 0
    probe: ProbeConfig = field(default_factory=ProbeConfig)


@dataclass(frozen=True)
class ModalityDiagnosis:
    """One modality's verdict.

    Attributes:
        modality: the modality's name.
        encoder: the model's submodule probed.
        model: the probe of the model's encoder.
        teacher: the probe of the teacher's encoder.
        teacher_source: ``given`` (the user's) or ``trained`` (here).
        margin: the failure margin.
        teacher_val_acc: a trained teacher's validation accuracy (its own head), else None.
    """

    modality: str
    encoder: str
    model: ProbeResult
    teacher: ProbeResult
    teacher_source: str
    margin: float
    teacher_val_acc: float | None = None

    @property
    def gap(self) -> float:
        """Teacher's probe test accuracy minus the model's (positive: the model is behind)."""
        return self.teacher.test_acc - self.model.test_acc

    @property
    def failure(self) -> bool:
        """Modality failure: the teacher's probe exceeds the model's by more than ``margin``."""
        return self.gap > self.margin

    def as_dict(self) -> dict[str, Any]:
        return {
            "encoder": self.encoder,
            "model": self.model.as_dict() | {"feature_dim": self.model.feature_dim},
            "teacher": self.teacher.as_dict() | {"feature_dim": self.teacher.feature_dim},
            "teacher_source": self.teacher_source,
            "teacher_val_acc": self.teacher_val_acc,
            "gap": self.gap,
            "failure": self.failure,
        }


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
        """A markdown table: probe test accuracy (%) of the model's and the teacher's encoder,
        the gap and the verdict, one row per modality."""
        lines = [
            "| modality | encoder | model probe (%) | teacher probe (%) | gap (pts) | verdict |",
            "|---|---|---|---|---|---|",
        ]
        for m, d in self.modalities.items():
            verdict = "**modality failure**" if d.failure else "ok"
            lines.append(
                f"| {m} | `{d.encoder}` | {100 * d.model.test_acc:.2f} | "
                f"{100 * d.teacher.test_acc:.2f} ({d.teacher_source}) | {100 * d.gap:+.2f} | "
                f"{verdict} |"
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
                "(L2 chosen on val, test read once); a modality fails when its teacher's probe "
                f"exceeds the model's by more than {100 * self.margin:.1f} points.",
                self.table(),
                "![probes](figures/probes.png)",
                f"Failures: {', '.join(self.failures) or 'none'}.",
            ]
        )

    def write(self, out: str | Path) -> None:
        """``diagnosis.json``, ``report.md``, ``report.html`` and ``figures/probes.png``."""
        out = Path(out)
        png = self.figure()
        write_bytes(out / "figures" / "probes.png", png)
        write_json(out / "diagnosis.json", self.as_dict())
        md = self.markdown()
        write_text(out / "report.md", md + "\n")
        write_text(out / "report.html", html_page(md, {"figures/probes.png": png}))

    def figure(self) -> bytes:
        """A PNG of :meth:`draw`."""
        from umt.report.figures import render

        return render(self.draw())["png"]

    def draw(self) -> Figure:
        """Per modality, bars of the model's and the teacher's probe test accuracy, the y-axis
        from 0 to 100, the legend right of the axes (never over a bar)."""
        from umt.report.figures import pyplot

        plt = pyplot()
        mods = list(self.modalities)
        fig, ax = plt.subplots(figsize=(1.8 + 1.6 * len(mods), 3.6), dpi=120)
        for i, (who, label) in enumerate((("model", "your model"), ("teacher", "teacher"))):
            accs = [100 * getattr(self.modalities[m], who).test_acc for m in mods]
            ax.bar([j + (i - 0.5) * 0.4 for j in range(len(mods))], accs, 0.4, label=label)
        ax.set_xticks(range(len(mods)), mods)
        ax.set_ylabel("linear-probe test accuracy (%)")
        ax.set_title("Encoders: your model vs the uni-modal teachers")
        ax.set_ylim(0, 100)
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)
        ax.grid(axis="y", alpha=0.3)
        fig.tight_layout()
        return fig
