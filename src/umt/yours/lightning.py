"""UMT in your own ``LightningModule``: three added lines.

Mix :class:`UMTMixin` into the module, call :meth:`UMTMixin.configure_umt` in ``__init__`` and add
:meth:`UMTMixin.umt_loss` to the loss in ``training_step``::

    class MyModule(UMTMixin, L.LightningModule):                      # + UMTMixin
        def __init__(self, teachers):
            super().__init__()
            self.model = TwoBranch()
            self.configure_umt(teachers, {"audio": "model.aud", "visual": "model.vis"},
                               weights=5.0)                           # + 1 line
        def training_step(self, batch, batch_idx):
            loss = F.cross_entropy(self.model(batch), batch["label"])
            return loss + self.umt_loss(batch)                        # + self.umt_loss(batch)

What it does: ``self.umt`` is a :class:`umt.UMTLoss` (so Lightning's ``.to(device)`` moves the
teachers, and projectors, if any, are in ``self.parameters()``: the usual
``configure_optimizers`` trains them and DDP synchronises them); forward hooks on the named
encoders give the student's features of the model's own forward pass; each weighted
distillation term is logged as ``train/distill/<modality>``. The teachers are not submodules, so
checkpoints hold no teacher weight. Keep them out of ``save_hyperparameters`` too
(``self.save_hyperparameters(ignore=["teachers"])``), or they are pickled into the checkpoint.
Under DDP every process must hold the same teachers (load them from one file).

Lightning is imported here only: the rest of ``umt`` (``UMTLoss``, ``diagnose``) does not need it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import lightning as L
import torch
from torch import nn

from umt.errors import UMTError
from umt.yours.distill import UMTLoss
from umt.yours.hooks import FeatureHooks


class UMTMixin(L.LightningModule):
    """Adds UMT's distillation to a user's ``LightningModule`` (see the module docstring)."""

    umt: UMTLoss

    def configure_umt(
        self,
        teachers: Mapping[str, nn.Module],
        encoders: Mapping[str, str] | None = None,
        **loss_options: Any,
    ) -> UMTLoss:
        """Create ``self.umt = UMTLoss(teachers, **loss_options)`` and hook the encoders.

        Args:
            teachers: ``{modality: frozen nn.Module}``.
            encoders: ``{modality: dotted submodule name}`` relative to this module (e.g.
                ``"model.aud"``); their outputs in the forward pass are the student features.
                ``None``: pass the features to :meth:`umt_loss` yourself.
            loss_options: :class:`umt.UMTLoss`'s keywords (``weights``, ``kind``, ``project``,
                ``student_dims``, ...).
        """
        self.umt = UMTLoss(teachers, **loss_options)
        # A plain attribute (not a submodule): the hooks hold no weights.
        self._umt_hooks = FeatureHooks(self, encoders) if encoders else None
        return self.umt

    def umt_loss(
        self,
        batch: Mapping[str, torch.Tensor],
        features: Mapping[str, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """The distillation loss of ``batch``; logs each modality's weighted term.

        Args:
            batch: ``{modality: tensor, ...}``: each teacher reads its modality's tensor.
            features: the student's ``{modality: (B, D)}``; ``None``: those the hooks took in
                the last forward pass (call the model on ``batch`` first).
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
        n = len(next(iter(features.values())))
        self.log_dict(logs, on_step=False, on_epoch=True, batch_size=n)
        return terms["loss"]
