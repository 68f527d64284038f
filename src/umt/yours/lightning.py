"""UMT in your own ``LightningModule``: three added lines, and a callback that logs the probe gap.

Mix :class:`UMTMixin` into the module, call :meth:`UMTMixin.configure_umt` in ``__init__`` and add
:meth:`UMTMixin.umt_loss` to the loss in ``training_step``::

    class MyModule(UMTMixin, L.LightningModule):                      # + UMTMixin
        def __init__(self, teachers=None):
            super().__init__()
            self.model = TwoBranch()
            if teachers is not None:
                self.configure_umt(teachers, {"audio": "model.aud", "visual": "model.vis"},
                                   weights=5.0)                       # + 1 line
        def training_step(self, batch, batch_idx):
            loss = F.cross_entropy(self.model(batch), batch["label"])
            return loss + self.umt_loss(batch)                        # + self.umt_loss(batch)

What it does: ``self.umt`` is a :class:`umt.UMTLoss` (so Lightning's ``.to(device)`` moves the
teachers, and projectors, if any, are in ``self.parameters()``: the usual
``configure_optimizers`` trains them and DDP synchronises them); forward hooks on the named
encoders give the student's features of the model's own forward pass; each weighted
distillation term is logged as ``train/distill/<modality>``. The teachers are not submodules, so
checkpoints hold no teacher weight; they record each teacher's class, SHA-256 fingerprint and
source instead (``checkpoint["umt"]``). Resuming such a checkpoint (``trainer.fit(ckpt_path=)``)
without the teachers, or with others, is an error; loading it for inference without them
(``MyModule.load_from_checkpoint(path)``) loads the student alone, with a warning. Keep the
teachers out of ``save_hyperparameters`` (``self.save_hyperparameters(ignore=["teachers"])``).
Under DDP every process must hold the same teachers (load them from one file).

:class:`ProbeGapCallback` logs ``probe_gap/<modality>``, each encoder's linear-probe gap to its
teacher, every few epochs while the module trains.

Lightning is imported here only: the rest of ``umt`` (``UMTLoss``, ``diagnose``) does not need it.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import lightning as L
import torch
from torch import nn

from umt.errors import UMTError
from umt.yours import batches as B
from umt.yours.diagnose import SPLITS, model_features, probe, teacher_features
from umt.yours.diagnosis import DiagnoseConfig, Diagnosis, score
from umt.yours.distill import UMTLoss
from umt.yours.hooks import FeatureHooks, submodule
from umt.yours.teachers import as_teachers


class UMTMixin(L.LightningModule):
    """Adds UMT's distillation to a user's ``LightningModule`` (see the module docstring)."""

    umt: UMTLoss

    def configure_umt(
        self,
        teachers: Mapping[str, nn.Module] | Diagnosis,
        encoders: Mapping[str, str] | None = None,
        *,
        layouts: Mapping[str, str] | None = None,
        **loss_options: Any,
    ) -> UMTLoss:
        """Create ``self.umt = UMTLoss(teachers, **loss_options)`` and hook the encoders.

        Args:
            teachers: ``{modality: frozen nn.Module or umt.yours.Teacher}``, or the
                :class:`umt.Diagnosis` of your model: then the study's defaults
                (:meth:`umt.UMTLoss.from_diagnosis`: only the modalities found failing, their
                encoders of this module started from their teachers).
            encoders: ``{modality: dotted submodule name}`` relative to this module (e.g.
                ``"model.aud"``); their outputs in the forward pass are the student features.
                ``None``: pass the features to :meth:`umt_loss` yourself.
            layouts: the encoders' output layouts where they cannot be read off them.
            loss_options: :class:`umt.UMTLoss`'s keywords (``weights``, ``kind``, ``project``,
                ``student_dims``, ``dense``, ...).
        """
        if isinstance(teachers, Diagnosis):
            if not encoders:
                raise UMTError(
                    "configure_umt(diagnosis, encoders): name the encoders ({modality: dotted "
                    "submodule}) so that the failing ones can start from their teachers"
                )
            self.umt = UMTLoss.from_diagnosis(teachers, self, encoders, **loss_options)
        else:
            self.umt = UMTLoss(teachers, **loss_options)
        # A plain attribute (not a submodule): the hooks hold no weights.
        self._umt_hooks = FeatureHooks(self, encoders, layouts=layouts) if encoders else None
        return self.umt

    def umt_loss(
        self,
        batch: Mapping[str, torch.Tensor],
        features: Mapping[str, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """The distillation loss of ``batch``; logs each modality's weighted term.

        Args:
            batch: ``{modality: tensor, ...}``: each teacher reads its modality's tensor.
            features: the student's ``{modality: features}``; ``None``: those the hooks took in
                the forward pass of ``batch`` (call the model on ``batch`` first).
        """
        if not hasattr(self, "umt"):
            raise UMTError("umt_loss: call self.configure_umt(teachers, encoders) in __init__")
        if features is None:
            hooks: FeatureHooks | None = getattr(self, "_umt_hooks", None)
            if hooks is None:
                raise UMTError(
                    "umt_loss: no encoders were hooked; pass encoders to configure_umt or the "
                    "student features to umt_loss(batch, features)"
                )
            features = hooks.features
        terms = self.umt(batch, features)
        logs = {f"train/{k}": v for k, v in terms.items() if k != "loss"}
        n = next((len(v) for v in batch.values() if isinstance(v, torch.Tensor)), 1)
        self.log_dict(logs, on_step=False, on_epoch=True, batch_size=n)
        return terms["loss"]

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        if hasattr(self, "umt"):
            checkpoint["umt"] = {
                "teachers": self.umt.teacher_record(),
                "weights": self.umt.weights,
                "kind": self.umt.kind,
                "dense": self.umt.dense,
            }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        record = checkpoint.get("umt")
        if record is None:
            return
        self.umt_record = record  # which teachers the checkpoint was distilled from
        trainer = getattr(self, "_trainer", None)
        resuming = trainer is not None and trainer.state.fn == "fit"
        saved = {
            m: (r["class"], r["sha256"][:12], r["source"]) for m, r in record["teachers"].items()
        }
        if not hasattr(self, "umt"):
            msg = (
                f"this checkpoint was trained with UMT, distilled from the teachers {saved} "
                "(modality: class, SHA-256, source); build the module with those teachers "
                "(e.g. MyModule(teachers=...), which calls configure_umt)"
            )
            if resuming:
                raise UMTError(f"resuming UMT without its teachers: {msg}, then resume")
            checkpoint["state_dict"] = {
                k: v for k, v in checkpoint["state_dict"].items() if not k.startswith("umt.")
            }
            warnings.warn(f"loaded the student alone: {msg} to train on with UMT", stacklevel=2)
            return
        now = self.umt.teacher_record()
        differ = sorted(
            m for m in set(now) | set(record["teachers"])
            if now.get(m, {}).get("sha256") != record["teachers"].get(m, {}).get("sha256")
        )  # fmt: skip
        if differ:
            msg = (
                f"the teachers of {differ} are not those this checkpoint was distilled from "
                f"(saved: {saved})"
            )
            if resuming:
                raise UMTError(f"resuming UMT: {msg}; pass the same teachers")
            warnings.warn(msg, stacklevel=2)


class ProbeGapCallback(L.Callback):
    """Logs ``probe_gap/<modality>`` (the teacher's linear-probe test score minus the
    encoder's, as :func:`umt.diagnose` measures it) every ``every_n_epochs`` training epochs;
    ``history`` keeps them. The teachers' features are computed once.

    Args:
        train, val, test: the probe's data (``Dataset`` or ``DataLoader``, as for diagnose).
        encoders: ``{modality: dotted submodule name}`` relative to ``module``.
        teachers: ``{modality: teacher}`` (e.g. ``diagnosis.teachers``).
        module: the dotted submodule of the ``LightningModule`` run on a batch dict (``""``:
            the ``LightningModule`` itself, whose ``forward`` must take the batch).
        every_n_epochs: how often.
        config: the probe settings (``config.probe``) and ``num_classes`` inference as diagnose.
    """

    def __init__(
        self,
        train: B.Data,
        val: B.Data,
        test: B.Data,
        *,
        encoders: Mapping[str, str],
        teachers: Mapping[str, nn.Module],
        module: str = "",
        every_n_epochs: int = 1,
        config: DiagnoseConfig | None = None,
        modalities: Sequence[str] | None = None,
    ) -> None:
        self.cfg = config or DiagnoseConfig()
        self.data = {
            s: B.loader(d, s, self.cfg.probe.batch_size, shuffle=False, seed=0)
            for s, d in zip(SPLITS, (train, val, test), strict=True)
        }
        self.encoders, self.module, self.every = dict(encoders), module, every_n_epochs
        self.teachers = as_teachers(teachers)
        self.modalities = modalities
        self.history: list[dict[str, float]] = []
        self._teacher_feats: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] | None = None

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if (trainer.current_epoch + 1) % self.every:
            return
        net = submodule(pl_module, self.module) if self.module else pl_module
        dev = pl_module.device
        kw: dict[str, Any] = {"modalities": self.modalities, "device": dev}
        feats = {
            s: model_features(net, b, self.encoders, split=s, **kw) for s, b in self.data.items()
        }
        if self._teacher_feats is None:
            self._teacher_feats = {}
            for m, t in self.teachers.items():
                t.to(dev)
                self._teacher_feats[m] = [
                    teacher_features(t, self.data[s], m, split=s, **kw) for s in SPLITS
                ]
        k = max(int(f[1].max()) for f in feats.values()) + 1
        gaps = {"epoch": float(trainer.current_epoch)}
        for m in self.encoders:
            mine, _ = probe([(feats[s][0][m], feats[s][1]) for s in SPLITS], k, self.cfg.probe)
            theirs, _ = probe(self._teacher_feats[m], k, self.cfg.probe)
            gaps[m] = score(theirs) - score(mine)
            pl_module.log(f"probe_gap/{m}", gaps[m], rank_zero_only=True)
        self.history.append(gaps)
        hooks = getattr(pl_module, "_umt_hooks", None)
        if isinstance(hooks, FeatureHooks):
            hooks.features.discard()  # the probes' forwards are no training step's
